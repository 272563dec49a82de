"""The multi-fidelity suite: learning-curve problems, every optimizer at the same number of epochs.

Each problem is a function of a configuration and a budget (epochs) shaped like a validation
loss while training: ``value(p, b) = final(p) + scale * b ** -speed(p)``. The final value is a
classic test function (Branin, Hartmann-6); how fast a configuration converges depends on the
configuration too, so curves cross and an early value can mislead, as with real models (a slow
learner looks bad after one epoch and can end best). Calls are instant, so many seeds are cheap.

Optimizers, all given the same epochs (``--fidelity-epochs``): refiner with a
:class:`~refiner.fidelity.Fidelity` whose epoch budget ``total`` is those epochs, refiner without one
(as many full trials as the epochs buy),
Optuna TPE with ``HyperbandPruner`` reporting every epoch, Optuna TPE and Optuna random search at
full fidelity. A trial that a fidelity rule or a pruner stops early counts its epochs but cannot be
the result: the score of a run is the best *final* value (at ``max`` epochs) among the
configurations it trained to the end, measured without noise.

``refiner bench --suite fidelity [--seeds N] [--fidelity-epochs N] [--out DIR]`` prints the table
and writes ``fidelity.json``.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from refiner.bench.problems import branin, hartmann6
from refiner.space import Float, SearchSpace

__all__ = ["LC_PROBLEMS", "FIDELITY_OPTIMIZERS", "MAX_EPOCHS", "run_fidelity_benchmark", "format_fidelity_report"]

log = logging.getLogger(__name__)

MAX_EPOCHS = 27  # KerasTuner Hyperband's usual max_epochs with factor 3: rungs 1, 3, 9, 27
ETA = 3
DEFAULT_EPOCHS = 400  # every optimizer's epochs (about what 40 refiner+fidelity trials spent, README)


@dataclass(frozen=True)
class CurveProblem:
    name: str
    space: SearchSpace
    final: Callable[[Mapping[str, Any]], float]
    speed: Callable[[Mapping[str, Any]], float]  # the curve's decay exponent for a configuration
    scale: float

    def value(self, params: Mapping[str, Any], budget: int) -> float:
        return self.final(params) + self.scale * float(budget) ** -self.speed(params)


def _unit(params: Mapping[str, Any], name: str, low: float, high: float) -> float:
    return (float(params[name]) - low) / (high - low)


LC_PROBLEMS: dict[str, CurveProblem] = {
    # Branin's minima sit at x1 = -pi, pi, 9.42: the slow learners are at small x1, so one of the
    # three optima looks worst early on.
    "lc_branin": CurveProblem(
        "lc_branin", SearchSpace([Float("x1", -5.0, 10.0), Float("x2", 0.0, 15.0)]), branin,
        speed=lambda p: 0.3 + 1.2 * _unit(p, "x1", -5.0, 10.0), scale=30.0),
    # Hartmann-6: convergence speed set by x5, unrelated to where the minimum lies.
    "lc_hartmann6": CurveProblem(
        "lc_hartmann6", SearchSpace([Float(f"x{i}", 0.0, 1.0) for i in range(6)]), hartmann6,
        speed=lambda p: 0.4 + 1.2 * float(p["x5"]), scale=2.0),
}


class _Ledger:
    """Epochs spent and the best final value among configurations trained to ``MAX_EPOCHS``."""

    def __init__(self, problem: CurveProblem):
        self.problem, self.epochs, self.best = problem, 0, math.inf

    def call(self, params: Mapping[str, Any], budget: int, continued_from: int = 0) -> float:
        """f(params, budget), charging the epochs from ``continued_from`` (training resumes)."""
        self.epochs += budget - continued_from
        value = self.problem.value(params, budget)
        if budget >= MAX_EPOCHS:
            self.best = min(self.best, value)
        return value


# -- optimizers -----------------------------------------------------------------------------------
def _refiner(problem: CurveProblem, seed: int, *, epochs: int, fidelity: bool, rounds: int = 3) -> _Ledger:
    from refiner.fidelity import Fidelity
    from refiner.loop import Refiner

    ledger = _Ledger(problem)
    reached: dict[str, int] = {}

    def function(params: dict[str, Any], budget: int = MAX_EPOCHS) -> float:
        key = json.dumps(params, sort_keys=True)
        value = ledger.call(params, budget, reached.get(key, 0))  # rung by rung, as training would continue
        reached[key] = budget
        return value

    with tempfile.TemporaryDirectory() as tmp:
        if fidelity:  # the epochs themselves, as fidelity.total (refiner.fidelity.EpochBudget)
            n = max(1, min(rounds, epochs // MAX_EPOCHS))  # fewer rounds when one full trial each does not fit
            paid: dict[str, Any] = {"rounds": n, "fidelity": Fidelity("epochs", min=1, max=MAX_EPOCHS, eta=ETA,
                                                                        total=max(epochs, MAX_EPOCHS))}
        else:  # as many full trials as the epochs buy, at least enough to fill the rounds
            paid = {"rounds": rounds, "max_trials": max(rounds + 1, round(epochs / MAX_EPOCHS))}
        Refiner(function=function, space=problem.space, objective={"name": "loss", "direction": "min"},
                seed=seed, directory=tmp, project_name="run", verbose=0, target_name=f"bench:{problem.name}",
                **paid).search()
    return ledger


def _optuna(problem: CurveProblem, seed: int, *, epochs: int, sampler: str, pruner: bool) -> _Ledger:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ledger = _Ledger(problem)
    samplers = {"tpe": optuna.samplers.TPESampler(seed=seed), "random": optuna.samplers.RandomSampler(seed=seed)}
    study = optuna.create_study(
        sampler=samplers[sampler],
        pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=MAX_EPOCHS, reduction_factor=ETA)
        if pruner else optuna.pruners.NopPruner())

    def objective(trial: Any) -> float:
        params = {p.name: trial.suggest_float(p.name, p.low, p.high) for p in problem.space}  # type: ignore[union-attr]
        if not pruner:
            return ledger.call(params, MAX_EPOCHS)
        value = math.inf
        for epoch in range(1, MAX_EPOCHS + 1):
            value = ledger.call(params, epoch, epoch - 1)  # one epoch more, reported as Optuna's examples do
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    def stop_at_budget(study: Any, trial: Any) -> None:
        if ledger.epochs >= epochs:
            study.stop()

    study.optimize(objective, n_trials=10_000, callbacks=[stop_at_budget])
    return ledger


FIDELITY_OPTIMIZERS = ("refiner+fidelity", "refiner", "optuna-tpe+hyperband", "optuna-tpe", "optuna-random")


def _run_one(problem: CurveProblem, optimizer: str, seed: int, epochs: int, rounds: int = 3) -> dict[str, Any]:
    started = time.perf_counter()
    if optimizer in ("refiner+fidelity", "refiner"):
        ledger = _refiner(problem, seed, epochs=epochs, fidelity=optimizer == "refiner+fidelity", rounds=rounds)
    else:
        sampler = "random" if optimizer.endswith("random") else "tpe"
        ledger = _optuna(problem, seed, epochs=epochs, sampler=sampler, pruner=optimizer.endswith("hyperband"))
    return {"problem": problem.name, "optimizer": optimizer, "seed": seed, "epochs": ledger.epochs,
            "best_final": None if math.isinf(ledger.best) else ledger.best, "wall_s": time.perf_counter() - started}


def run_fidelity_benchmark(seeds: int, epochs: int = DEFAULT_EPOCHS, problems: list[str] | None = None,
                           optimizers: list[str] | None = None, out: Path | None = None,
                           rounds: int = 3) -> dict[str, Any]:
    """Every optimizer on every problem and seed, each given ``epochs`` epochs (``rounds``: refiner's)."""
    runs = []
    for name in problems or list(LC_PROBLEMS):
        problem = LC_PROBLEMS[name]
        for seed in range(seeds):
            for optimizer in optimizers or FIDELITY_OPTIMIZERS:
                record = _run_one(problem, optimizer, seed, epochs, rounds)
                runs.append(record)
                log.info("%s seed %d %s: %d epochs, best %s", name, seed, optimizer, record["epochs"], record["best_final"])
    result = {"max_epochs": MAX_EPOCHS, "eta": ETA, "budget": epochs, "seeds": seeds, "runs": runs}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "fidelity.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def format_fidelity_report(result: Mapping[str, Any]) -> str:
    """Per problem and optimizer: median best final value, median epochs, wins against refiner+fidelity."""
    lines = [f"multi-fidelity suite: {result['seeds']} seeds, rungs 1..{result['max_epochs']} (eta {result['eta']}), "
             f"every optimizer given {result['budget']} epochs (refiner+fidelity as fidelity.total)",
             f"{'problem':<14} {'optimizer':<22} {'median best final':>18} {'median epochs':>14} "
             f"{'median wall s':>13} {'refiner+fidelity better':>24}"]
    runs = result["runs"]
    for name in dict.fromkeys(r["problem"] for r in runs):
        mine = {r["seed"]: r["best_final"] for r in runs if r["problem"] == name and r["optimizer"] == "refiner+fidelity"}
        for optimizer in dict.fromkeys(r["optimizer"] for r in runs if r["problem"] == name):
            rows = [r for r in runs if r["problem"] == name and r["optimizer"] == optimizer]
            finals = [r["best_final"] if r["best_final"] is not None else math.inf for r in rows]
            wins = sum(1 for r in rows if optimizer != "refiner+fidelity"
                       and (mine.get(r["seed"]) or math.inf) < (r["best_final"] if r["best_final"] is not None else math.inf))
            lines.append(f"{name:<14} {optimizer:<22} {statistics.median(finals):>18.4g} "
                         f"{statistics.median(r['epochs'] for r in rows):>14.0f} "
                         f"{statistics.median(r['wall_s'] for r in rows):>13.2f} "
                         f"{'' if optimizer == 'refiner+fidelity' else f'{wins}/{len(rows)}':>24}")
    return "\n".join(lines)
