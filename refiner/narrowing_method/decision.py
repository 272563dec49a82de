"""What narrowing decided for one parameter, and the decisions document of a round."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from refiner.narrowing_method.settings import NarrowingConfig
from refiner.space import SearchSpace, parameter_from_dict

__all__ = ["ACTIONS", "FORMAT_VERSION", "Decision", "decisions_document"]

ACTIONS = ("narrow", "keep", "expand", "drop_values", "fix")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Decision:
    """What narrowing did to one parameter, and why."""

    name: str
    action: str
    before: dict
    after: dict
    reason: str
    evidence: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"`action` must be one of {list(ACTIONS)}, got {self.action!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "action": self.action,
            "before": dict(self.before),
            "after": dict(self.after),
            "reason": self.reason,
            "evidence": dict(self.evidence),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Decision":
        return cls(d["name"], d["action"], dict(d["before"]), dict(d["after"]), d["reason"], dict(d.get("evidence", {})))


def decisions_document(
    decisions: Sequence[Decision],
    *,
    round_index: int,
    n_trials: int,
    surrogate_trusted: bool,
    config: NarrowingConfig | None = None,
    regions: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The content of ``rounds/<k>/decisions.json`` (``schemas/decisions.schema.json``).

    ``regions``: the record of the regions narrowing proposed (``Regions.to_dict()``); the
    decisions give the enclosing box and ``next_space`` holds the regions inside it."""
    boxes = None if regions is None else regions["regions"]
    out: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "round": int(round_index),
        "n_trials": int(n_trials),
        "surrogate_trusted": bool(surrogate_trusted),
        "decisions": [d.to_dict() for d in decisions],
        # The space the decisions produce: each decision's `after`, in order.
        "next_space": SearchSpace([parameter_from_dict(d.after) for d in decisions], boxes).to_dict(),
    }
    if regions is not None:
        out["regions"] = dict(regions)
    if config is not None:
        out["config"] = config.to_dict()
    return out
