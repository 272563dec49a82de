"""How much of the original space a refined space keeps, and whether it kept the optimum.

Volume of a mixed space, as a fraction of the original: the product over the original's tunable
parameters of one fraction each,

* float: refined width / original width, in the units it is searched in (log10 for log floats);
* int and choice/boolean: refined count of values / original count (an int's grid counts values);
* a parameter the refined space fixes, or drops: 1 / original count for an int or a choice, and
  0 for a float (a point has no width).

So a space narrowed to half of every one of 4 floats has volume 1/16; 1.0 means nothing narrowed.

Whether a refined space kept the optimum is judged two ways. :func:`contains_any` asks for a known
minimiser itself. :func:`holds_near_optimum` is issue 12's criterion: the optimum, or a point whose
score is within ``NEAR_SHARE`` (1 %) of the function's range of f*. It is found by searching the
refined space (random points, then a bounded local search from the best few), so it can only
under-report: a point it finds is a point the space holds.

A refined space made of regions (a union of boxes, :mod:`refiner.space.regions`) counts the union
only, computed exactly: its enclosing box's fraction times the union's share of that box, by
inclusion-exclusion over the regions (the per-parameter shares multiply, so the two factors are
exact together).
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from refiner.space import Boolean, Choice, Fixed, Float, Int, Parameter, SearchSpace
from refiner.space.regions import union_fraction

if TYPE_CHECKING:
    from refiner.bench.problems import Problem

__all__ = ["volume_fraction", "dimension_fraction", "contains_any", "holds_near_optimum", "NEAR_SHARE"]

NEAR_SHARE = 0.01  # issue 12: "the optimum (or a point within 1 % of the range of f* in score)"
RANGE_SAMPLES = 20_000  # random points of the declared space that estimate the function's range
SEARCH_SAMPLES = 2_000  # random points of the refined space ...
POLISHED = 3  # ... and the best few of them refined by a bounded local search (Powell)


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


def holds_near_optimum(space: SearchSpace, problem: "Problem", seed: int = 0) -> bool:
    """Whether ``space`` holds a known minimiser or a point scoring within ``NEAR_SHARE`` of the
    problem's range (its largest value on the declared space, sampled, minus f*) of f*."""
    if contains_any(space, problem.optima):
        return True
    assert problem.f_star is not None, f"{problem.name}: no known minimum"
    tolerance = NEAR_SHARE * (_largest_value(problem.name) - problem.f_star)
    return _smallest_value(space, problem.function, seed) <= problem.f_star + tolerance


@functools.lru_cache(maxsize=None)
def _largest_value(name: str) -> float:
    from refiner.bench.problems import get_problem

    problem = get_problem(name)
    rng = np.random.default_rng(0)
    return max(problem.function(problem.space.sample(rng)) for _ in range(RANGE_SAMPLES))


def _smallest_value(space: SearchSpace, function: Callable[[Mapping[str, Any]], float], seed: int) -> float:
    """The least value of ``function`` found in ``space``: random points, then Powell's method in
    unit coordinates from the best ``POLISHED`` of them, inside the region each one lies in."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(seed)
    points = [space.sample(rng) for _ in range(SEARCH_SAMPLES)]
    values = [float(function(p)) for p in points]
    best = min(values)
    for i in np.argsort(values)[:POLISHED]:
        start = points[int(i)]
        region = space.region_of(start) if space.regions else None
        box = space.region_space(region) if region is not None else space.without_regions()
        moving = [p for p in box if isinstance(p, (Float, Int)) and p.high > p.low and p.name in start]
        if not moving:
            continue

        def at(u: np.ndarray, start: Mapping[str, Any] = start, moving: list = moving) -> dict[str, Any]:
            point = dict(start)
            for p, x in zip(moving, u):
                point[p.name] = p.from_unit(float(x))
            return point

        result = minimize(lambda u: float(function(at(u))), [p.to_unit(start[p.name]) for p in moving],
                          method="Powell", bounds=[(0.0, 1.0)] * len(moving), options={"maxfev": 400})
        candidate = at(result.x)
        if space.contains(candidate):  # the local search stays in its region's box, so inside the union
            best = min(best, float(function(candidate)))
    return best
