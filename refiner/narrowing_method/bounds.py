"""Range arithmetic: unit positions, readable bounds snapped outward onto a parameter's grid, and
widening a range or a set of values again (used by narrowing and by :mod:`refiner.audit`)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

from refiner.narrowing_method.constants import GRID_TOLERANCE
from refiner.space import Boolean, Choice, Condition, Fixed, Float, Int, Parameter, same_scalar

__all__ = ["value_at", "snap_outward", "clean", "stretch", "merged_values", "choice_of"]


def value_at(p: Float | Int, u: float) -> float:
    """The raw value at unit position ``u`` (not clipped, not snapped; log space for log)."""
    if p.log:
        return math.exp(math.log(p.low) + u * (math.log(p.high) - math.log(p.low)))
    return p.low + u * (p.high - p.low)


def snap_outward(p: Float | Int, raw_lo: float, raw_hi: float, floor_value: float, ceil_value: float) -> tuple[Any, Any]:
    """Bounds containing [raw_lo, raw_hi], on the parameter's grid, inside [floor_value, ceil_value]."""
    raw_lo, raw_hi = max(raw_lo, floor_value), min(raw_hi, ceil_value)
    step = p.grid_step if isinstance(p, Int) else p.step
    if step is not None:
        # Int steps and float steps are kept: the grid stays anchored at the current low.
        k_lo = math.floor((raw_lo - p.low) / step + GRID_TOLERANCE)
        k_hi = math.ceil((raw_hi - p.low) / step - GRID_TOLERANCE)
        k_lo = max(k_lo, math.ceil((floor_value - p.low) / step - GRID_TOLERANCE))
        k_hi = min(k_hi, math.floor((ceil_value - p.low) / step + GRID_TOLERANCE))
        low, high = p.low + k_lo * step, p.low + k_hi * step
        if isinstance(p, Int):
            return int(low), int(high)
        return clean(low), clean(high)
    if isinstance(p, Int):  # log ints have no step: whole numbers
        return (int(max(math.floor(raw_lo + GRID_TOLERANCE), floor_value)),
                int(min(math.ceil(raw_hi - GRID_TOLERANCE), ceil_value)))
    low, high = _round_outward(raw_lo, raw_hi, p.log)
    return max(low, floor_value), min(high, ceil_value)


def _round_outward(lo: float, hi: float, log: bool) -> tuple[float, float]:
    """Readable bounds, rounded outward: 3 significant digits of the value (log) or of the width."""
    # round(..., 9) first: 1.2e-4 * 1e6 is 119.99999999999999, whose floor would lose a digit.
    def down(v: float, digits: int) -> float:
        return round(math.floor(round(v * 10**digits, 9)) / 10**digits, digits)

    def up(v: float, digits: int) -> float:
        return round(math.ceil(round(v * 10**digits, 9)) / 10**digits, digits)

    if log:
        return down(lo, 2 - math.floor(math.log10(lo))), up(hi, 2 - math.floor(math.log10(hi)))
    width = hi - lo
    if width <= 0:
        return lo, hi
    digits = 2 - math.floor(math.log10(width))
    return down(lo, digits), up(hi, digits)


def clean(x: float) -> float:
    """Drop float noise such as 0.30000000000000004."""
    return float(f"{x:.12g}")


# -- widening ---------------------------------------------------------------------------------------
def stretch(after: Parameter, shape: Float | Int, *, down_to: Any = None, up_to: Any = None) -> Float | Int | None:
    """``after``'s range (a fixed value as a range of width 0) stretched down to ``down_to`` and up
    to ``up_to``, as ``shape``'s kind and grid, with ``after``'s conditions; None when ``after`` has
    no numeric range."""
    if isinstance(after, Fixed):
        low = high = after.value
    elif isinstance(after, (Float, Int)):
        low, high = after.low, after.high
    else:
        return None
    if down_to is not None:
        low = min(low, down_to)
    if up_to is not None:
        high = max(high, up_to)
    return dataclasses.replace(shape, low=low, high=high, conditions=after.conditions)


def merged_values(after: Parameter, added: Sequence[Any], reference: Sequence[Any]) -> tuple[Any, ...]:
    """The values of ``reference``, in its order, that ``after`` offers or ``added`` brings back."""
    kept = list(after.values) if isinstance(after, (Choice, Boolean)) else (
        [after.value] if isinstance(after, Fixed) else [])
    return tuple(v for v in reference if any(same_scalar(v, x) for x in kept + list(added)))


def choice_of(shape: Choice | Boolean, values: tuple[Any, ...], conditions: tuple[Condition, ...]) -> Parameter:
    """The parameter offering ``values`` in the form of ``shape``: both booleans are a Boolean, one
    value is Fixed, more are a Choice (ordered as ``shape`` is)."""
    if isinstance(shape, Boolean) and len(values) == 2:
        return Boolean(shape.name, conditions=conditions)
    if len(values) == 1:
        return Fixed(shape.name, values[0], conditions=conditions)
    return Choice(shape.name, values, ordered=getattr(shape, "ordered", False), conditions=conditions)
