"""Regions: a search space that is a union of boxes, one per mode of the good configurations.

A space's ``regions`` are two or more boxes. Each box bounds some of the space's numeric,
unconditional parameters to a ``[low, high]`` inside the parameter's own range; a parameter a box
does not name spans its whole range there, and choices are the same in every box. The
parameters themselves keep the enclosing box, so code that reads ranges keeps working; a point
is in the space when it is in the enclosing box and in at least one region.

Region bounds lie on the parameter's grid (an int's step, a float's step), so that each region is
itself a valid range of the parameter: :func:`box_parameter` is that range.

Volumes are shares of the enclosing space, per parameter in the units it is searched in (log for
log parameters; an int counts its grid values, as :mod:`refiner.bench.regions` does), so a region
that halves one float of the space has volume 0.5.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from refiner.space.parameters import Float, Int, Parameter
from refiner.text import fmt

__all__ = ["Region", "region_problems", "make_region", "box_parameter", "box_fraction", "union_fraction",
           "intersection"]


@dataclass(frozen=True)
class Region:
    """One box: ``(name, low, high)`` per parameter it bounds, in the order given."""

    bounds: tuple[tuple[str, Any, Any], ...]

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self.bounds]

    def get(self, name: str) -> tuple[Any, Any] | None:
        return next(((lo, hi) for n, lo, hi in self.bounds if n == name), None)

    def __iter__(self) -> Iterator[tuple[str, Any, Any]]:
        return iter(self.bounds)

    def to_dict(self) -> dict[str, list[Any]]:
        return {name: [lo, hi] for name, lo, hi in self.bounds}

    def describe(self) -> str:
        """``x [0.1, 0.3], y [2, 4]``."""
        return ", ".join(f"{name} [{fmt(lo)}, {fmt(hi)}]" for name, lo, hi in self.bounds)


def make_region(params: Mapping[str, Parameter], entry: Region | Mapping[str, Sequence[Any]]) -> Region:
    """A :class:`Region` from its JSON form, its numbers in each parameter's own type (valid input only)."""
    if isinstance(entry, Region):
        entry = entry.to_dict()
    bounds = []
    for name, (lo, hi) in entry.items():
        p = params[name]
        cast = int if isinstance(p, Int) else float
        bounds.append((name, cast(lo), cast(hi)))
    return Region(tuple(bounds))


def region_problems(params: Mapping[str, Parameter], regions: Any) -> list[str]:
    """Every rule ``regions`` breaks against the space's parameters, as ``regions[i].name: rule`` lines."""
    if not isinstance(regions, (list, tuple)):
        return [f"regions: must be a list of at least 2 regions, got {type(regions).__name__}"]
    if len(regions) < 2:
        return [f"regions: must hold at least 2 regions (one region is just narrower ranges), got {len(regions)}"]
    problems: list[str] = []
    for i, region in enumerate(regions):
        where = f"regions[{i}]"
        if isinstance(region, Region):
            region = region.to_dict()
        if not isinstance(region, Mapping):
            problems.append(f"{where}: must be an object mapping parameter names to [low, high], got {region!r}")
            continue
        if not region:
            problems.append(f"{where}: must bound at least one numeric parameter")
        for name, bound in region.items():
            problems += _bound_problems(f"{where}.{name}", params.get(name), name, bound)
    return problems


def _bound_problems(where: str, p: Parameter | None, name: str, bound: Any) -> list[str]:
    if p is None:
        return [f"{where}: must name a parameter of the space, got {name!r}"]
    if not isinstance(p, (Float, Int)):
        return [f"{where}: must name a float or int parameter (choices are the same in every region), "
                f"{name!r} is {p.type_name}"]
    if p.conditions:
        return [f"{where}: must name an unconditional parameter (KerasTuner cannot nest a region "
                f"inside another condition), {name!r} has conditions"]
    if (not isinstance(bound, (list, tuple)) or len(bound) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in bound)):
        return [f"{where}: must be [low, high], two numbers, got {bound!r}"]
    lo, hi = bound
    if not all(math.isfinite(v) for v in (lo, hi)):
        return [f"{where}: low and high must be finite, got [{lo}, {hi}]"]
    if lo > hi:
        return [f"{where}: low {lo} is above high {hi}"]
    out = []
    for label, v in (("low", lo), ("high", hi)):
        if not _within(p, v):
            out.append(f"{where}: {label} {v} is outside the range of {name!r} [{p.low}, {p.high}]")
        elif not p.contains(int(v) if isinstance(p, Int) and float(v).is_integer() else v):
            out.append(f"{where}: {label} {v} is not a value of {name!r} (its grid is {p.describe()})")
    return out


def _within(p: Float | Int, v: float) -> bool:
    tol = 1e-9 * max(1.0, abs(p.high), abs(p.low))
    return p.low - tol <= v <= p.high + tol


def box_parameter(p: Parameter, bound: tuple[Any, Any] | None) -> Parameter:
    """``p`` with the range ``bound`` (``p`` itself when None): the parameter inside one region."""
    if bound is None:
        return p
    lo, hi = bound
    return dataclasses.replace(p, low=lo, high=hi, default=None)  # type: ignore[call-arg]


def _dimension(p: Float | Int, lo: float, hi: float) -> float:
    """The share of ``p``'s range that [lo, hi] holds (log units for log; grid values for an int)."""
    if isinstance(p, Int):
        count = lambda a, b: (b - a) // p.grid_step + 1 if b >= a else 0  # noqa: E731
        return count(lo, hi) / count(p.low, p.high)
    if p.high == p.low:
        return 1.0
    return max(0.0, p.to_unit(hi) - p.to_unit(lo)) if hi >= lo else 0.0


def box_fraction(params: Mapping[str, Parameter], box: Mapping[str, tuple[Any, Any]]) -> float:
    """The share of the enclosing space a box (``name -> (low, high)``) holds."""
    out = 1.0
    for name, (lo, hi) in box.items():
        out *= _dimension(params[name], lo, hi)  # type: ignore[arg-type]
    return out


def intersection(boxes: Sequence[Mapping[str, tuple[Any, Any]]]) -> dict[str, tuple[Any, Any]] | None:
    """The box common to ``boxes`` (a name one box leaves free is bounded by the others), or None when empty."""
    out: dict[str, tuple[Any, Any]] = {}
    for box in boxes:
        for name, (lo, hi) in box.items():
            a, b = out.get(name, (lo, hi))
            out[name] = (max(a, lo), min(b, hi))
    return None if any(lo > hi for lo, hi in out.values()) else out


def union_fraction(params: Mapping[str, Parameter], regions: Sequence[Region]) -> float:
    """The share of the enclosing space the union of ``regions`` holds, exactly (regions may overlap).

    Inclusion-exclusion over the regions: the intersection of boxes is a box, so the union's
    volume is the alternating sum of the volumes of every intersection of 1, 2, ... regions
    (2**n - 1 boxes; narrowing makes at most 3 regions, so 7).
    """
    boxes = [{name: (lo, hi) for name, lo, hi in r} for r in regions]
    total = 0.0
    for k in range(1, len(boxes) + 1):
        for combo in itertools.combinations(boxes, k):
            common = intersection(combo)
            if common is not None:
                total += (-1) ** (k + 1) * box_fraction(params, common)
    return min(1.0, max(0.0, total))
