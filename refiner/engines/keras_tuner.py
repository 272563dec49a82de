"""Run one round on KerasTuner: ``RandomSearch`` (round 0) or ``BayesianOptimization`` (later rounds).

What this adds to the stock tuners, and why (facts in DESIGN.md §5):

* **Override space.** The round's space is registered in full on a ``HyperParameters`` passed to
  the oracle with ``tune_new_entries=False``; KerasTuner keeps the first registration of a name,
  so it overrides the ranges ``build_model`` declares.
* **Warm start.** Earlier completed trials that lie inside the round's space are injected into
  ``oracle.trials`` as COMPLETED trials, so Bayesian optimisation's initial random points are
  not spent rediscovering what is known. Trials already finished in this round (a resumed run)
  are injected too, so nothing is run twice.
* **No repeats.** Stock Bayesian optimisation proposes the same configuration again on discrete
  spaces; a repeated proposal is replaced by a fresh random one, and the round stops when the
  space is exhausted.
* **Failures.** A trial that raises, or whose objective is NaN/inf, is recorded as failed at once
  (no retries; stock KerasTuner would turn +inf into 0, which looks best) and never ends the round.
* **Determinism.** The oracle's random state is re-seeded from (seed, trials so far) before each
  proposal, so a resumed round proposes what the uninterrupted one would have.

The project folder is a cache: ``trials.jsonl`` is the record. A resumed round moves an old
``kt/`` aside (``kt.interrupted-N``, nothing deleted) and rebuilds the oracle from the record.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from refiner.engines.common import (
    FirstTrialError, RoundSpec, TrialCallback, build_model, check_objective_logged, derive_seed, describe_data,
    function_metrics, plain, retrying, tries_note,
)
from refiner.errors import ValidationError
from refiner.space import SearchSpace
from refiner.trial import Trial, TrialState

__all__ = ["run_round", "discover_space"]

log = logging.getLogger(__name__)

UCB_BETA = 1.0
"""The Bayesian rounds' upper-confidence-bound weight (KerasTuner's default is 2.6). Narrowing has
already spent the exploration: the round searches a box the surrogate found promising, so it can
exploit more. On the quick benchmark (seeds 0-2, budget 60) median regret fell on 6 of 7 problems
against 2.6 (Branin 0.0039 -> 0.00017, Levy-4 0.53 -> 0.023, Hartmann-6 0.19 -> 0.13), with the
optimum kept inside as often; 0.5 was worse than 1.0 on four problems."""

STOCK_UCB_BETA = 2.6
"""KerasTuner's own weight, for the exploration reserve: it searches the declared space, where
exploring is its whole job."""

def _kt():
    import keras_tuner as kt  # imports TensorFlow: only when a round actually runs

    return kt


def discover_space(hypermodel: Callable[[Any], Any], workdir: Path) -> SearchSpace:
    """The space ``build_model(hp)`` declares, found the way KerasTuner finds it.

    KerasTuner builds the model repeatedly, setting parent values until every conditional scope
    has been active once; a throw-away tuner does exactly that.
    """
    kt = _kt()
    import keras

    built: list[Any] = []

    def probe(hp: Any) -> Any:
        model = build_model(hypermodel, hp)
        built.append(model)
        return model

    tmp = workdir / ".discover"
    try:
        tuner = kt.RandomSearch(probe, objective="loss", max_trials=1, directory=str(tmp),
                                project_name="space", overwrite=True)
        space = SearchSpace.from_keras_tuner(tuner.oracle.get_space())
    except Exception as exc:
        raise ValidationError(f"hypermodel: build_model(hp) failed with the default hyperparameters: "
                              f"{type(exc).__name__}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        _clear_keras_session()
    wrong = [m for m in built if not isinstance(m, keras.Model)]
    if wrong:
        raise ValidationError(f"hypermodel: build_model(hp) must return a keras.Model, got {type(wrong[0]).__name__}")
    return space


def _clear_keras_session() -> None:
    try:
        import keras

        keras.backend.clear_session()
    except Exception:  # pragma: no cover - clearing is a memory nicety only
        pass


def _oracle_mixin(base: type) -> type:
    """Add refiner's re-seeding and no-repeat rule to a KerasTuner oracle class."""

    class Oracle(base):  # type: ignore[misc, valid-type]
        refiner_seed: int = 1

        def populate_space(self, trial_id: str) -> dict[str, Any]:
            kt = _kt()
            n = len(self.trials)
            seed = derive_seed(self.refiner_seed, n)
            self._seed_state = seed
            if hasattr(self, "_random_state"):
                self._random_state = np.random.RandomState(seed)
            response = super().populate_space(trial_id)
            values = response.get("values")
            if response["status"] == kt.engine.trial.TrialStatus.RUNNING and values is not None:
                probe = self.hyperparameters.copy()
                probe.values = dict(values)
                probe.ensure_active_values()
                if self._duplicate(probe.values):
                    # Stock Bayesian optimisation repeats itself on discrete spaces: draw a new point.
                    log.debug("trial %s: proposal repeats an earlier configuration; drawing a random one", trial_id)
                    values = self._random_values()
                    if values is None:
                        log.info("round space exhausted: every configuration has been tried")
                        return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
                    response = {"status": kt.engine.trial.TrialStatus.RUNNING, "values": values}
            return response

        def _vectorize_trials(self) -> tuple[np.ndarray, np.ndarray]:
            # Stock Bayesian optimisation drops failed trials, so it keeps proposing the region
            # where they fail. Show them to the GP at the worst observed score instead.
            x, y = super()._vectorize_trials()
            failed = [t for t in self.trials.values() if t.status in ("FAILED", "INVALID")]
            if not failed or len(y) == 0:
                return x, y
            rows = []
            for t in failed:
                hps = t.hyperparameters
                rows.append([hp.value_to_prob(hps.values[hp.name] if hps.is_active(hp) and hp.name in hps.values
                                              else hp.default) for hp in self._nonfixed_space()])
            worst = float(np.max(y))  # KerasTuner frames everything as minimisation here
            return np.vstack([x, np.asarray(rows)]), np.concatenate([y, np.full(len(rows), worst)])

    Oracle.__name__ = f"Refiner{base.__name__}"
    return Oracle


def _fast_acquisition(base: type) -> type:
    """KerasTuner's Bayesian oracle with a cheaper search for the acquisition optimum.

    Stock KerasTuner runs 50 L-BFGS restarts with finite-difference gradients, one GP prediction
    per call: about 2 s per proposal here, longer than many trials. The same GP and the same
    upper-confidence-bound acquisition are instead evaluated on 2,000 uniform candidates plus
    1,000 local perturbations of the most promising ones and of the best observed points, in two
    batched predictions (tens of milliseconds). The GP, its kernel and the acquisition are KerasTuner's
    (the acquisition with refiner's :data:`UCB_BETA`).
    """

    class Oracle(base):  # type: ignore[misc, valid-type]
        n_uniform = 2000
        n_local = 1000

        def populate_space(self, trial_id: str) -> dict[str, Any]:
            kt = _kt()
            completed = [t for t in self.trials.values() if t.status == "COMPLETED"]
            dimensions = len(self.hyperparameters.space)
            num_initial_points = self.num_initial_points or max(3 * dimensions, 3)
            if len(completed) < num_initial_points:
                return self._random_populate_space()
            x, y = self._vectorize_trials()
            if x.shape[1] == 0:  # every parameter fixed: nothing to model
                return self._random_populate_space()
            with warnings.catch_warnings():
                # Length scales at their bounds are routine with few points; not the user's concern.
                warnings.simplefilter("ignore", category=ConvergenceWarning)
                self.gpr.fit(x, y)
            bounds = self._get_hp_bounds()
            low, high = bounds[:, 0], bounds[:, 1]
            rng = self._random_state

            def acquisition(points: np.ndarray) -> np.ndarray:
                mu, sigma = self.gpr.predict(points, return_std=True)
                return mu - self.beta * sigma  # minimised, as in KerasTuner

            uniform = rng.uniform(low, high, size=(self.n_uniform, len(low)))
            scores = acquisition(uniform)
            best_observed = x[np.argsort(y)[:5]]
            centres = np.vstack([uniform[np.argsort(scores)[:10]], best_observed])
            picks = centres[rng.randint(0, len(centres), size=self.n_local)]
            local = np.clip(picks + rng.normal(0.0, 0.05, size=picks.shape) * (high - low), low, high)
            local_scores = acquisition(local)
            pool, pool_scores = np.vstack([uniform, local]), np.concatenate([scores, local_scores])
            return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": self._pick(pool, pool_scores)}

        def _pick(self, pool: np.ndarray, pool_scores: np.ndarray) -> dict[str, Any]:
            """The best candidate by the acquisition; for an exploration reserve, the best outside
            its round's box (the round's main part searches the box)."""
            order = np.argsort(pool_scores, kind="stable")
            exclude = getattr(self, "refiner_exclude", None)
            if exclude is not None:
                for i in order:
                    values = self._vector_to_values(pool[i])
                    if not exclude.contains(values):
                        return values
            return self._vector_to_values(pool[order[0]])

    Oracle.__name__ = base.__name__
    return Oracle


def _make_tuner_class(kt: Any) -> type:
    class RefinerTuner(kt.Tuner):
        """A KerasTuner ``Tuner`` that records every finished trial through a callback."""

        def __init__(self, *args: Any, spec: RoundSpec, on_trial: TrialCallback, **kwargs: Any):
            self._spec = spec
            self._on_trial = on_trial
            self._started: dict[str, float] = {}
            self._objective_checked = not spec.check_objective
            super().__init__(*args, **kwargs)

        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
            spec = self._spec
            try:
                return retrying(lambda: self._attempt(trial, *args, **kwargs), spec.trial_retries,
                                f"trial {spec.round_index}-{trial.trial_id}")
            except FirstTrialError as exc:
                raise _stop_run_class()(exc) from exc  # KerasTuner lets only its FatalError end a search
            except Exception as exc:
                if not spec.trial_retries:
                    raise
                raise kt.errors.FailedTrialError(f"{type(exc).__name__}: {exc}{tries_note(spec.trial_retries)}") from exc

        def _attempt(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
            spec = self._spec
            if spec.function is not None:
                result = spec.function(dict(trial.hyperparameters.values))
                self._check_objective(result.keys() if isinstance(result, dict) else [spec.objective.name])
                metrics = function_metrics(result, spec.objective)
            else:
                if spec.seed is not None:
                    # Weight initialisation, dropout and shuffling: seeded per trial, so a run with
                    # a seed trains the same models again (and a resumed trial matches).
                    import keras

                    keras.utils.set_random_seed(derive_seed(spec.seed, spec.round_index, _tag(spec) + trial.trial_id))
                result = super().run_trial(trial, *args, **kwargs)
                from keras_tuner.src.engine import tuner_utils  # not re-exported publicly

                metrics = tuner_utils.convert_to_metrics_dict(result, self.oracle.objective)
            value = metrics.get(spec.objective.name)
            if value is None or not math.isfinite(float(value)):
                raise kt.errors.FailedTrialError(
                    f"objective {spec.objective.name!r} is {value!r}; the trial counts as failed"
                )
            return metrics

        def _build_and_fit_model(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
            # One execution: one model built and fitted. The first of the run is checked at once,
            # so a misspelled objective costs one model, not a round.
            # Keras's epoch bars only at verbose=2; the agent logs one line per trial.
            kwargs["verbose"] = "auto" if self._spec.verbose >= 2 else 0
            watch = _first_epoch_watch()
            kwargs["callbacks"] = [*kwargs.get("callbacks", []), watch]
            try:
                results = super()._build_and_fit_model(trial, *args, **kwargs)
            except Exception as exc:
                if not self._objective_checked and watch.started and not watch.finished_epoch:
                    # The first model of the run built but could not train one epoch: almost always
                    # data the model cannot take, which every trial would repeat.
                    raise FirstTrialError(
                        f"data: the first model built but failed before finishing an epoch "
                        f"({type(exc).__name__}: {_telling_line(str(exc))}); the data loader gave "
                        f"{describe_data(args, kwargs)}: check it against build_model's input"
                    ) from exc
                raise
            history = getattr(results, "history", results)
            if isinstance(history, dict):
                self._check_objective(history.keys())
            return results

        def _check_objective(self, logged: Any) -> None:
            if not self._objective_checked:
                check_objective_logged(logged, self._spec.objective)
                self._objective_checked = True

        def on_trial_begin(self, trial: Any) -> None:
            self._started[trial.trial_id] = time.perf_counter()
            super().on_trial_begin(trial)

        def on_trial_end(self, trial: Any) -> None:
            # Record first, then let KerasTuner save: the record is what a resume trusts.
            self._on_trial(self._to_record(trial))
            super().on_trial_end(trial)
            if self._spec.hypermodel is not None:
                _clear_keras_session()  # frees the trial's model; a full gc, so only when there was one

        def _to_record(self, trial: Any) -> Trial:
            spec = self._spec
            duration = time.perf_counter() - self._started.pop(trial.trial_id, time.perf_counter())
            kt_metrics = self.oracle.get_trial(trial.trial_id).metrics
            metrics: dict[str, float] = {}
            for name in kt_metrics.metrics:
                best = kt_metrics.get_best_value(name) if name == spec.objective.name else kt_metrics.get_last_value(name)
                if best is not None and math.isfinite(float(best)):
                    metrics[name] = float(best)
            ok = trial.status == kt.engine.trial.TrialStatus.COMPLETED and spec.objective.name in metrics
            message = None if ok else _last_line(trial.message) or "the trial failed"
            if not ok and trial.message:
                log.debug("trial %s failed:\n%s", trial.trial_id, trial.message)
            return Trial(
                trial_id=f"{spec.round_index}-{_tag(spec)}{trial.trial_id}",
                round=spec.round_index,
                hyperparameters=plain(trial.hyperparameters.values),
                score=metrics[spec.objective.name] if ok else None,
                status=TrialState.COMPLETE if ok else TrialState.FAILED,
                metrics=metrics,
                duration_s=duration,
                message=message,
                reserve=spec.reserve,
            )

    return RefinerTuner


def _tag(spec: RoundSpec) -> str:
    """Reserve trials get ids of their own (``1-r05``): KerasTuner numbers each oracle's trials from its size."""
    return "r" if spec.reserve else ""


def _first_epoch_watch() -> Any:
    import keras

    class FirstEpochWatch(keras.callbacks.Callback):
        """Tells a model that failed before training from one that failed during its first epoch."""

        started = False
        finished_epoch = False

        def on_train_begin(self, logs: Any = None) -> None:
            self.started = True

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.finished_epoch = True

    return FirstEpochWatch()


def _stop_run_class() -> type:
    class StopRun(_kt().errors.FatalError):
        """Carries a refiner error through KerasTuner's search loop, which swallows all others."""

        def __init__(self, error: Exception):
            super().__init__(str(error))
            self.error = error

    return StopRun


def _telling_line(message: str) -> str:
    """The line of a (multi-line) Keras error that names the problem, e.g. the shapes that disagree."""
    plain_text = re.sub(r"\x1b\[[0-9;]*m", "", message)  # Keras colours its messages for terminals
    lines = [line.strip() for line in plain_text.splitlines() if line.strip()]
    for line in lines:
        if any(word in line for word in ("expected", "incompatible", "shape")):
            return line[:300]
    return lines[0][:300] if lines else "no message"


def _last_line(message: str | None) -> str | None:
    if not message:
        return None
    lines = [line for line in message.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else None


def run_round(spec: RoundSpec, on_trial: TrialCallback) -> int:
    """Run up to ``spec.budget`` new trials; ``on_trial`` receives each finished one. Returns how many ran."""
    kt = _kt()
    hp = spec.space.to_keras_tuner()
    tunable = len(spec.space.tunable())
    if spec.kind == "random":
        oracle_cls = _oracle_mixin(kt.oracles.RandomSearchOracle)
        extra: dict[str, Any] = {}
    elif spec.kind == "bayesian":
        oracle_cls = _oracle_mixin(_fast_acquisition(kt.oracles.BayesianOptimizationOracle))
        # Warm trials count towards the initial random points: they are why the round is warm.
        extra = {"num_initial_points": max(2, min(3 * tunable, spec.budget // 2 + 1)),
                 "beta": STOCK_UCB_BETA if spec.reserve else UCB_BETA}
    else:
        raise ValueError(f"round kind must be 'random' or 'bayesian', got {spec.kind!r}")

    injected = list(spec.warm_trials) + list(spec.done_trials)
    oracle = oracle_cls(
        objective=kt.Objective(spec.objective.name, spec.objective.direction),
        max_trials=len(injected) + spec.budget,
        hyperparameters=hp,
        tune_new_entries=False,
        allow_new_entries=True,
        seed=derive_seed(spec.seed, spec.round_index, *(("reserve",) if spec.reserve else ())),
        max_retries_per_trial=0,
        max_consecutive_failed_trials=spec.budget + len(injected) + 1,
        **extra,
    )
    oracle.refiner_seed = derive_seed(spec.seed, spec.round_index, "reserve" if spec.reserve else "proposals")
    oracle.refiner_exclude = spec.exclude

    _move_aside(spec.project_dir)
    tuner_cls = _make_tuner_class(kt)
    ran = 0

    def record(trial: Trial) -> None:
        nonlocal ran
        ran += 1
        on_trial(trial)

    tuner = tuner_cls(
        oracle=oracle,
        hypermodel=spec.hypermodel,
        executions_per_trial=spec.executions_per_trial,
        directory=str(spec.project_dir.parent),
        project_name=spec.project_dir.name,
        overwrite=True,
        spec=spec,
        on_trial=record,
    )
    oracle.verbose = 0  # the agent reports progress through logging
    _inject(kt, oracle, injected, spec)
    if spec.budget > 0:
        fit_kwargs = dict(spec.fit_kwargs)
        # Not passed to search(), which would turn KerasTuner's trial banners on: model.fit gets
        # its verbosity per execution (_build_and_fit_model).
        fit_kwargs.pop("verbose", None)
        # KerasTuner ships with DEBUG on, printing every failed trial's traceback to stdout;
        # refiner records the error and logs the traceback at debug level instead.
        from keras_tuner.src import config as kt_config

        debug, kt_config.DEBUG = kt_config.DEBUG, False
        try:
            tuner.search(*spec.fit_args, **fit_kwargs)
        except kt.errors.FatalError as exc:
            if isinstance(getattr(exc, "error", None), FirstTrialError):
                raise exc.error from None
            raise
        finally:
            kt_config.DEBUG = debug
    return ran


def _move_aside(project_dir: Path) -> None:
    """Keep an interrupted round's KerasTuner folder (checkpoints) instead of deleting it."""
    if not project_dir.exists():
        return
    n = 1
    while project_dir.with_name(f"{project_dir.name}.interrupted-{n}").exists():
        n += 1
    target = project_dir.with_name(f"{project_dir.name}.interrupted-{n}")
    project_dir.rename(target)
    log.info("kept the interrupted round's KerasTuner folder as %s", target)


def _inject(kt: Any, oracle: Any, trials: Sequence[Trial], spec: RoundSpec) -> None:
    """Put finished trials into the oracle as if it had run them (KerasTuner has no public warm start)."""
    TrialStatus = kt.engine.trial.TrialStatus
    for i, record in enumerate(trials):
        hps = oracle.hyperparameters.copy()
        values = {name: record.hyperparameters[name] for name in spec.space.active_names(record.hyperparameters)
                  if name in record.hyperparameters}
        hps.values = values
        hps.ensure_active_values()
        trial = kt.engine.trial.Trial(hyperparameters=hps, trial_id=f"w{i:04d}",
                                      status=TrialStatus.COMPLETED if record.ok else TrialStatus.FAILED)
        if record.ok:
            trial.metrics.register(spec.objective.name, direction=spec.objective.direction)
            trial.metrics.update(spec.objective.name, float(record.score))  # type: ignore[arg-type]
            trial.score = float(record.score)  # type: ignore[arg-type]
            trial.best_step = 0
        oracle.trials[trial.trial_id] = trial
        oracle.start_order.append(trial.trial_id)
        oracle.end_order.append(trial.trial_id)
        oracle._run_times[trial.trial_id] = 1
        oracle._record_values(trial)
    if trials:
        oracle.save()
