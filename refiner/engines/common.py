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

__all__ = ["RoundSpec", "TrialCallback", "ObjectiveNotLoggedError", "build_model", "check_objective_logged",
           "derive_seed", "function_metrics", "plain", "retrying", "tries_note"]

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


def retrying(attempt: Callable[[], T], retries: int, label: str) -> T:
    """``attempt()``, tried again up to ``retries`` more times if it raises (a NaN/inf objective
    raises too); the last error propagates. No retries unless the run asks for them: most
    failures repeat (a diverging learning rate), and a retry costs a whole training run."""
    for n in range(retries):
        try:
            return attempt()
        except ObjectiveNotLoggedError:
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


class ObjectiveNotLoggedError(ValidationError):
    """The first model (or function call) of a run did not log the objective: every other trial
    would fail the same way, so the run stops at once and says which metrics it did log."""


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
