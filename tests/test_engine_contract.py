"""One contract for every engine, run on each registered one (as Optuna tests every storage with one suite).

An engine passes when it runs a round's budget inside the round's space, reports every trial
(failures too) through the callback, never re-runs a known configuration, resumes where the
record stops with the proposals the uninterrupted round would have made, stops on an exhausted
discrete space, keeps an exploration reserve out of its box, and stops the run when the first
result lacks the objective.

``PlainRandomEngine`` below is a complete engine in about thirty lines: registering it is all it
takes for the loop, the config check and the CLI to accept it, which the last test shows.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import refiner
from engine_kit import round_spec
from refiner.engines import REGISTRY, engine_class, engine_names, make_engine
from refiner.engines.base import Engine, RoundSpec, TrialCallback
from refiner.engines.evaluation import FirstTrialError, derive_seed
from refiner.space import Choice, Float, Int, SearchSpace
from refiner.trial import TrialState


class PlainRandomEngine(Engine):
    """Uniform random proposals with numpy: a small engine that honours the contract."""

    name = "plain-random"

    def round_label(self, kind: str, space: SearchSpace) -> str:
        return "plain random sampling"

    def run_round(self, spec: RoundSpec, on_trial: TrialCallback) -> int:
        seen = {json.dumps(t.hyperparameters, sort_keys=True) for t in [*spec.warm_trials, *spec.done_trials]}
        reported = 0
        while reported < spec.budget:
            n = len(spec.done_trials) + reported  # seeds from the trial's number: a resume draws the same
            draws = (spec.space.sample(np.random.default_rng(derive_seed(spec.seed, spec.round_index, n, i)))
                     for i in range(200))
            values = next((v for v in draws if json.dumps(v, sort_keys=True) not in seen
                           and (spec.exclude is None or not spec.exclude.contains(v))), None)
            if values is None:
                break  # the space is exhausted
            seen.add(json.dumps(values, sort_keys=True))
            outcome = spec.evaluation.run(values, space=spec.space, key=(spec.round_index, n),
                                          check_objective=spec.check_objective)
            trial_id = f"{spec.round_index}-{'r' if spec.reserve else ''}p{n:03d}"
            on_trial(spec.evaluation.record(outcome, trial_id=trial_id, round_index=spec.round_index,
                                            values=values, reserve=spec.reserve))
            reported += 1
        return reported


ENGINES = [*engine_names(), PlainRandomEngine.name]
CONTINUOUS = SearchSpace([Float("x", -5.0, 10.0), Float("y", 0.0, 15.0)])
DISCRETE = SearchSpace([Choice("act", ("relu", "tanh", "elu")), Int("layers", 1, 4)])  # 12 configurations


@pytest.fixture(autouse=True)
def _plain_random_registered(monkeypatch):
    monkeypatch.setitem(REGISTRY, PlainRandomEngine.name, PlainRandomEngine)


def quadratic(p):
    return (p["x"] - 1.0) ** 2 + (p["y"] - 2.0) ** 2


def run(engine_name, spec):
    out = []
    reported = make_engine(engine_name).run_round(spec, out.append)
    assert reported == len(out)
    return out


def key(trial):
    return json.dumps(trial.hyperparameters, sort_keys=True)


@pytest.mark.parametrize("engine_name", ENGINES)
@pytest.mark.parametrize("kind", ["random", "model"])
def test_a_round_runs_its_budget_inside_its_space(engine_name, kind, tmp_path):
    trials = run(engine_name, round_spec(tmp_path, CONTINUOUS, quadratic, 6, kind=kind))
    assert len(trials) == 6 and len({t.trial_id for t in trials}) == 6
    assert all(t.ok and CONTINUOUS.contains(t.hyperparameters) for t in trials)
    assert all(math.isclose(t.score, quadratic(t.hyperparameters)) for t in trials)
    assert all(t.round == (0 if kind == "random" else 1) and not t.reserve for t in trials)
    label = engine_class(engine_name)().round_label(kind, CONTINUOUS)
    assert isinstance(label, str) and label


@pytest.mark.parametrize("engine_name", ENGINES)
def test_failures_are_reported_and_never_end_the_round(engine_name, tmp_path):
    def flaky(p):
        if p["x"] < 0:
            raise RuntimeError("diverged")
        return float("nan") if p["y"] > 10 else quadratic(p)

    trials = run(engine_name, round_spec(tmp_path, CONTINUOUS, flaky, 12))
    assert len(trials) == 12
    failed = [t for t in trials if not t.ok]
    assert failed and all(t.status is TrialState.FAILED and t.score is None and t.message for t in failed)
    for t in trials:
        expected_ok = t.hyperparameters["x"] >= 0 and t.hyperparameters["y"] <= 10
        assert t.ok == expected_ok, t
        if t.hyperparameters["x"] < 0:
            assert "RuntimeError: diverged" in t.message


@pytest.mark.parametrize("engine_name", ENGINES)
def test_known_configurations_are_never_run_again(engine_name, tmp_path):
    warm = run(engine_name, round_spec(tmp_path / "a", DISCRETE, lambda p: float(p["layers"]), 5))
    new = run(engine_name, round_spec(tmp_path / "b", DISCRETE, lambda p: float(p["layers"]), 7, kind="model",
                                      warm_trials=warm))
    assert len(new) == 7
    assert len({key(t) for t in [*warm, *new]}) == 12  # the whole space, nothing twice


@pytest.mark.parametrize("engine_name", ENGINES)
def test_an_exhausted_discrete_space_ends_the_round(engine_name, tmp_path):
    trials = run(engine_name, round_spec(tmp_path, DISCRETE, lambda p: p["layers"] + (p["act"] == "tanh"), 20,
                                         kind="model"))
    assert len({key(t) for t in trials}) == len(trials) <= 12


@pytest.mark.parametrize("engine_name", ENGINES)
def test_a_resumed_round_proposes_what_the_uninterrupted_one_would_have(engine_name, tmp_path):
    full = run(engine_name, round_spec(tmp_path / "full", CONTINUOUS, quadratic, 6))
    resumed = run(engine_name, round_spec(tmp_path / "resumed", CONTINUOUS, quadratic, 3, done_trials=full[:3]))
    assert [key(t) for t in resumed] == [key(t) for t in full[3:]]
    again = run(engine_name, round_spec(tmp_path / "again", CONTINUOUS, quadratic, 6))
    assert [key(t) for t in again] == [key(t) for t in full]  # the same seed, the same trials


@pytest.mark.parametrize("engine_name", ENGINES)
def test_an_exploration_reserve_stays_out_of_its_box(engine_name, tmp_path):
    box = SearchSpace([Float("x", 0.0, 10.0), Float("y", 0.0, 15.0)])
    trials = run(engine_name, round_spec(tmp_path, CONTINUOUS, quadratic, 5, kind="model", reserve=True, exclude=box))
    assert len(trials) == 5
    assert all(t.reserve and not box.contains(t.hyperparameters) for t in trials)
    assert all("-r" in t.trial_id for t in trials)


@pytest.mark.parametrize("engine_name", ENGINES)
def test_a_first_result_without_the_objective_stops_the_run(engine_name, tmp_path):
    with pytest.raises(FirstTrialError, match="'loss' not found.*logged: acc"):
        run(engine_name, round_spec(tmp_path, CONTINUOUS, lambda p: {"acc": 1.0}, 4, check_objective=True))


def test_a_registered_engine_runs_the_whole_loop(tmp_path):
    """One class and one registration: the loop, its record and its checks need nothing else."""
    agent = refiner.Refiner(function=quadratic, space=CONTINUOUS, objective={"name": "loss", "direction": "min"},
                            rounds=2, trials_per_round=6, engine="plain-random", directory=tmp_path, verbose=0)
    agent.search()
    assert len(agent.trials) == 12 and agent.best_trial is not None
    assert agent.store.read_run()["settings"]["engine"] == "plain-random"
    with pytest.raises(ValueError, match="`storage` is not an option of the plain-random engine"):
        refiner.Refiner(function=quadratic, space=CONTINUOUS, engine="plain-random", storage="sqlite:///x.db")
