"""Parameter types: each validates itself in its constructor, so a parameter that exists is valid.

``float`` and ``int`` ranges (log or linear, with an optional step), ``choice`` (ordered or not),
``boolean`` and ``fixed``; any of them may carry conditions on earlier discrete parameters.
Each knows its JSON form (``to_dict`` / :func:`parameter_from_dict`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping, Union

import numpy as np

from refiner.text import fmt

__all__ = ["Condition", "Float", "Int", "Choice", "Boolean", "Fixed", "Parameter", "MAX_NAME_LENGTH",
           "discrete_values", "parameter_from_dict", "same_scalar"]

MAX_NAME_LENGTH = 200  # as in schemas/search_space.schema.json
Scalar = Union[str, int, float, bool]


def same_scalar(a: Any, b: Any) -> bool:
    # True == 1 in Python; a choice between True and 1 must not confuse them.
    return type(a) is type(b) and a == b or (
        isinstance(a, (int, float)) and isinstance(b, (int, float))
        and not isinstance(a, bool) and not isinstance(b, bool) and a == b
    )


@dataclass(frozen=True)
class Condition:
    """The parameter is active only when ``parent`` takes one of ``values``."""

    parent: str
    values: tuple[Scalar, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))
        if not self.values:
            raise ValueError(f"a condition on {self.parent!r} needs at least one parent value")

    def holds(self, assignment: Mapping[str, Any]) -> bool:
        return self.parent in assignment and any(same_scalar(assignment[self.parent], v) for v in self.values)

    def to_dict(self) -> dict[str, Any]:
        return {"parent": self.parent, "values": list(self.values)}


@dataclass(frozen=True)
class _Base:
    name: str
    conditions: tuple[Condition, ...] = field(default=(), kw_only=True)
    # The value KerasTuner gives build_model before any search (and while inactive). None means
    # KerasTuner's own: `low`, the first value, False; a default equal to that is stored as None,
    # and one a narrowed range no longer holds moves to the nearest value it does.
    default: Scalar | None = field(default=None, kw_only=True)

    type_name = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not 1 <= len(self.name) <= MAX_NAME_LENGTH:
            raise ValueError(f"a parameter name must be a string of 1 to {MAX_NAME_LENGTH} characters, got {self.name!r}")
        object.__setattr__(
            self,
            "conditions",
            tuple(c if isinstance(c, Condition) else Condition(c["parent"], tuple(c["values"])) for c in self.conditions),
        )

    def is_active(self, assignment: Mapping[str, Any]) -> bool:
        return all(c.holds(assignment) for c in self.conditions)

    def _base_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type_name}
        if self.conditions:
            out["conditions"] = [c.to_dict() for c in self.conditions]
        if self.default is not None:
            out["default"] = self.default
        return out

    def _settle_default(self, implicit: Any) -> None:
        """Store the default in the parameter's own type, inside it, and None when it is KerasTuner's own."""
        default = self.default
        if isinstance(default, np.generic):
            default = default.item()
        if default is not None:
            if _value_kind(default) is None or (isinstance(default, float) and not math.isfinite(default)):
                raise ValueError(f"`default` must be a finite str, int, float or bool for {self.name!r}, got {default!r}")
            default = self._nearest(default)
        object.__setattr__(self, "default", None if default is None or same_scalar(default, implicit) else default)

    def _nearest(self, value: Any) -> Any:
        """The legal value closest to ``value`` (None when there is none)."""
        return value

    def describe(self) -> str:
        """A short human form of the range, used in tables: ``[0.0001, 0.01] log``."""
        raise NotImplementedError


def _to_float(value: Any, attr: str, name: str) -> float:
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"`{attr}` must fit in a float for {name!r}, got {_short(value)}") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"a {len(text)}-character number"


@dataclass(frozen=True)
class _Numeric(_Base):
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    step: float | None = None

    def _check_numeric(self) -> None:
        try:
            finite = math.isfinite(self.low) and math.isfinite(self.high) and math.isfinite(self.high - self.low)
        except OverflowError:  # an integer beyond float range
            finite = False
        if not finite:
            raise ValueError(f"`low`, `high` and their distance must be finite floats for {self.name!r}, "
                             f"got low={_short(self.low)}, high={_short(self.high)}")
        if self.low > self.high:
            raise ValueError(f"`low` must not exceed `high` for {self.name!r}, got low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"`low` must be positive when `log` is true for {self.name!r}, got low={self.low}")
        if self.step is not None:
            if self.step <= 0:
                raise ValueError(f"`step` must be positive for {self.name!r}, got step={self.step}")
            if self.log:
                raise ValueError(f"`step` cannot be combined with `log` for {self.name!r} (as in Optuna); drop one")
            span = (self.high - self.low) / self.step
            if not math.isfinite(span):
                raise ValueError(f"`high - low` must be a finite multiple of `step` for {self.name!r}, "
                                 f"got low={self.low}, high={self.high}, step={self.step}")
            if abs(span - round(span)) > 1e-8 * max(1.0, abs(span)):
                raise ValueError(
                    f"`high - low` must be a multiple of `step` for {self.name!r}, "
                    f"got low={self.low}, high={self.high}, step={self.step}"
                )

    @property
    def width(self) -> float:
        """Width in the space the parameter is searched in (log10 units for log parameters)."""
        if self.log:
            return math.log10(self.high) - math.log10(self.low)
        return self.high - self.low

    def to_unit(self, value: float) -> float:
        """Position of ``value`` in [0, 1] (log space for log parameters; 0.5 for a zero-width range)."""
        if self.log:
            span = math.log(self.high) - math.log(self.low)
            return 0.5 if span == 0 else (math.log(value) - math.log(self.low)) / span
        if self.high == self.low:
            return 0.5
        return (value - self.low) / (self.high - self.low)

    def from_unit(self, u: float) -> float:
        u = min(max(float(u), 0.0), 1.0)
        if self.log:
            raw = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            raw = self.low + u * (self.high - self.low)
        return self.snap(raw)

    def snap(self, value: float) -> float:
        """The nearest legal value: clipped to the range and, with a step, onto the grid."""
        value = min(max(value, self.low), self.high)
        if self.step is not None:
            value = self.low + round((value - self.low) / self.step) * self.step
            value = min(max(value, self.low), self.high)
        return value

    def contains(self, value: Any) -> bool:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            return False
        value = float(value)
        if not math.isfinite(value):
            return False
        tol = 1e-9 * max(1.0, abs(self.high), abs(self.low))
        if value < self.low - tol or value > self.high + tol:
            return False
        if self.step is not None:
            k = (value - self.low) / self.step
            return abs(k - round(k)) <= 1e-6
        return True

    def describe(self) -> str:
        extra = " log" if self.log else (f" step {fmt(self.step)}" if self.step is not None else "")
        return f"[{fmt(self.low)}, {fmt(self.high)}]{extra}"

    def _nearest(self, value: Any) -> Any:
        if isinstance(value, (bool, str)):
            raise ValueError(f"`default` must be a number for {self.name!r}, got {value!r}")
        return self.snap(float(value))

    def to_dict(self) -> dict[str, Any]:
        out = self._base_dict()
        out.update(low=self.low, high=self.high)
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


@dataclass(frozen=True)
class Float(_Numeric):
    """A real-valued parameter in ``[low, high]``; ``log`` searches it on a log scale."""

    type_name = "float"

    def __post_init__(self) -> None:
        super().__post_init__()
        for attr in ("low", "high", "step"):
            if getattr(self, attr) is not None:
                object.__setattr__(self, attr, _to_float(getattr(self, attr), attr, self.name))
        self._check_numeric()
        if self.step is not None:
            # 0.1 + 3 * 0.2 is 0.7000000000000001 in binary; store the decimal 0.7 that the user
            # meant, which is also what Optuna's step check accepts unchanged.
            n = round((self.high - self.low) / self.step)
            exact = float(Decimal(repr(self.low)) + n * Decimal(repr(self.step)))
            if exact != self.high and abs(exact - self.high) <= 1e-8 * max(1.0, abs(self.high)):
                object.__setattr__(self, "high", exact)
        self._settle_default(self.low)

    def snap(self, value: float) -> float:
        return float(super().snap(value))


@dataclass(frozen=True)
class Int(_Numeric):
    """An integer parameter in ``[low, high]`` on a grid of ``step`` (1 by default)."""

    type_name = "int"

    def __post_init__(self) -> None:
        super().__post_init__()
        for attr in ("low", "high"):
            value = getattr(self, attr)
            if isinstance(value, bool) or not _to_float(value, attr, self.name).is_integer():
                raise ValueError(f"`{attr}` must be an integer for {self.name!r}, got {value!r}")
            object.__setattr__(self, attr, int(value))
        step = self.step
        if step is not None and (isinstance(step, bool) or not float(step).is_integer() or step < 1):
            raise ValueError(f"`step` must be a positive integer for {self.name!r}, got {step!r}")
        if self.log:
            if step not in (None, 1):
                raise ValueError(f"`step` cannot be combined with `log` for {self.name!r} (as in Optuna); drop one")
            step = None
        object.__setattr__(self, "step", None if step is None else int(step))
        self._check_numeric()
        self._settle_default(self.low)

    @property
    def grid_step(self) -> int:
        return self.step or 1

    def snap(self, value: float) -> int:
        value = min(max(value, self.low), self.high)
        k = round((value - self.low) / self.grid_step)
        return int(min(self.low + k * self.grid_step, self.high))

    def contains(self, value: Any) -> bool:
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            return False
        return self.low <= value <= self.high and (value - self.low) % self.grid_step == 0

    def values(self) -> list[int]:
        return list(range(self.low, self.high + 1, self.grid_step))

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.pop("step", None)
        if self.step not in (None, 1):
            out["step"] = self.step
        return out


@dataclass(frozen=True)
class Choice(_Base):
    """One of ``values`` (all of one type). ``ordered`` values are searched as a ranked list."""

    values: tuple[Scalar, ...] = ()
    ordered: bool = False

    type_name = "choice"

    def __post_init__(self) -> None:
        super().__post_init__()
        values = tuple(v.item() if isinstance(v, np.generic) else v for v in self.values)
        object.__setattr__(self, "values", values)
        if not values:
            raise ValueError(f"`values` must not be empty for {self.name!r}")
        kinds = {_value_kind(v) for v in values}
        if len(kinds) != 1 or None in kinds:
            raise ValueError(f"`values` must all be of one type (str, int, float or bool) for {self.name!r}, got {list(values)!r}")
        if len(set((type(v), v) for v in values)) != len(values):
            raise ValueError(f"`values` must be unique for {self.name!r}, got {list(values)!r}")
        if kinds == {"float"} and not all(math.isfinite(v) for v in values):
            raise ValueError(f"`values` must be finite for {self.name!r}, got {list(values)!r}")
        self._settle_default(values[0])

    def _nearest(self, value: Any) -> Any:
        # A value narrowing dropped leaves KerasTuner's own default, the first value.
        return next((v for v in self.values if same_scalar(value, v)), None)

    def contains(self, value: Any) -> bool:
        return any(same_scalar(value, v) for v in self.values)

    def index(self, value: Any) -> int:
        for i, v in enumerate(self.values):
            if same_scalar(value, v):
                return i
        raise ValueError(f"{value!r} is not one of the values of {self.name!r}: {list(self.values)!r}")

    def describe(self) -> str:
        return "{" + ", ".join(fmt(v) for v in self.values) + "}" + (" ordered" if self.ordered else "")

    def to_dict(self) -> dict[str, Any]:
        out = self._base_dict()
        out["values"] = list(self.values)
        if self.ordered:
            out["ordered"] = True
        return out


@dataclass(frozen=True)
class Boolean(_Base):
    """True or False."""

    type_name = "boolean"
    values = (False, True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.default is not None and not isinstance(self.default, (bool, np.bool_)):
            raise ValueError(f"`default` must be true or false for {self.name!r}, got {self.default!r}")
        self._settle_default(False)

    def contains(self, value: Any) -> bool:
        return isinstance(value, (bool, np.bool_))

    def describe(self) -> str:
        return "{False, True}"

    def to_dict(self) -> dict[str, Any]:
        return self._base_dict()


@dataclass(frozen=True)
class Fixed(_Base):
    """A parameter held at one value (a frozen hyperparameter)."""

    value: Scalar = None  # type: ignore[assignment]

    type_name = "fixed"

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.value, np.generic):
            object.__setattr__(self, "value", self.value.item())
        if _value_kind(self.value) is None:
            raise ValueError(f"`value` must be a str, int, float or bool for {self.name!r}, got {self.value!r}")
        if isinstance(self.value, float) and not math.isfinite(self.value):
            raise ValueError(f"`value` must be finite for {self.name!r}, got {self.value!r}")
        if self.default is not None:
            raise ValueError(f"`default` does not apply to the fixed parameter {self.name!r}; its `value` is its only value")

    def contains(self, value: Any) -> bool:
        return same_scalar(value, self.value)

    def describe(self) -> str:
        return f"= {fmt(self.value)}"

    def to_dict(self) -> dict[str, Any]:
        out = self._base_dict()
        out["value"] = self.value
        return out


Parameter = Union[Float, Int, Choice, Boolean, Fixed]
_TYPES: dict[str, type] = {"float": Float, "int": Int, "choice": Choice, "boolean": Boolean, "fixed": Fixed}


def _value_kind(v: Any) -> str | None:
    if isinstance(v, (bool, np.bool_)):
        return "bool"
    if isinstance(v, (int, np.integer)):
        return "int"
    if isinstance(v, (float, np.floating)):
        return "float"
    if isinstance(v, str):
        return "str"
    return None


def discrete_values(p: Parameter) -> list[Any]:
    """The values a choice, boolean or fixed parameter can take; empty for numeric ranges."""
    if isinstance(p, Fixed):
        return [p.value]
    if isinstance(p, (Choice, Boolean)):
        return list(p.values)
    return []


def parameter_from_dict(d: Mapping[str, Any]) -> Parameter:
    """Build one parameter from its JSON object (already checked against the schema)."""
    kwargs = {k: v for k, v in d.items() if k != "type"}
    if "conditions" in kwargs:
        kwargs["conditions"] = tuple(Condition(c["parent"], tuple(c["values"])) for c in kwargs["conditions"])
    if "values" in kwargs:
        kwargs["values"] = tuple(kwargs["values"])
    parameter = _TYPES[d["type"]](**kwargs)
    default = d.get("default")
    if default is not None and not parameter.contains(default):
        # A document's default is checked, never moved: only narrowing moves one.
        raise ValueError(f"`default` must be a value {d['name']!r} can take ({parameter.describe()}), got {default!r}")
    return parameter

