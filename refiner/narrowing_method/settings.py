"""The narrowing method's tunable settings: how boldly to narrow (the fixed numbers are in
:mod:`refiner.narrowing_method.constants`)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from refiner.errors import ValidationError

__all__ = ["NarrowingConfig"]

_CONFIG_RULES: dict[str, tuple[type, Any, str]] = {
    "min_trials": (int, lambda v: v >= 1, "an integer of at least 1"),
    "min_cv_score": (float, lambda v: -1.0 <= v <= 1.0, "a number in [-1, 1]"),
    "top_fraction": (float, lambda v: 0.0 < v <= 1.0, "a number in (0, 1]"),
    "margin": (float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]"),
    "min_width": (float, lambda v: 0.0 < v <= 1.0, "a number in (0, 1]"),
    "n_candidates": (int, lambda v: 10 <= v <= 10**6, "an integer from 10 to 10**6"),
    "reserve": (float, lambda v: 0.0 <= v <= 0.5, "a number in [0, 0.5]"),
    "max_regions": (int, lambda v: 1 <= v <= 3, "an integer from 1 to 3"),
}


@dataclass(frozen=True)
class NarrowingConfig:
    """How boldly to narrow. Widths are shares of a parameter's width in its search units."""

    min_trials: int = 8
    min_cv_score: float = 0.2
    top_fraction: float = 0.2
    margin: float = 0.1
    min_width: float = 0.1
    n_candidates: int = 2000
    # The share of each later round proposed over the declared space outside the narrowed box (the
    # exploration reserve of DESIGN.md section 4; SMAC draws 20 % at random, BOHB a third), so that
    # a basin the box left out can be found and the box follow it. Off by default: at 0.25, on the
    # quick suite's 10 seeds, median regret rose on 10 of 14 problem-budgets (the box's rounds lost a
    # quarter of their trials) and the multimodal wells4 and styblinski5 were not helped (README).
    reserve: float = 0.0
    # At most this many regions (a union of boxes, one per group of good configurations) where the
    # good set forms separate groups (refiner.narrowing_method.regions); 1 switches regions off.
    max_regions: int = 3

    def __post_init__(self) -> None:
        problems = []
        for name, (kind, ok, rule) in _CONFIG_RULES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append(f"{name}: must be {rule}, got {value!r}")
                continue
            if isinstance(value, int) and abs(value) > 10**9:  # also keeps float() below from overflowing
                problems.append(f"{name}: must be {rule} and at most 10**9, got a {len(str(abs(value)))}-digit number")
                continue
            if kind is int and not float(value).is_integer():
                problems.append(f"{name}: must be {rule}, got {value!r}")
                continue
            if not math.isfinite(value) or not ok(value):
                problems.append(f"{name}: must be {rule}, got {value!r}")
                continue
            object.__setattr__(self, name, kind(value))
        if problems:
            raise ValidationError(problems)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "NarrowingConfig":
        """Build from a (partial) dict; missing fields take their defaults, unknown ones are errors."""
        if d is None:
            return cls()
        if not isinstance(d, Mapping):
            raise ValidationError(f"narrowing settings must be an object, got {d!r}")
        unknown = sorted(set(d) - set(_CONFIG_RULES))
        if unknown:
            raise ValidationError(
                [f"{k}: not a narrowing setting; the settings are {', '.join(_CONFIG_RULES)}" for k in unknown]
            )
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
