"""The optimizers under comparison, each run on one problem at one trial budget with one seed.

Every optimizer gets the same objective wrapper (:class:`Recorder`), which times each evaluation,
so a run's *orchestration time* is its wall time minus the time spent inside the objective. On a
noisy problem it hands the optimizer noisy observations, drawn from the run's noise stream
(:meth:`~refiner.bench.problems.Problem.noise_rng` of the run's seed), and records the noiseless
value of every trial beside them (``true_values``), which regret is measured with.

* ``refiner``: the default schedule for a total budget, :func:`refiner.settings.split_budget`: 3 rounds,
  a random round of 20 % of the budget, then two equal Bayesian rounds on narrowed spaces. Its
  schedule depends on the budget, so it runs once per budget.
* ``kt_random``, ``kt_bayes``: stock KerasTuner ``RandomSearchOracle`` and
  ``BayesianOptimizationOracle`` with default settings, driven by a ``Tuner`` subclass whose
  ``run_trial`` returns the objective. Seeds are ``seed + 1`` because KerasTuner replaces a seed of 0
  by a random one. For ``kt_bayes`` see :func:`fast_gp_predict` (same numbers, less time).
* ``optuna_random``, ``optuna_tpe``: Optuna's ``RandomSampler`` and ``TPESampler`` with default
  settings, through ask-and-tell.
* ``bayes_opt_sdr``: bayes_opt with ``SequentialDomainReductionTransformer`` (default settings,
  5 initial points), on problems whose parameters are all floats (log floats searched in log10).

None but refiner changes behaviour with the budget, so those run once at the largest budget and
smaller budgets are read off their incumbent curves (the issue's rule).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from refiner.bench.problems import Problem
from refiner.bench.regions import contains_any, holds_near_optimum, volume_fraction
from refiner.space import Float

__all__ = ["Recorder", "Optimizer", "OPTIMIZERS", "get_optimizer", "REFINER_ROUNDS", "refiner_schedule",
           "fast_gp_predict"]

log = logging.getLogger(__name__)

REFINER_ROUNDS = 3


def refiner_schedule(budget: int, rounds: int = REFINER_ROUNDS,
                     initial_share: float | None = None) -> tuple[int, int, int]:
    """(rounds, initial_trials, trials_per_round) for a total budget: the product's
    :func:`~refiner.settings.split_budget`, or, for a method experiment, another random-round share."""
    from refiner.settings import split_budget

    if initial_share is None:
        initial, per_round = split_budget(budget, rounds)
        return rounds, initial, per_round
    if not 0.0 < initial_share < 1.0 or rounds < 2 or budget < rounds + 1:
        raise ValueError(f"an initial share must be in (0, 1) with at least 2 rounds and a budget above them, "
                         f"got share {initial_share}, {rounds} rounds, budget {budget}")
    per_round = int(round(budget * (1 - initial_share) / (rounds - 1)))
    return rounds, budget - per_round * (rounds - 1), per_round


class Recorder:
    """The objective as every optimizer sees it: evaluates, and records value and timing per trial."""

    def __init__(self, problem: Problem, seed: int = 0):
        self.problem = problem
        self._noise = problem.noise_rng(seed) if problem.noisy else None
        self.values: list[float] = []  # what the optimizer was told (noisy on a noisy problem)
        self.true_values: list[float] = []  # the noiseless values of the same trials
        self.objective_s: list[float] = []
        self.elapsed_s: list[float] = []  # wall time since start() at the end of each trial
        self._t0 = time.perf_counter()

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def __call__(self, params: Mapping[str, Any]) -> float:
        t = time.perf_counter()
        value, true = self.problem.observe(params, self._noise)
        done = time.perf_counter()
        self.values.append(value)
        self.true_values.append(true)
        self.objective_s.append(done - t)
        self.elapsed_s.append(done - self._t0)
        return value

    def record(self, wall_s: float, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        out = {
            "values": self.values,
            "objective_s": self.objective_s,
            "elapsed_s": self.elapsed_s,
            "wall_s": wall_s,
            "extra": dict(extra or {}),
        }
        if self.problem.noisy:  # deterministic problems: the same list, not worth writing twice
            out["true_values"] = self.true_values
        return out


@dataclass(frozen=True)
class Optimizer:
    name: str
    label: str
    knows_budget: bool  # True: run once per budget; False: run at the largest, read the rest off the curve
    applies_to: Callable[[Problem], bool]
    run: Callable[..., dict[str, Any]]  # (problem, budget, seed, workdir, **options) -> record
    cost: float = 1.0  # relative cost, to start the slow tasks first


def _timed(recorder: Recorder, body: Callable[[], Mapping[str, Any] | None]) -> dict[str, Any]:
    recorder.start()
    started = time.perf_counter()
    extra = body()
    return recorder.record(time.perf_counter() - started, extra)


# -- refiner ------------------------------------------------------------------------------------
def _run_refiner(problem: Problem, budget: int, seed: int, workdir: Path, rounds: int = REFINER_ROUNDS,
                 narrowing: Mapping[str, Any] | None = None, initial_share: float | None = None) -> dict[str, Any]:
    """``rounds``, ``narrowing`` (a NarrowingConfig dict) and ``initial_share`` (round 0's share of
    the budget) exist to measure method changes; the defaults are the product's."""
    from refiner.loop import Refiner
    from refiner.trial import Objective

    rounds, initial, per_round = refiner_schedule(budget, rounds, initial_share)
    recorder = Recorder(problem, seed)

    def body() -> dict[str, Any]:
        agent = Refiner(function=recorder, space=problem.space, objective=Objective("loss", "min"), rounds=rounds,
                        trials_per_round=per_round, initial_trials=initial, directory=workdir, project_name="refiner", seed=seed,
                        target_name=f"bench:{problem.name}", overwrite=True, narrowing=dict(narrowing or {}))
        agent.search()
        refined = agent.refined_space
        return {
            "rounds": rounds,
            "trials_per_round": per_round,
            "initial_trials": initial,
            "contains_optimum": contains_any(refined, problem.optima) if problem.optima else None,
            "near_optimum": holds_near_optimum(refined, problem, seed) if problem.optima else None,
            "volume_fraction": volume_fraction(problem.space, refined),
            "refined_space": refined.to_dict(),
        }

    return _timed(recorder, body)


# -- KerasTuner ---------------------------------------------------------------------------------
_KT_CLASSES: dict[str, Any] = {}


def fast_gp_predict(gpr_class: type) -> type:
    """``gpr_class`` whose ``predict`` skips scikit-learn's per-call input validation.

    Stock KerasTuner optimises its acquisition with 50 L-BFGS restarts and finite differences, one
    ``predict`` per point; scikit-learn's input checks are about 60% of that time (profiled: 62 of
    96 s in a 40-trial 6-D run), and at 60 trials stock Bayesian optimisation took 90 s of a 6-D
    problem on this machine, too slow for the quick suite to fit its hour. The arithmetic below is
    scikit-learn's own posterior (``_gpr.py``, Rasmussen & Williams Alg. 2.1), applied to the same
    float64 matrix the checks would pass through unchanged, so the proposals are bit-identical
    (``tests/test_bench.py`` checks it). Anything unusual goes to the stock method.
    """
    from scipy.linalg import solve_triangular
    from sklearn.gaussian_process._gpr import GPR_CHOLESKY_LOWER

    class FastPredictGPR(gpr_class):  # type: ignore[misc, valid-type]
        def predict(self, X, return_std=False, return_cov=False):  # noqa: N803 - sklearn's signature
            plain = (type(X) is np.ndarray and X.dtype == np.float64 and X.ndim == 2 and return_std
                     and not return_cov and hasattr(self, "X_train_") and X.shape[1] == self.n_features_in_)
            if not plain:
                return super().predict(X, return_std=return_std, return_cov=return_cov)
            K_trans = self.kernel_(X, self.X_train_)
            y_mean = K_trans @ self.alpha_
            y_mean = self._y_train_std * y_mean + self._y_train_mean
            if y_mean.ndim > 1 and y_mean.shape[1] == 1:
                y_mean = np.squeeze(y_mean, axis=1)
            V = solve_triangular(self.L_, K_trans.T, lower=GPR_CHOLESKY_LOWER, check_finite=False)
            y_var = self.kernel_.diag(X).copy()
            y_var -= np.einsum("ij,ji->i", V.T, V)
            y_var[y_var < 0] = 0.0
            y_var = np.outer(y_var, self._y_train_std**2).reshape(*y_var.shape, -1)
            if y_var.shape[1] == 1:
                y_var = np.squeeze(y_var, axis=1)
            return y_mean, np.sqrt(y_var)

    FastPredictGPR.__name__ = gpr_class.__name__
    return FastPredictGPR


def _kt_classes() -> dict[str, Any]:
    if _KT_CLASSES:
        return _KT_CLASSES
    import keras_tuner as kt
    from sklearn.gaussian_process import GaussianProcessRegressor

    class FunctionTuner(kt.Tuner):
        """The stock way to tune a Python function with KerasTuner: ``run_trial`` returns the objective."""

        def __init__(self, *args: Any, function: Callable[[Mapping[str, Any]], float], **kwargs: Any):
            self._function = function
            super().__init__(*args, **kwargs)

        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> float:
            return self._function(dict(trial.hyperparameters.values))

    fast_gpr = fast_gp_predict(GaussianProcessRegressor)

    class BayesianOracle(kt.oracles.BayesianOptimizationOracle):
        def _make_gpr(self):
            stock = super()._make_gpr()
            return fast_gpr(**stock.get_params(deep=False))  # the stock GP's settings, unchanged

    _KT_CLASSES.update(tuner=FunctionTuner, random=kt.oracles.RandomSearchOracle, bayes=BayesianOracle,
                       stock_bayes=kt.oracles.BayesianOptimizationOracle, kt=kt)
    return _KT_CLASSES


def _run_kt(kind: str) -> Callable[[Problem, int, int, Path], dict[str, Any]]:
    def run(problem: Problem, budget: int, seed: int, workdir: Path) -> dict[str, Any]:
        classes = _kt_classes()
        kt = classes["kt"]
        recorder = Recorder(problem, seed)

        def body() -> None:
            oracle = classes[kind](objective=kt.Objective("loss", "min"), max_trials=budget,
                                   hyperparameters=problem.space.to_keras_tuner(), seed=seed + 1)
            tuner = classes["tuner"](oracle=oracle, function=recorder, directory=str(workdir),
                                     project_name=kind, overwrite=True)
            tuner.search(verbose=0)

        return _timed(recorder, body)

    return run


# -- Optuna -------------------------------------------------------------------------------------
def _run_optuna(kind: str) -> Callable[[Problem, int, int, Path], dict[str, Any]]:
    def run(problem: Problem, budget: int, seed: int, workdir: Path) -> dict[str, Any]:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        recorder = Recorder(problem, seed)

        def body() -> None:
            sampler = optuna.samplers.RandomSampler(seed=seed) if kind == "random" else optuna.samplers.TPESampler(seed=seed)
            study = optuna.create_study(direction="minimize", sampler=sampler)
            distributions = problem.space.to_optuna()
            for _ in range(budget):
                trial = study.ask(distributions)
                study.tell(trial, recorder(_active(problem, trial.params)))

        return _timed(recorder, body)

    return run


def _active(problem: Problem, params: Mapping[str, Any]) -> dict[str, Any]:
    """Drop parameters whose condition does not hold (Optuna's fixed distributions sample them all)."""
    return {name: params[name] for name in problem.space.active_names(params)}


# -- bayes_opt ----------------------------------------------------------------------------------
def _run_bayes_opt(problem: Problem, budget: int, seed: int, workdir: Path) -> dict[str, Any]:
    import warnings

    from bayes_opt import BayesianOptimization, SequentialDomainReductionTransformer

    params = problem.space.tunable()
    bounds = {p.name: ((math.log10(p.low), math.log10(p.high)) if p.log else (p.low, p.high)) for p in params}
    fixed = {p.name: p.value for p in problem.space if p not in params}  # type: ignore[union-attr]
    recorder = Recorder(problem, seed)

    def target(**x: float) -> float:
        config = dict(fixed)
        for p in params:
            assert isinstance(p, Float)
            config[p.name] = p.snap(10 ** x[p.name] if p.log else x[p.name])
        return -recorder(config)  # bayes_opt maximises

    def body() -> None:
        optimizer = BayesianOptimization(f=target, pbounds=bounds, random_state=seed, verbose=0,
                                         bounds_transformer=SequentialDomainReductionTransformer(),
                                         allow_duplicate_points=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # bound-shrinking chatter, once per iteration
            optimizer.maximize(init_points=min(5, budget), n_iter=max(0, budget - 5))

    return _timed(recorder, body)


def _always(problem: Problem) -> bool:
    return True


OPTIMIZERS: dict[str, Optimizer] = {o.name: o for o in (
    Optimizer("refiner", "refiner (3 rounds)", True, _always, _run_refiner, cost=1.0),
    Optimizer("kt_random", "KerasTuner RandomSearch", False, _always, _run_kt("random"), cost=0.3),
    Optimizer("kt_bayes", "KerasTuner BayesianOptimization", False, _always, _run_kt("bayes"), cost=8.0),
    Optimizer("optuna_random", "Optuna RandomSampler", False, _always, _run_optuna("random"), cost=0.3),
    Optimizer("optuna_tpe", "Optuna TPESampler", False, _always, _run_optuna("tpe"), cost=0.6),
    Optimizer("bayes_opt_sdr", "bayes_opt + SequentialDomainReduction", False, lambda p: p.all_float,
              _run_bayes_opt, cost=2.0),
)}


def get_optimizer(name: str) -> Optimizer:
    try:
        return OPTIMIZERS[name]
    except KeyError:
        raise KeyError(f"unknown optimizer {name!r}; the optimizers are {', '.join(OPTIMIZERS)}") from None
