"""Run one round on Optuna: ``RandomSampler`` (round 0) or ``TPESampler`` (later rounds).

Same contract as :mod:`refiner.engines.keras_tuner`: a round's space and budget in, finished trials
out through a callback, the run folder untouched. Each round is its own study in one storage
(an SQLite file in the run folder unless told otherwise), and:

* **Warm start.** Earlier completed trials inside the round's space are re-created under the new
  distributions and added to the study, so TPE starts from what is known (Optuna's samplers fall
  back to random for parameters whose distribution changed, which is why a new study per round).
* **No repeats.** A proposal equal to a configuration already evaluated is told as failed (marked
  ``refiner_duplicate``, never recorded by refiner) and replaced by an enqueued random point.
* **Failures.** An exception or a NaN/inf objective is recorded as a failed trial and told to
  Optuna as FAIL; the round goes on.
* **Determinism.** The sampler is re-created with a seed derived from (seed, trials so far) before
  each proposal, so a resumed round proposes what the uninterrupted one would have. A resumed
  round opens a fresh study (``…-attempt-N``) rebuilt from ``trials.jsonl``, the record.

A Keras hypermodel runs unchanged: ``build_model(hp)`` receives a ``keras_tuner.HyperParameters``
holding the trial's values, and the objective is the best epoch's value averaged over executions,
as KerasTuner computes it.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from typing import Any, Mapping

import numpy as np

from refiner.engines.common import RoundSpec, TrialCallback, derive_seed, function_metrics, plain
from refiner.space import Fixed, SearchSpace
from refiner.trial import Objective, Trial, TrialState

__all__ = ["run_round", "default_storage"]

log = logging.getLogger(__name__)


def default_storage(run_root: Any) -> str:
    """The SQLite file inside the run folder: nothing to start, one file to copy."""
    return f"sqlite:///{run_root}/optuna.db"


def _key(values: Mapping[str, Any]) -> str:
    return json.dumps(values, sort_keys=True, default=str)


def _suggest(trial: Any, space: SearchSpace, distributions: Mapping[str, Any]) -> dict[str, Any]:
    """Define-by-run: suggest each parameter whose conditions hold, in declaration order."""
    from optuna.distributions import FloatDistribution, IntDistribution

    values: dict[str, Any] = {}
    for p in space:
        if not p.is_active(values):
            continue
        d = distributions[p.name]
        if isinstance(d, FloatDistribution):
            values[p.name] = trial.suggest_float(p.name, d.low, d.high, step=d.step, log=d.log)
        elif isinstance(d, IntDistribution):
            values[p.name] = trial.suggest_int(p.name, d.low, d.high, step=d.step, log=d.log)
        else:
            values[p.name] = trial.suggest_categorical(p.name, list(d.choices))
    return values


def _sampler(kind: str, seed: int, budget: int, n_known: int) -> Any:
    import optuna

    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # Warm trials count as startup trials: that is the point of adding them.
    startup = max(2, min(10, budget // 3))
    with warnings.catch_warnings():
        # multivariate TPE with `group` handles conditional parameters; Optuna labels both experimental.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True, group=True)


def _study(spec: RoundSpec, storage: str, study_prefix: str) -> Any:
    import optuna

    attempt = 1
    while True:
        name = f"{study_prefix}-round-{spec.round_index}" + (f"-attempt-{attempt}" if attempt > 1 else "")
        try:
            return optuna.create_study(storage=storage, study_name=name,
                                       direction="maximize" if spec.objective.direction == "max" else "minimize")
        except optuna.exceptions.DuplicatedStudyError:
            attempt += 1  # an interrupted attempt: keep it for the dashboard, start a fresh one


def _add(study: Any, record: Trial, space: SearchSpace, distributions: Mapping[str, Any]) -> None:
    import optuna

    active = [n for n in space.active_names(record.hyperparameters) if n in record.hyperparameters]
    params = {n: record.hyperparameters[n] for n in active}
    frozen = optuna.trial.create_trial(
        params=params, distributions={n: distributions[n] for n in active},
        value=float(record.score) if record.ok else None,  # type: ignore[arg-type]
        state=optuna.trial.TrialState.COMPLETE if record.ok else optuna.trial.TrialState.FAIL,
        user_attrs={"refiner_trial_id": record.trial_id},
    )
    study.add_trial(frozen)


def run_round(spec: RoundSpec, on_trial: TrialCallback, *, storage: str, study_prefix: str = "refiner") -> int:
    """Run up to ``spec.budget`` new trials of one round; ``on_trial`` receives each. Returns how many ran."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = spec.space
    distributions = space.to_optuna()
    study = _study(spec, storage, study_prefix)
    seen: set[str] = set()
    for record in list(spec.warm_trials) + list(spec.done_trials):
        _add(study, record, space, distributions)
        seen.add(_key(record.hyperparameters))
    kind = "random" if spec.kind == "random" else "tpe"
    n_known = len(spec.warm_trials) + len(spec.done_trials)
    ran = 0
    rng = np.random.default_rng(derive_seed(spec.seed, spec.round_index, "optuna-fallback"))
    while ran < spec.budget:
        n = len(study.get_trials(deepcopy=False))
        study.sampler = _sampler(kind, derive_seed(spec.seed, spec.round_index, "proposals", n), spec.budget, n_known)
        trial = study.ask()
        values = _suggest(trial, space, distributions)
        if _key(values) in seen:
            trial.set_user_attr("refiner_duplicate", True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            fresh = _fresh_point(space, seen, rng)
            if fresh is None:
                log.info("round space exhausted: every configuration has been tried")
                break
            study.enqueue_trial(fresh)
            continue
        seen.add(_key(values))
        record = _evaluate(spec, trial.number, values)
        on_trial(record)  # record first: the record is what a resume trusts
        if record.ok:
            study.tell(trial, record.score)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        ran += 1
    return ran


def _fresh_point(space: SearchSpace, seen: set[str], rng: np.random.Generator, tries: int = 200) -> dict[str, Any] | None:
    for _ in range(tries):
        values = space.sample(rng)
        values = {k: v for k, v in values.items() if not isinstance(space[k], Fixed) or k in values}
        if _key(values) not in seen:
            return values
    return None


def _evaluate(spec: RoundSpec, number: int, values: dict[str, Any]) -> Trial:
    started = time.perf_counter()
    metrics: dict[str, float] = {}
    message = None
    try:
        if spec.function is not None:
            metrics = function_metrics(spec.function(dict(values)), spec.objective)
        else:
            metrics = _fit_hypermodel(spec, number, values)
        value = metrics.get(spec.objective.name)
        if value is None or not math.isfinite(float(value)):
            raise ValueError(f"objective {spec.objective.name!r} is {value!r}; the trial counts as failed")
    except Exception as exc:  # a failing trial is recorded, never fatal
        message = f"{type(exc).__name__}: {exc}"[:500]
        log.debug("trial %d failed", number, exc_info=True)
    ok = message is None
    return Trial(
        trial_id=f"{spec.round_index}-o{number:04d}",
        round=spec.round_index,
        hyperparameters=plain(values),
        score=float(metrics[spec.objective.name]) if ok else None,
        status=TrialState.COMPLETE if ok else TrialState.FAILED,
        metrics={k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))},
        duration_s=time.perf_counter() - started,
        message=message,
    )


def _fit_hypermodel(spec: RoundSpec, number: int, values: dict[str, Any]) -> dict[str, float]:
    """Build and fit ``build_model(hp)`` as KerasTuner would, with ``hp`` holding this trial's values."""
    import keras

    hp = spec.space.to_keras_tuner()
    hp.values.update(values)
    objective: Objective = spec.objective
    best: list[float] = []
    last: dict[str, list[float]] = {}
    for execution in range(spec.executions_per_trial):
        if spec.seed is not None:
            keras.utils.set_random_seed(derive_seed(spec.seed, spec.round_index, number, execution))
        model = spec.hypermodel(hp)  # type: ignore[misc]
        history = model.fit(*spec.fit_args, **{"verbose": 0, **dict(spec.fit_kwargs)})
        curve = history.history.get(objective.name)
        if not curve:
            raise ValueError(f"model.fit reported no {objective.name!r}; it reported {sorted(history.history)}")
        best.append(max(curve) if objective.direction == "max" else min(curve))
        for name, series in history.history.items():
            last.setdefault(name, []).append(float(series[-1]))
        keras.backend.clear_session()
    metrics = {name: float(np.mean(v)) for name, v in last.items()}
    metrics[objective.name] = float(np.mean(best))
    return metrics
