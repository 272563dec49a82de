"""Conditional parameters: a child's conditions lose the parent values that narrowing dropped."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from refiner.space import Condition, Parameter, SearchSpace, same_scalar

__all__ = ["children", "pruned_conditions", "with_conditions", "condition_emptied"]


def children(space: SearchSpace) -> dict[str, list[Parameter]]:
    """Per parent, the parameters conditioned on it."""
    out: dict[str, list[Parameter]] = {}
    for p in space:
        for c in p.conditions:
            out.setdefault(c.parent, []).append(p)
    return out


def pruned_conditions(p: Parameter, dropped: Mapping[str, list[Any]]) -> tuple[Condition, ...]:
    """``p``'s conditions without the parent values narrowing dropped."""
    out = []
    for c in p.conditions:
        gone = dropped.get(c.parent, [])
        values = tuple(v for v in c.values if not any(same_scalar(v, g) for g in gone))
        out.append(c if len(values) == len(c.values) else Condition(c.parent, values))
    return tuple(out)


def with_conditions(p: Parameter, conditions: tuple[Condition, ...]) -> Parameter:
    return p if conditions == p.conditions else dataclasses.replace(p, conditions=conditions)


def condition_emptied(child: Parameter, parent: str, gone: list[Any]) -> bool:
    """Whether dropping ``gone`` from ``parent`` leaves ``child`` a condition no value meets."""
    return any(
        c.parent == parent and all(any(same_scalar(v, g) for g in gone) for v in c.values)
        for c in child.conditions
    )
