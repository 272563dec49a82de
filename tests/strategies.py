"""Hypothesis strategies for valid search spaces, shared by every test that needs random spaces.

    from strategies import search_spaces
    @given(search_spaces(keras_tuner=True))
    def test_something(space): ...

Every space drawn is valid by construction (the ``SearchSpace`` constructor would reject it
otherwise, which fails the test loudly rather than filtering silently).
"""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from refiner.space import Boolean, Choice, Condition, Fixed, Float, Int, Parameter, SearchSpace

__all__ = [
    "names",
    "scalars",
    "float_params",
    "int_params",
    "choice_params",
    "search_spaces",
    "as_optuna_sees_it",
    "identical",
]

# Quotes, backslashes, a newline and non-ASCII check that exported code quotes names correctly.
_NAME_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCXYZ0123456789_-. '\"\\\né"
names = st.text(_NAME_ALPHABET, min_size=1, max_size=10)

_finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, allow_subnormal=False)
_strings = st.text(_NAME_ALPHABET, max_size=6)
scalars = st.one_of(_strings, st.integers(-10**6, 10**6), _finite, st.booleans())

# Steps with short decimal forms: Optuna checks ``high - low`` against ``step`` in decimal
# arithmetic on str(float) and moves ``high`` when it does not divide (see test_space for that case).
_STEPS = [0.001, 0.01, 0.05, 0.1, 0.125, 0.2, 0.25, 0.5, 1.0, 2.5, 10.0]


@st.composite
def float_params(draw: st.DrawFn, name: str, conditions: tuple[Condition, ...] = ()) -> Float:
    kind = draw(st.sampled_from(["linear", "log", "step"]))
    if kind == "linear":
        low, high = sorted(draw(st.lists(_finite, min_size=2, max_size=2)))
        return Float(name, low, high, conditions=conditions)
    if kind == "log":
        low = draw(st.floats(1e-8, 1e4, allow_subnormal=False))
        # Equal bounds or a real ratio: bounds one ulp apart have log(high) == log(low), which
        # to_unit divides by (see test_space for that bug).
        high = low * draw(st.one_of(st.just(1.0), st.floats(1.0 + 1e-9, 1e4)))
        return Float(name, low, high, log=True, conditions=conditions)
    step = draw(st.sampled_from(_STEPS))
    a = draw(st.integers(-200, 200))
    n = draw(st.integers(0, 40))
    d_step = Decimal(str(step))
    return Float(name, float(a * d_step), float((a + n) * d_step), step=step, conditions=conditions)


@st.composite
def int_params(draw: st.DrawFn, name: str, conditions: tuple[Condition, ...] = ()) -> Int:
    if draw(st.booleans()):
        low = draw(st.integers(1, 1000))
        return Int(name, low, low + draw(st.integers(0, 10**5)), log=True, conditions=conditions)
    low = draw(st.integers(-1000, 1000))
    step = draw(st.one_of(st.none(), st.integers(1, 16)))
    high = low + draw(st.integers(0, 50)) * (step or 1)
    return Int(name, low, high, step=step, conditions=conditions)


@st.composite
def choice_params(
    draw: st.DrawFn, name: str, conditions: tuple[Condition, ...] = (), keras_tuner: bool = False
) -> Choice:
    """A choice of str, int, float or bool values; ``keras_tuner=True`` leaves out what KerasTuner
    cannot hold exactly (it stores booleans as 0/1 and orders numeric choices only)."""
    kind = draw(st.sampled_from(["str", "int", "float"] + ([] if keras_tuner else ["bool"])))
    if kind == "bool":
        values = draw(st.sampled_from([(False,), (True,), (False, True), (True, False)]))
    else:
        element = {"str": _strings, "int": st.integers(-10**6, 10**6), "float": _finite}[kind]
        values = draw(st.lists(element, min_size=1, max_size=5, unique=True))
    ordered = draw(st.booleans()) if (kind != "str" or not keras_tuner) else False
    return Choice(name, tuple(values), ordered=ordered, conditions=conditions)


@st.composite
def with_default(draw: st.DrawFn, p: Parameter) -> Parameter:
    """``p``, half the time with a declared default it can take (KerasTuner's ``default=``)."""
    if isinstance(p, Fixed) or not draw(st.booleans()):
        return p
    if isinstance(p, (Float, Int)):
        value = p.from_unit(draw(st.floats(0.0, 1.0)))
    elif isinstance(p, Boolean):
        value = draw(st.booleans())
    else:
        value = draw(st.sampled_from(p.values))
    return dataclasses.replace(p, default=value)


def _parent_values(parent: Parameter) -> tuple[Any, ...]:
    return (parent.value,) if isinstance(parent, Fixed) else tuple(parent.values)  # type: ignore[union-attr]


@st.composite
def _conditions(draw: st.DrawFn, earlier: list[Parameter], keras_tuner: bool) -> tuple[Condition, ...]:
    parents = [p for p in earlier if isinstance(p, (Choice, Boolean, Fixed))]
    if not parents or not draw(st.booleans()):
        return ()

    def on(parent: Parameter) -> Condition:
        values = _parent_values(parent)
        subset = draw(st.lists(st.sampled_from(values), min_size=1, max_size=len(values), unique=True))
        return Condition(parent.name, tuple(subset))

    if keras_tuner:
        # KerasTuner nests scopes: the conditions must repeat the parent's own, then add one.
        parent = draw(st.sampled_from(parents))
        return tuple(parent.conditions) + (on(parent),)
    chosen = draw(st.lists(st.sampled_from(parents), min_size=1, max_size=2, unique_by=lambda p: p.name))
    return tuple(on(p) for p in chosen)


@st.composite
def search_spaces(
    draw: st.DrawFn,
    *,
    min_parameters: int = 1,
    max_parameters: int = 6,
    conditions: bool = True,
    keras_tuner: bool = False,
) -> SearchSpace:
    """A valid space with every parameter type, log floats and ints, stepped floats and ints,
    choices of str/int/float/bool, and conditions on earlier choice/boolean/fixed parents.

    ``keras_tuner=True`` draws only spaces KerasTuner can express exactly: conditions form a
    chain (each repeats its parent's conditions first, as nested ``conditional_scope`` blocks
    require), string choices are never ordered (KerasTuner orders numeric choices only) and no
    choice holds booleans (KerasTuner turns them into 0/1).
    """
    param_names = draw(st.lists(names, min_size=min_parameters, max_size=max_parameters, unique=True))
    params: list[Parameter] = []
    for name in param_names:
        conds = draw(_conditions(params, keras_tuner)) if conditions else ()
        kind = draw(st.sampled_from(["float", "int", "choice", "boolean", "fixed"]))
        if kind == "float":
            params.append(draw(float_params(name, conds)))
        elif kind == "int":
            params.append(draw(int_params(name, conds)))
        elif kind == "choice":
            params.append(draw(choice_params(name, conds, keras_tuner=keras_tuner)))
        elif kind == "boolean":
            params.append(Boolean(name, conditions=conds))
        else:
            params.append(Fixed(name, draw(scalars), conditions=conds))
        params[-1] = draw(with_default(params[-1]))
    return SearchSpace(params)


def as_optuna_sees_it(space: SearchSpace, with_data: bool = False) -> SearchSpace:
    """``space`` as it comes back from ``SearchSpace.from_optuna(space.to_optuna(), conditions)``.

    Optuna's categoricals carry no order and its distributions no defaults, a one-value
    categorical reads back as ``fixed`` and ``[False, True]`` as ``boolean``; numeric ranges come
    back unchanged. ``with_data=True``: the export's DEFAULTS and ORDERED were given back too.
    """
    out: list[Parameter] = []
    for p in space:
        default = p.default if with_data else None
        if isinstance(p, Choice):
            if len(p.values) == 1:
                p = Fixed(p.name, p.values[0], conditions=p.conditions)
            elif p.values == (False, True) and all(isinstance(v, bool) for v in p.values):
                p = Boolean(p.name, conditions=p.conditions, default=default)
            else:
                p = Choice(p.name, p.values, ordered=p.ordered and with_data, conditions=p.conditions, default=default)
        elif not isinstance(p, Fixed):
            p = dataclasses.replace(p, default=default)
        out.append(p)
    return SearchSpace(out)


def identical(a: SearchSpace, b: SearchSpace) -> bool:
    """Equal down to value types: ``==`` on spaces compares dicts, where True == 1 == 1.0."""
    return json.dumps(a.to_dict(), sort_keys=True) == json.dumps(b.to_dict(), sort_keys=True)
