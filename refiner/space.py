"""Search spaces: parameter types, the portable JSON format, and KerasTuner / Optuna conversion.

A :class:`SearchSpace` is an ordered, immutable collection of parameters. Each parameter
type validates itself in its constructor, so a space that exists is a valid space.
The JSON form is described by ``schemas/search_space.schema.json``::

    {"format_version": 1, "parameters": [
        {"name": "learning_rate", "type": "float", "low": 1e-4, "high": 1e-2, "log": true},
        {"name": "units", "type": "int", "low": 64, "high": 512, "step": 64},
        {"name": "activation", "type": "choice", "values": ["relu", "tanh"]},
        {"name": "dropout", "type": "float", "low": 0.0, "high": 0.5,
         "conditions": [{"parent": "use_dropout", "values": [true]}]},
        {"name": "use_dropout", "type": "boolean"}]}
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence, Union

import numpy as np

from refiner import schemas
from refiner.errors import ValidationError
from refiner.jsonio import atomic_write_text, parse_limit_reason
from refiner.text import fmt

if TYPE_CHECKING:  # imported lazily: keras_tuner pulls in TensorFlow (seconds)
    import keras_tuner
    import optuna

__all__ = [
    "Condition",
    "Float",
    "Int",
    "Choice",
    "Boolean",
    "Fixed",
    "Parameter",
    "SearchSpace",
    "FORMAT_VERSION",
    "discrete_values",
    "parameter_from_dict",
]

FORMAT_VERSION = 1
MAX_NAME_LENGTH = 200  # as in schemas/search_space.schema.json
Scalar = Union[str, int, float, bool]


def _same_scalar(a: Any, b: Any) -> bool:
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
        return self.parent in assignment and any(_same_scalar(assignment[self.parent], v) for v in self.values)

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
        object.__setattr__(self, "default", None if default is None or _same_scalar(default, implicit) else default)

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
        return next((v for v in self.values if _same_scalar(value, v)), None)

    def contains(self, value: Any) -> bool:
        return any(_same_scalar(value, v) for v in self.values)

    def index(self, value: Any) -> int:
        for i, v in enumerate(self.values):
            if _same_scalar(value, v):
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
        return _same_scalar(value, self.value)

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


class SearchSpace:
    """An ordered, immutable set of parameters with unique names.

    Conditions may only point at ``choice``, ``boolean`` or ``fixed`` parents declared earlier,
    and their values must be values the parent can take.
    """

    def __init__(self, parameters: Sequence[Parameter]):
        params = tuple(parameters)
        problems = _space_problems(params)
        if problems:
            raise ValidationError(problems)
        self._params = params
        self._by_name = {p.name: p for p in params}
        # Condition values take the parent's own type (1 -> 1.0 under a float choice), so equal
        # spaces compare equal and KerasTuner, which casts values to the first one's type, agrees.
        params = tuple(
            replace(p, conditions=tuple(Condition(c.parent, tuple(_parent_typed(self, c))) for c in p.conditions))
            if p.conditions else p
            for p in params
        )
        self._params = params
        self._by_name = {p.name: p for p in params}

    # -- collection protocol ------------------------------------------------------------------
    @property
    def parameters(self) -> tuple[Parameter, ...]:
        return self._params

    @property
    def names(self) -> list[str]:
        return [p.name for p in self._params]

    def __iter__(self) -> Iterator[Parameter]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> Parameter:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no parameter named {name!r}; the space has {self.names}") from None

    def _canonical(self) -> str:
        # JSON text tells True from 1 and 1 from 1.0, which == on dicts does not.
        return json.dumps(self.to_dict(), sort_keys=True)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self._canonical() == other._canonical()

    def __hash__(self) -> int:
        return hash(self._canonical())

    def __repr__(self) -> str:
        inner = ", ".join(f"{p.name}={p.describe()}" for p in self._params)
        return f"SearchSpace({inner})"

    def replace(self, parameter: Parameter) -> "SearchSpace":
        """A new space with the parameter of the same name swapped for ``parameter``."""
        self[parameter.name]  # raises a clear KeyError for an unknown name
        return SearchSpace([parameter if p.name == parameter.name else p for p in self._params])

    def tunable(self) -> list[Parameter]:
        """Parameters that are actually searched (everything but ``fixed``)."""
        return [p for p in self._params if not isinstance(p, Fixed)]

    # -- assignments --------------------------------------------------------------------------
    def active_names(self, assignment: Mapping[str, Any]) -> list[str]:
        """Names that are active under ``assignment`` (conditions resolved in declaration order)."""
        resolved: dict[str, Any] = {}
        for p in self._params:
            if p.is_active(resolved):
                resolved[p.name] = assignment.get(p.name, p.value if isinstance(p, Fixed) else None)
        return list(resolved)

    def contains(self, assignment: Mapping[str, Any]) -> bool:
        """Whether every active parameter of the space has a value inside its range."""
        for name in self.active_names(assignment):
            if name not in assignment or not self[name].contains(assignment[name]):
                return False
        return True

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """One configuration drawn uniformly (log-uniformly for log parameters)."""
        out: dict[str, Any] = {}
        for p in self._params:
            if not p.is_active(out):
                continue
            if isinstance(p, Fixed):
                out[p.name] = p.value
            elif isinstance(p, (Float, Int)):
                if isinstance(p, Int) and not p.log:
                    # Draw the grid index, never the list of values (a range may be huge).
                    n_steps = (p.high - p.low) // p.grid_step
                    out[p.name] = p.low + int(rng.integers(0, n_steps + 1)) * p.grid_step
                else:
                    out[p.name] = p.from_unit(rng.uniform())
            else:
                out[p.name] = p.values[int(rng.integers(len(p.values)))]
        return out

    # -- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "parameters": [p.to_dict() for p in self._params]}

    @classmethod
    def from_dict(cls, document: Any, source: str | None = None) -> "SearchSpace":
        """Build a space from its JSON document; every broken rule is reported with its JSON path."""
        schemas.validate(document, "search_space", source=source)
        params: list[Parameter] = []
        problems: list[str] = []
        for i, entry in enumerate(document["parameters"]):
            try:
                params.append(parameter_from_dict(entry))
            except (ValueError, OverflowError) as exc:
                problems.append(f"parameters[{i}]: {exc}")
        if not problems:
            problems = _space_problems(tuple(params))
        if problems:
            raise ValidationError(problems, source=source)
        return cls(params)

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """The JSON text; also written atomically to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"
        if path is not None:
            atomic_write_text(Path(path), text)
        return text

    @classmethod
    def from_json(cls, path_or_text: str | os.PathLike[str]) -> "SearchSpace":
        """Load from a file path (a ``Path`` always is one), or from JSON text starting with ``{``."""
        text = str(path_or_text)
        source = None
        if isinstance(path_or_text, os.PathLike) or not text.lstrip().startswith("{"):
            source = str(path_or_text)
            try:
                text = Path(path_or_text).read_text(encoding="utf-8")
            except OSError as exc:
                raise ValidationError(f"cannot read the file ({exc.strerror})", source=source) from None
            except UnicodeDecodeError:
                raise ValidationError("cannot read the file (not UTF-8 text)", source=source) from None
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"line {exc.lineno} column {exc.colno}: not valid JSON ({exc.msg})", source=source) from None
        except (ValueError, RecursionError) as exc:  # a 4300+-digit integer, or absurd nesting
            raise ValidationError(f"not valid JSON ({parse_limit_reason(exc)})", source=source) from None
        return cls.from_dict(document, source=source)

    # -- KerasTuner -----------------------------------------------------------------------------
    def to_keras_tuner(self, hp: "keras_tuner.HyperParameters | None" = None) -> "keras_tuner.HyperParameters":
        """Register every parameter on a (new) ``keras_tuner.HyperParameters``, conditions included.

        Passed as ``hyperparameters=`` to a tuner, it overrides the ranges ``build_model`` declares
        (KerasTuner keeps the first registration of a name).
        """
        import keras_tuner as kt

        problems = keras_tuner_problems(self)
        if problems:
            raise ValidationError(problems)
        hp = kt.HyperParameters() if hp is None else hp
        for p in self._params:
            # KerasTuner's scopes take one parent each; nest them for several conditions.
            _register_nested(hp, p, [(c.parent, list(c.values)) for c in p.conditions])
        return hp

    @classmethod
    def from_keras_tuner(cls, hp: "keras_tuner.HyperParameters") -> "SearchSpace":
        """Read the space a ``keras_tuner.HyperParameters`` declares.

        KerasTuner's multiplicative log-``step`` ints (e.g. 32, 64, 128) have no Optuna twin, so they
        become ordered choices of exactly those values; ``reverse_log`` is read as ``log``.
        """
        from keras_tuner.src.engine.hyperparameters import hp_types

        params: list[Parameter] = []
        for h in hp.space:
            conditions = tuple(Condition(c.name, tuple(c.values)) for c in getattr(h, "conditions", []))
            default = getattr(h, "default", None)  # KerasTuner's own when none was declared: read back as None
            if isinstance(h, hp_types.Fixed):
                params.append(Fixed(h.name, h.value, conditions=conditions))
            elif isinstance(h, hp_types.Boolean):
                params.append(Boolean(h.name, conditions=conditions, default=default))
            elif isinstance(h, hp_types.Choice):
                params.append(Choice(h.name, tuple(h.values), ordered=bool(h.ordered), conditions=conditions,
                                     default=default))
            elif isinstance(h, hp_types.Int):
                log = h.sampling in ("log", "reverse_log")
                if log and h.step is not None:
                    params.append(Choice(h.name, tuple(int(v) for v in h.values), ordered=True, conditions=conditions,
                                         default=default))
                else:
                    params.append(Int(h.name, h.min_value, h.max_value, log=log, step=None if log else h.step,
                                      conditions=conditions, default=default))
            elif isinstance(h, hp_types.Float):
                log = h.sampling in ("log", "reverse_log")
                if log and h.step is not None:
                    params.append(Choice(h.name, tuple(float(v) for v in h.values), ordered=True, conditions=conditions,
                                         default=default))
                else:
                    params.append(Float(h.name, h.min_value, h.max_value, log=log, step=h.step, conditions=conditions,
                                        default=default))
            else:  # pragma: no cover - KerasTuner has no other public types
                raise ValidationError(f"{h.name}: unsupported KerasTuner hyperparameter type {type(h).__name__}")
        return cls(params)

    # -- Optuna ---------------------------------------------------------------------------------
    def to_optuna(self) -> dict[str, "optuna.distributions.BaseDistribution"]:
        """One Optuna distribution per parameter (fixed ones as a one-value categorical).

        Optuna is define-by-run, so conditions are not part of a distribution: a conditional
        parameter is simply suggested only when its condition holds (see ``refiner.export``).
        """
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        out: dict[str, Any] = {}
        for p in self._params:
            if isinstance(p, Float):
                out[p.name] = FloatDistribution(p.low, p.high, log=p.log, step=p.step)
            elif isinstance(p, Int):
                out[p.name] = IntDistribution(p.low, p.high, log=p.log, step=p.grid_step)
            elif isinstance(p, Choice):
                out[p.name] = CategoricalDistribution(list(p.values))
            elif isinstance(p, Boolean):
                out[p.name] = CategoricalDistribution([False, True])
            else:
                out[p.name] = CategoricalDistribution([p.value])
        return out

    @classmethod
    def from_optuna(
        cls,
        distributions: Mapping[str, "optuna.distributions.BaseDistribution"],
        conditions: Mapping[str, Sequence[Condition | Mapping[str, Any]]] | None = None,
        defaults: Mapping[str, Any] | None = None,
        ordered: Sequence[str] = (),
    ) -> "SearchSpace":
        """Inverse of :meth:`to_optuna`. Optuna stores no conditions, defaults or choice order:
        give them as the Optuna export writes them (``CONDITIONS``, ``DEFAULTS``, ``ORDERED``)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        conditions = conditions or {}
        defaults = defaults or {}
        params: list[Parameter] = []
        for name, d in distributions.items():
            cond = tuple(conditions.get(name, ()))
            default = defaults.get(name)
            if isinstance(d, FloatDistribution):
                params.append(Float(name, d.low, d.high, log=d.log, step=d.step, conditions=cond, default=default))
            elif isinstance(d, IntDistribution):
                params.append(Int(name, d.low, d.high, log=d.log, step=None if d.log else d.step, conditions=cond,
                                  default=default))
            elif isinstance(d, CategoricalDistribution):
                choices = tuple(d.choices)
                if len(choices) == 1:
                    params.append(Fixed(name, choices[0], conditions=cond))
                elif choices == (False, True) and all(isinstance(c, bool) for c in choices):
                    params.append(Boolean(name, conditions=cond, default=default))
                else:
                    params.append(Choice(name, choices, ordered=name in ordered, conditions=cond, default=default))
            else:
                raise ValidationError(f"{name}: unsupported Optuna distribution {type(d).__name__}")
        return cls(params)

    # -- overrides ------------------------------------------------------------------------------
    def override_with(self, other: "SearchSpace") -> "SearchSpace":
        """This space with every parameter that ``other`` also names taken from ``other``.

        Used when a space file narrows or widens the ranges a hypermodel declares; names that only
        ``other`` has are appended (a hypermodel may register them only under some conditions).
        """
        merged = [other[p.name] if p.name in other else p for p in self._params]
        merged += [p for p in other if p.name not in self]
        return SearchSpace(merged)


def _register(hp: Any, p: Parameter) -> None:
    if isinstance(p, Float):
        hp.Float(p.name, p.low, p.high, step=p.step, sampling="log" if p.log else "linear", default=p.default)
    elif isinstance(p, Int):
        hp.Int(p.name, p.low, p.high, step=p.step if not p.log else None, sampling="log" if p.log else "linear",
               default=p.default)
    elif isinstance(p, Choice) and isinstance(p.values[0], bool):
        # KerasTuner stores a choice of booleans as 0/1; Boolean and Fixed keep real booleans.
        if len(p.values) == 1:
            hp.Fixed(p.name, p.values[0])
        else:
            hp.Boolean(p.name, default=bool(p.values[0] if p.default is None else p.default))
    elif isinstance(p, Choice):
        # Explicit even when False (KerasTuner otherwise marks every numeric choice ordered);
        # KerasTuner orders numeric choices only, so an ordered string choice goes in unordered.
        numeric = not isinstance(p.values[0], str)
        hp.Choice(p.name, list(p.values), ordered=p.ordered if numeric else None, default=p.default)
    elif isinstance(p, Boolean):
        hp.Boolean(p.name, default=bool(p.default))
    else:
        hp.Fixed(p.name, p.value)


def _register_nested(hp: Any, p: Parameter, conditions: list[tuple[str, list[Any]]]) -> None:
    if not conditions:
        _register(hp, p)
        return
    (parent, values), *rest = conditions
    with hp.conditional_scope(parent, values):
        _register_nested(hp, p, rest)


def keras_tuner_problems(space: SearchSpace) -> list[str]:
    """Why ``space`` cannot be written as KerasTuner conditional scopes (empty list: it can).

    KerasTuner opens ``hp.conditional_scope(parent, ...)`` only when ``parent`` was registered under
    exactly the scopes already open, so a parameter's conditions must form a chain: the parent of
    condition ``k`` must carry conditions ``0..k-1`` and nothing else.
    """
    problems = []
    for i, p in enumerate(space):
        for k, c in enumerate(p.conditions):
            parent_conditions = space[c.parent].conditions
            if tuple(parent_conditions) != tuple(p.conditions[:k]):
                problems.append(
                    f"parameters[{i}].conditions[{k}]: KerasTuner cannot hold this: it needs the conditions of "
                    f"{p.name!r} to repeat those of its parent {c.parent!r} first, in order "
                    f"(got {[x.to_dict() for x in p.conditions]}, parent has {[x.to_dict() for x in parent_conditions]})"
                )
    return problems


def _parent_typed(space: SearchSpace, c: Condition) -> list[Any]:
    """The condition's values as the parent holds them (1 -> 1.0 for a float choice)."""
    parent = space[c.parent]
    own = (parent.value,) if isinstance(parent, Fixed) else tuple(parent.values)  # type: ignore[union-attr]
    return [next((v for v in own if Condition(c.parent, (v,)).holds({c.parent: w})), w) for w in c.values]


def _space_problems(params: tuple[Parameter, ...]) -> list[str]:
    """Rules that involve several parameters: unique names, conditions on earlier discrete parents."""
    problems: list[str] = []
    seen: dict[str, Parameter] = {}
    for i, p in enumerate(params):
        if p.name in seen:
            problems.append(f"parameters[{i}].name: must be unique, {p.name!r} appears twice")
        for j, c in enumerate(p.conditions):
            where = f"parameters[{i}].conditions[{j}]"
            parent = seen.get(c.parent)
            if parent is None:
                problems.append(f"{where}.parent: must name a parameter declared earlier, got {c.parent!r}")
            elif isinstance(parent, (Float, Int)):
                problems.append(f"{where}.parent: must be a choice, boolean or fixed parameter, {c.parent!r} is {parent.type_name}")
            else:
                bad = [v for v in c.values if not parent.contains(v)]
                if bad:
                    problems.append(f"{where}.values: must be values {c.parent!r} can take, got {bad!r}")
        seen.setdefault(p.name, p)
    return problems
