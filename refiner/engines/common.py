"""What every round engine shares: the round's description, seeds, and reading a function's result."""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

import numpy as np

from refiner.errors import ValidationError
from refiner.space import SearchSpace
from refiner.trial import Objective, Trial

__all__ = ["RoundSpec", "TrialCallback", "FirstTrialError", "ObjectiveNotLoggedError", "build_model",
           "check_objective_logged", "derive_seed", "describe_data", "function_metrics", "plain", "retrying",
           "tries_note"]

TrialCallback = Callable[[Trial], None]
T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass
class RoundSpec:
    """Everything one round needs; the engine knows nothing about the run folder."""

    round_index: int
    kind: str  # "random" | "bayesian"
    space: SearchSpace
    objective: Objective
    budget: int  # new trials to run in this round
    project_dir: Path
    seed: int | None
    function: Callable[[dict[str, Any]], Any] | None = None
    hypermodel: Callable[[Any], Any] | None = None
    executions_per_trial: int = 1
    warm_trials: Sequence[Trial] = ()  # ok trials from earlier rounds, inside `space`
    done_trials: Sequence[Trial] = ()  # trials of this round already recorded (resume)
    fit_args: tuple = ()
    fit_kwargs: Mapping[str, Any] = field(default_factory=dict)
    trial_retries: int = 0  # extra attempts for a trial that raises or returns NaN/inf
    # Check the first model's metrics for the objective and stop the run if it is missing
    # (set while the run has no completed trial: later, the objective is known to be logged).
    check_objective: bool = False
    verbose: int = 1  # 2 shows Keras's epoch bars; the trial lines are the agent's
    # The round's exploration reserve: `space` is the declared space, proposals avoid `exclude` (the
    # round's narrowed box, searched by the round's main part), and every trial is recorded with
    # `reserve=True` under trial ids of its own.
    reserve: bool = False
    exclude: SearchSpace | None = None


def retrying(attempt: Callable[[], T], retries: int, label: str) -> T:
    """``attempt()``, tried again up to ``retries`` more times if it raises (a NaN/inf objective
    raises too); the last error propagates. No retries unless the run asks for them: most
    failures repeat (a diverging learning rate), and a retry costs a whole training run."""
    for n in range(retries):
        try:
            return attempt()
        except FirstTrialError:
            raise  # a mistake in the run's settings: every try would fail the same way
        except Exception as exc:  # noqa: PERF203 - each try is a whole trial
            log.info("%s failed (%s: %s); retry %d of %d", label, type(exc).__name__, exc, n + 1, retries)
    return attempt()


def tries_note(retries: int) -> str:
    """Appended to a failed trial's message when it was retried."""
    return f" (failed all {retries + 1} tries)" if retries else ""


def derive_seed(*parts: Any) -> int:
    """A stable, non-zero 31-bit seed (KerasTuner replaces a seed of 0 by a random one)."""
    return zlib.crc32(repr(parts).encode()) % (2**31 - 2) + 1


def function_metrics(result: Any, objective: Objective) -> dict[str, float]:
    if isinstance(result, Mapping):
        if objective.name not in result:
            raise ValueError(f"the function returned metrics {sorted(result)} without the objective {objective.name!r}")
        return {k: float(v) for k, v in result.items()}
    return {objective.name: float(result)}


def plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """numpy scalars -> Python scalars, so records are JSON."""
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in values.items()}


class FirstTrialError(ValidationError):
    """The run's first model showed a mistake every other trial would repeat (the objective not
    logged, data the model cannot take): the run stops at once, saying what would work."""


class ObjectiveNotLoggedError(FirstTrialError):
    """The first model (or function call) did not log the objective; the message lists what it did log."""


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
