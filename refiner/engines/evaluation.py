"""Evaluating one configuration, the same way for every engine.

A trial is a call of the user's function, or the training of ``build_model(hp)`` as KerasTuner
trains it: ``executions_per_trial`` models, each scored at its best epoch (every metric read at
that epoch), the scores averaged. What engines differ in is only which configurations they
propose; whatever runs them, a configuration gets the same score, the same failure rules and the
same record:

* an exception, or an objective that is NaN/inf, fails the trial (stock KerasTuner would turn
  +inf into 0, which looks best); it is retried only when the run asks (``trial_retries``);
* the run's first model is checked for the objective among its metrics, and a first model that
  built but could not finish an epoch names the data it was given: mistakes every other trial
  would repeat stop the run at once (:class:`FirstTrialError`);
* with a seed, every execution is seeded from (seed, trial key, execution), so a run trains the
  same models again and a resumed trial matches;
* with a :class:`~refiner.fidelity.Fidelity`, a model trains at most ``max`` epochs and reports its
  objective after each; a function is called as ``f(params, budget)`` at each rung. The run's
  :class:`~refiner.fidelity.StoppingRule` stops a trial at a rung where it lags, and the trial is
  recorded as ``stopped`` with its curve.
"""

from __future__ import annotations

import copy
import logging
import math
import re
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from refiner.errors import ValidationError
from refiner.failpoints import checkpoint
from refiner.fidelity import Fidelity, StoppingRule
from refiner.space import SearchSpace
from refiner.trial import Objective, Trial, TrialState

__all__ = ["Evaluation", "Outcome", "FirstTrialError", "ObjectiveNotLoggedError", "build_model",
           "check_objective_logged", "derive_seed", "describe_data", "function_metrics", "plain"]

log = logging.getLogger(__name__)

ExtraCallbacks = Callable[[int], Sequence[Any]]  # execution number -> the engine's own Keras callbacks


class FirstTrialError(ValidationError):
    """The run's first model showed a mistake every other trial would repeat (the objective not
    logged, data the model cannot take): the run stops at once, saying what would work."""


class ObjectiveNotLoggedError(FirstTrialError):
    """The first model (or function call) did not log the objective; the message lists what it did log."""


@dataclass(frozen=True)
class Outcome:
    """What evaluating one configuration gave: its metrics, or why it failed."""

    metrics: dict[str, float]  # empty when the trial failed
    message: str | None  # why it failed; None when it succeeded
    duration_s: float
    curve: tuple[tuple[int, float], ...] | None = None  # with a fidelity: (budget, objective) as it trained
    stopped: bool = False  # a rung stopped it early
    epochs: int | None = None  # with a fidelity: epochs trained in all tries and executions (fidelity.total)

    @property
    def ok(self) -> bool:
        return self.message is None

    @property
    def fidelity(self) -> int | None:
        """The budget reached (the last point of the curve)."""
        return self.curve[-1][0] if self.curve else None


@dataclass
class Evaluation:
    """Runs a configuration: ``function(params)`` or ``build_model(hp)`` trained on the fit arguments."""

    objective: Objective
    function: Callable[[dict[str, Any]], Any] | None = None
    hypermodel: Any = None  # build_model(hp) or a keras_tuner.HyperModel
    fit_args: tuple = ()
    fit_kwargs: Mapping[str, Any] = field(default_factory=dict)
    executions_per_trial: int = 1
    trial_retries: int = 0  # extra tries for a trial that raises or returns NaN/inf
    verbose: int = 1  # 2 shows Keras's epoch bars; the trial lines are the loop's
    seed: int | None = None
    fidelity: Fidelity | None = None  # how much a trial trains, and where it may be stopped
    stopping: StoppingRule | None = None  # with a fidelity: judges trials at rungs (the loop seeds it)
    _succeeded: bool = field(default=False, init=False, repr=False)  # a result has shown the objective

    def __post_init__(self) -> None:
        if (self.function is None) == (self.hypermodel is None):
            raise ValueError("give exactly one of `function` and `hypermodel`")

    def run(self, values: Mapping[str, Any], *, space: SearchSpace, key: tuple, check_objective: bool = False,
            hp: Any = None, extra_callbacks: ExtraCallbacks | None = None) -> Outcome:
        """Evaluate ``values``; never raises but :class:`FirstTrialError`.

        Args:
            space: the round's space (a hypermodel's ``hp`` is built from it unless ``hp`` is given).
            key: names the trial for seeding, e.g. ``(round, "07")``: the same key trains the same models.
            check_objective: check this result for the objective (the run has no completed trial yet).
            hp: the ``keras_tuner.HyperParameters`` to build with (KerasTuner's own trial object).
            extra_callbacks: the engine's Keras callbacks for execution ``n`` (KerasTuner's checkpoint).
        """
        started = time.perf_counter()
        check_objective = check_objective and not self._succeeded
        label = f"trial {'-'.join(str(k) for k in key)}"
        tries = self.trial_retries + 1
        trained = [0]  # epochs of every try so far (the epoch budget counts failed tries too)
        for attempt in range(1, tries + 1):
            curve: list[tuple[int, float]] = []
            try:
                metrics, stopped = self._once(dict(values), space, key, check_objective, hp, extra_callbacks, curve,
                                              trained)
                self._succeeded = True
                if self.stopping is not None:
                    self.stopping.observe(curve)  # later trials are judged against this one too
                return Outcome(metrics, None, time.perf_counter() - started, tuple(curve) if self.fidelity else None,
                               stopped, trained[0] if self.fidelity else None)
            except FirstTrialError:
                raise  # a mistake in the run's settings: every try would fail the same way
            except Exception as exc:  # noqa: PERF203 - each try is a whole trial
                message = f"{type(exc).__name__}: {exc}"[:450]
                log.debug("%s failed", label, exc_info=True)
                if attempt < tries:
                    log.info("%s failed (%s); retry %d of %d", label, message, attempt, self.trial_retries)
        note = f" (failed all {tries} tries)" if self.trial_retries else ""
        return Outcome({}, message + note, time.perf_counter() - started, epochs=trained[0] if self.fidelity else None)

    def record(self, outcome: Outcome, *, trial_id: str, round_index: int, values: Mapping[str, Any],
               reserve: bool = False) -> Trial:
        """The ``trials.jsonl`` record of an evaluated configuration."""
        status = TrialState.FAILED if not outcome.ok else TrialState.STOPPED if outcome.stopped else TrialState.COMPLETE
        return Trial(
            trial_id=trial_id,
            round=round_index,
            hyperparameters=plain(values),
            score=outcome.metrics[self.objective.name] if outcome.ok else None,
            status=status,
            metrics={k: v for k, v in outcome.metrics.items() if math.isfinite(v)},
            duration_s=outcome.duration_s,
            message=outcome.message,
            reserve=reserve,
            fidelity=outcome.fidelity,
            curve=outcome.curve,
            epochs=outcome.epochs,
        )

    # -- one try ----------------------------------------------------------------------------------
    def _once(self, values: dict[str, Any], space: SearchSpace, key: tuple, check_objective: bool, hp: Any,
              extra_callbacks: ExtraCallbacks | None, curve: list[tuple[int, float]],
              trained: list[int]) -> tuple[dict[str, float], bool]:
        """One try: the metrics, and whether a rung stopped it (``curve`` fills as it trains, ``trained[0]``
        counts its epochs on from the earlier tries')."""
        stopped = False
        if self.function is not None:
            metrics, stopped = self._call(values, check_objective, curve, trained)
        else:
            if hp is None:
                hp = space.without_regions().to_keras_tuner()
                hp.values.update(values)
            metrics, stopped = self._train(hp, key, check_objective, extra_callbacks, curve, trained)
        value = metrics.get(self.objective.name)
        if value is None or not math.isfinite(float(value)):
            raise ValueError(f"objective {self.objective.name!r} is {value!r}; the trial counts as failed")
        return metrics, stopped

    def _call(self, values: dict[str, Any], check_objective: bool, curve: list[tuple[int, float]],
              trained: list[int]) -> tuple[dict[str, float], bool]:
        """``function(params)``, or with a fidelity ``function(params, budget)`` rung by rung (a call
        at ``budget`` stands for training on to ``budget`` epochs: the try has spent ``budget``)."""
        budgets = self.fidelity.rungs if self.fidelity is not None else [None]
        start = trained[0]
        for budget in budgets:
            if budget is not None:
                trained[0] = start + budget  # charged before the call: a call that raises trained too
            result = self.function(dict(values)) if budget is None else self.function(dict(values), budget)  # type: ignore[misc]
            if check_objective and isinstance(result, Mapping):
                check_objective_logged(result.keys(), self.objective)
            metrics = function_metrics(result, self.objective)
            if budget is None:
                return metrics, False
            value = metrics[self.objective.name]
            curve.append((budget, value))
            if self.stopping is not None and self.stopping.should_stop(budget, value):
                return metrics, True
            if budget < self.fidelity.max:  # type: ignore[union-attr]
                checkpoint("rung_passed")  # a crash test kills a trial that goes on past a rung here
        return metrics, False

    def _train(self, hp: Any, key: tuple, check_objective: bool, extra_callbacks: ExtraCallbacks | None,
               curve: list[tuple[int, float]], trained: list[int]) -> tuple[dict[str, float], bool]:
        """Build and fit ``executions_per_trial`` models; the metrics of each one's best epoch,
        averaged. With a fidelity the first execution's curve is judged at every rung; a stopped
        trial trains no further execution."""
        import keras

        per_execution = []
        stopped = False
        for execution in range(self.executions_per_trial):
            if self.seed is not None:
                # Weight initialisation, dropout and shuffling: seeded per execution.
                keras.utils.set_random_seed(derive_seed(self.seed, *key, execution))
            model = build_model(self.hypermodel, hp)
            kwargs = {**dict(self.fit_kwargs), "verbose": "auto" if self.verbose >= 2 else 0}
            # Each model gets its own copies of the callbacks, as in KerasTuner (they keep state).
            callbacks = copy.deepcopy(list(kwargs.get("callbacks") or []))
            callbacks += list(extra_callbacks(execution)) if extra_callbacks else []
            watch = _FirstEpochWatch.make() if check_objective and execution == 0 else None
            callbacks += [watch] if watch is not None else []
            rungs = None
            if self.fidelity is not None:
                kwargs["epochs"] = self.fidelity.max
                callbacks.append(_EpochCount.make(trained))  # every execution's epochs count against fidelity.total
                if execution == 0:
                    rungs = _RungWatch.make(self.objective.name, self.stopping, curve)
                    callbacks.append(rungs)
            kwargs["callbacks"] = callbacks
            fit = getattr(self.hypermodel, "fit", None)
            try:
                history = fit(hp, model, *self.fit_args, **kwargs) if callable(fit) else model.fit(*self.fit_args, **kwargs)
            except Exception as exc:
                if watch is not None and watch.started and not watch.finished_epoch:
                    # The first model of the run built but could not train one epoch: almost always
                    # data the model cannot take, which every trial would repeat.
                    raise FirstTrialError(
                        f"data: the first model built but failed before finishing an epoch "
                        f"({type(exc).__name__}: {_telling_line(str(exc))}); the data loader gave "
                        f"{describe_data(self.fit_args, self.fit_kwargs)}: check it against build_model's input"
                    ) from exc
                raise
            logged = getattr(history, "history", history)
            if not isinstance(logged, Mapping):
                raise ValueError(f"fit must return a keras History or a dict of metric lists, got {type(history).__name__}")
            if check_objective and execution == 0:
                check_objective_logged(logged.keys(), self.objective)
            per_execution.append(_best_epoch(logged, self.objective))
            keras.backend.clear_session()  # frees the model before the next one is built
            if rungs is not None and rungs.stopped:
                stopped = True
                break
        names = set().union(*per_execution)
        return {name: float(np.mean([m[name] for m in per_execution if name in m])) for name in names}, stopped


def _best_epoch(history: Mapping[str, Sequence[float]], objective: Objective) -> dict[str, float]:
    """Every metric at the epoch where the objective was best, as KerasTuner scores an execution."""
    curve = [float(v) for v in history.get(objective.name) or []]
    if not curve:
        raise ValueError(f"model.fit reported no {objective.name!r}; it reported {sorted(history)}")
    finite = [i for i, v in enumerate(curve) if math.isfinite(v)]
    if not finite:
        return {objective.name: curve[-1]}  # NaN/inf throughout: the trial fails on its objective
    pick = max if objective.direction == "max" else min
    best = pick(finite, key=lambda i: curve[i])
    return {name: float(values[best]) for name, values in history.items() if len(values) > best}


class _FirstEpochWatch:
    """Tells a model that failed before training from one that failed during its first epoch."""

    @staticmethod
    def make() -> Any:
        import keras

        class FirstEpochWatch(keras.callbacks.Callback):
            started = False
            finished_epoch = False

            def on_train_begin(self, logs: Any = None) -> None:
                self.started = True

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                self.finished_epoch = True

        return FirstEpochWatch()


class _EpochCount:
    """Counts every epoch a model trains into ``trained[0]`` (the epoch budget's record)."""

    @staticmethod
    def make(trained: list[int]) -> Any:
        import keras

        class EpochCount(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                trained[0] += 1

        return EpochCount()


class _RungWatch:
    """Records the objective after every epoch and stops training at a rung where the trial lags."""

    @staticmethod
    def make(objective: str, stopping: StoppingRule | None, curve: list[tuple[int, float]]) -> Any:
        import keras

        class RungWatch(keras.callbacks.Callback):
            stopped = False

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                value = (logs or {}).get(objective)
                if value is None:
                    return  # reported as a missing objective once fit returns
                curve.append((epoch + 1, float(value)))
                if stopping is not None and stopping.should_stop(epoch + 1, float(value)):
                    self.stopped = True
                    self.model.stop_training = True
                elif stopping is not None and epoch + 1 in stopping.fidelity.rungs[:-1]:
                    checkpoint("rung_passed")

        return RungWatch()


# -- small shared helpers ---------------------------------------------------------------------------
def derive_seed(*parts: Any) -> int:
    """A stable, non-zero 31-bit seed (KerasTuner replaces a seed of 0 by a random one)."""
    return zlib.crc32(repr(parts).encode()) % (2**31 - 2) + 1


def function_metrics(result: Any, objective: Objective) -> dict[str, float]:
    """A function's return value as metrics: a number is the objective; a dict must hold it."""
    if isinstance(result, Mapping):
        if objective.name not in result:
            raise ValueError(f"the function returned metrics {sorted(result)} without the objective {objective.name!r}")
        return {k: float(v) for k, v in result.items()}
    return {objective.name: float(result)}


def plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """numpy scalars -> Python scalars, so records are JSON."""
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in values.items()}


def check_objective_logged(logged: Any, objective: Objective) -> None:
    """Raise :class:`ObjectiveNotLoggedError` when ``objective`` is not among the ``logged`` names."""
    names = [str(n) for n in logged]  # in the order the model logged them
    if objective.name not in names:
        raise ObjectiveNotLoggedError(
            f"objective: {objective.name!r} not found in the first model's metrics; "
            f"logged: {', '.join(names) if names else 'nothing'} (set objective to one of them)"
        )


def build_model(hypermodel: Any, hp: Any) -> Any:
    """``hypermodel.build(hp)`` for a ``keras_tuner.HyperModel``, ``hypermodel(hp)`` for a function."""
    build = getattr(hypermodel, "build", None)
    return build(hp) if callable(build) else hypermodel(hp)


def describe_data(fit_args: Sequence[Any], fit_kwargs: Mapping[str, Any]) -> str:
    """``x: array(60, 8) float32, y: array(60,) int64``: what the data loader gave, for error messages."""
    parts = [f"args[{i}]: {_shape(v)}" for i, v in enumerate(fit_args)]
    parts += [f"{k}: {_shape(v)}" for k, v in fit_kwargs.items() if k in ("x", "y", "validation_data")]
    return ", ".join(parts) or "no data"


def _shape(value: Any) -> str:
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"array{tuple(int(s) for s in value.shape)} {value.dtype}"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_shape(v) for v in value) + ")"
    return type(value).__name__


def _telling_line(message: str) -> str:
    """The line of a (multi-line) Keras error that names the problem, e.g. the shapes that disagree."""
    plain_text = re.sub(r"\x1b\[[0-9;]*m", "", message)  # Keras colours its messages for terminals
    lines = [line.strip() for line in plain_text.splitlines() if line.strip()]
    for line in lines:
        if any(word in line for word in ("expected", "incompatible", "shape")):
            return line[:300]
    return lines[0][:300] if lines else "no message"
