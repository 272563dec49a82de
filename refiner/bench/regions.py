"""How much of the original space a refined space keeps, and whether it kept the optimum.

Volume of a mixed space, as a fraction of the original: the product over the original's tunable
parameters of one fraction each,

* float: refined width / original width, in the units it is searched in (log10 for log floats);
* int and choice/boolean: refined count of values / original count (an int's grid counts values);
* a parameter the refined space fixes, or drops: 1 / original count for an int or a choice, and
  0 for a float (a point has no width).

So a space narrowed to half of every one of 4 floats has volume 1/16; 1.0 means nothing narrowed.

A refined space made of regions (a union of boxes, :mod:`refiner.space.regions`) counts the union
only, computed exactly: its enclosing box's fraction times the union's share of that box, by
inclusion-exclusion over the regions (the per-parameter shares multiply, so the two factors are
exact together).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from refiner.space import Boolean, Choice, Fixed, Float, Int, Parameter, SearchSpace
from refiner.space.regions import union_fraction

__all__ = ["volume_fraction", "dimension_fraction", "contains_any"]


def _count(p: Parameter) -> int:
    if isinstance(p, Int):
        return len(range(p.low, p.high + 1, p.grid_step))  # a log int's grid step is 1
    if isinstance(p, (Choice, Boolean)):
        return len(p.values)
    return 1


def dimension_fraction(original: Parameter, refined: Parameter | None) -> float:
    """The share of ``original`` that ``refined`` (the same parameter, later) keeps."""
    if isinstance(original, Fixed):
        return 1.0
    if refined is None or isinstance(refined, Fixed):
        return 0.0 if isinstance(original, Float) else 1.0 / _count(original)
    if isinstance(original, Float):
        assert isinstance(refined, Float)
        if original.width == 0:
            return 1.0
        if original.log:
            width = math.log10(refined.high) - math.log10(refined.low)
        else:
            width = refined.high - refined.low
        return min(1.0, max(0.0, width / original.width))
    return min(1.0, _count(refined) / _count(original))


def volume_fraction(original: SearchSpace, refined: SearchSpace) -> float:
    """Product of :func:`dimension_fraction` over the original's parameters, times the share of
    the refined box its regions hold (module docstring)."""
    volume = 1.0
    for p in original:
        volume *= dimension_fraction(p, refined[p.name] if p.name in refined else None)
    if refined.regions:
        volume *= union_fraction({p.name: p for p in refined}, refined.regions)
    return volume


def contains_any(space: SearchSpace, optima: Sequence[Mapping[str, Any]]) -> bool:
    """Whether ``space`` contains at least one of the known minimisers (Branin has three); with
    regions, inside one of them."""
    return any(space.contains(o) for o in optima)
