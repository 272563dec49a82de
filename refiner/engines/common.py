"""What every round engine shares: the round's description, seeds, and reading a function's result."""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

import numpy as np

from refiner.space import SearchSpace
from refiner.trial import Objective, Trial

__all__ = ["RoundSpec", "TrialCallback", "derive_seed", "function_metrics", "plain", "retrying", "tries_note"]

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
