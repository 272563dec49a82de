"""The frozen record of one finished trial, as stored in ``rounds/<k>/trials.jsonl``."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["TrialState", "Trial", "Objective", "best_trial", "IMPORTED_ROUND"]


class TrialState(str, enum.Enum):
    """How a trial ended. ``COMPLETE`` trials with a finite score can be best; ``STOPPED`` ones
    (a fidelity rung stopped them early, :mod:`refiner.fidelity`) are evidence, never best."""

    COMPLETE = "complete"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Objective:
    """What to optimise: a metric name and a direction (``"max"`` or ``"min"``).

    KerasTuner guesses the direction from the name and gets e.g. ``val_f1_score`` wrong,
    so refiner always carries it explicitly.
    """

    name: str
    direction: str = "max"

    def __post_init__(self) -> None:
        if self.direction not in ("max", "min"):
            raise ValueError(f"objective direction must be 'max' or 'min', got {self.direction!r}")
        if not self.name:
            raise ValueError("objective name must not be empty")

    @classmethod
    def coerce(cls, value: Any) -> "Objective":
        """Accept an ``Objective``, a ``keras_tuner.Objective``, a dict, or a bare name (loss-like
        names minimise, others maximise)."""
        if isinstance(value, Objective):
            return value
        if isinstance(value, (list, tuple)):
            raise TypeError("objective must be one metric; refiner does not tune several objectives at once "
                            f"(got {len(value)}: {list(value)!r})")
        if hasattr(value, "name_to_direction"):
            raise TypeError("objective must be one metric; refiner does not tune a keras_tuner.MultiObjective "
                            f"({sorted(value.name_to_direction)})")
        if type(value).__module__.startswith("keras_tuner") and hasattr(value, "direction"):
            # keras_tuner.Objective(name, direction); matched by module so TensorFlow is not imported here.
            return cls(value.name, value.direction)
        if isinstance(value, Mapping):
            return cls(value["name"], value.get("direction", "max"))
        if isinstance(value, str):
            lowered = value.lower()
            minimise = any(w in lowered for w in ("loss", "error", "mse", "mae", "regret"))
            return cls(value, "min" if minimise else "max")
        raise TypeError(f"objective must be an Objective, a dict or a metric name, got {value!r}")

    def better(self, a: float, b: float) -> bool:
        """Whether score ``a`` is strictly better than ``b``."""
        return a > b if self.direction == "max" else a < b

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "direction": self.direction}


IMPORTED_ROUND = -1
"""The ``round`` of a trial imported from an earlier run (a warm start): before this run's rounds."""


@dataclass(frozen=True)
class Trial:
    """One finished evaluation: hyperparameters in, score and metrics out.

    A trial imported from an earlier run has round :data:`IMPORTED_ROUND` and a ``source``:
    ``{"run": folder, "trial_id": its id there, "round": its round there}``.
    """

    trial_id: str
    round: int
    hyperparameters: Mapping[str, Any]
    score: float | None
    status: TrialState
    metrics: Mapping[str, float] = field(default_factory=dict)
    duration_s: float = 0.0
    message: str | None = None
    reserve: bool = False  # proposed over the declared space by the round's exploration reserve
    source: Mapping[str, Any] | None = None
    fidelity: int | None = None  # with a Fidelity: the budget (epochs) it reached
    curve: tuple[tuple[int, float], ...] | None = None  # with a Fidelity: (budget, objective) as it trained
    epochs: int | None = None  # with a Fidelity: epochs trained in all (every execution and retry)

    @property
    def imported(self) -> bool:
        return self.source is not None

    @property
    def ok(self) -> bool:
        """Completed with a finite score: eligible as best."""
        return self.status is TrialState.COMPLETE and self.score is not None and math.isfinite(self.score)

    @property
    def evidence(self) -> bool:
        """Usable by the surrogate: completed, or stopped early at a finite score (:mod:`refiner.fidelity`)."""
        return self.ok or (self.status is TrialState.STOPPED and self.score is not None and math.isfinite(self.score))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "trial_id": self.trial_id,
            "round": self.round,
            "hyperparameters": dict(self.hyperparameters),
            "score": self.score,
            "status": self.status.value,
            "metrics": {k: v for k, v in self.metrics.items() if v is not None and math.isfinite(v)},
            "duration_s": round(float(self.duration_s), 6),
        }
        if self.message:
            out["message"] = self.message
        if self.source is not None:
            out["source"] = dict(self.source)
        if self.reserve:
            out["reserve"] = True  # absent otherwise, as in runs made before the reserve existed
        if self.fidelity is not None:  # absent without a Fidelity, as in runs made before it existed
            out["fidelity"] = int(self.fidelity)
        if self.curve is not None:
            out["curve"] = [[int(b), float(v)] for b, v in self.curve if math.isfinite(v)]
        if self.epochs is not None:  # absent without a Fidelity, as in runs made before it existed
            out["epochs"] = int(self.epochs)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Trial":
        return cls(
            trial_id=d["trial_id"],
            round=d["round"],
            hyperparameters=dict(d["hyperparameters"]),
            score=d["score"],
            status=TrialState(d["status"]),
            metrics=dict(d.get("metrics", {})),
            duration_s=float(d.get("duration_s", 0.0)),
            message=d.get("message"),
            source=dict(d["source"]) if d.get("source") is not None else None,
            reserve=bool(d.get("reserve", False)),
            fidelity=d.get("fidelity"),
            curve=tuple((int(b), float(v)) for b, v in d["curve"]) if d.get("curve") is not None else None,
            epochs=d.get("epochs"),
        )


def best_trial(trials: "list[Trial]", objective: Objective) -> Trial | None:
    """The best usable trial (first one wins ties), or None."""
    best = None
    for t in trials:
        if t.ok and (best is None or objective.better(t.score, best.score)):  # type: ignore[arg-type]
            best = t
    return best
