"""The search space: an ordered, immutable set of parameters, and its portable JSON form.

The JSON form is described by ``schemas/search_space.schema.json``::

    {"format_version": 1, "parameters": [
        {"name": "learning_rate", "type": "float", "low": 1e-4, "high": 1e-2, "log": true},
        {"name": "units", "type": "int", "low": 64, "high": 512, "step": 64},
        {"name": "activation", "type": "choice", "values": ["relu", "tanh"]},
        {"name": "dropout", "type": "float", "low": 0.0, "high": 0.5,
         "conditions": [{"parent": "use_dropout", "values": [true]}]},
        {"name": "use_dropout", "type": "boolean"}]}

A space may also be a union of boxes (:mod:`~refiner.space.regions`): ``"regions": [{"learning_rate":
[1e-4, 5e-4]}, {"learning_rate": [3e-3, 1e-2], "units": [256, 512]}]`` keeps the parameters' ranges
as the enclosing box and holds only the points inside at least one region.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from refiner import schemas
from refiner.errors import ValidationError
from refiner.jsonio import atomic_write_text, parse_limit_reason
from refiner.space.libraries import LibraryForms
from refiner.space.parameters import Condition, Fixed, Float, Int, Parameter, parameter_from_dict
from refiner.space.regions import Region, box_fraction, box_parameter, make_region, region_problems

__all__ = ["SearchSpace", "FORMAT_VERSION"]

FORMAT_VERSION = 1

class SearchSpace(LibraryForms):
    """An ordered, immutable set of parameters with unique names.

    Conditions may only point at ``choice``, ``boolean`` or ``fixed`` parents declared earlier,
    and their values must be values the parent can take. ``regions`` (two or more boxes, each a
    mapping of numeric parameter names to ``[low, high]``) make the space their union
    (:mod:`refiner.space.regions`).
    """

    def __init__(self, parameters: Sequence[Parameter],
                 regions: Sequence[Region | Mapping[str, Sequence[Any]]] | None = None):
        params = tuple(parameters)
        problems = _space_problems(params)
        if not problems and regions is not None:
            problems = region_problems({p.name: p for p in params}, list(regions))
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
        self._regions: tuple[Region, ...] = () if regions is None else tuple(
            make_region(self._by_name, r) for r in regions)

    # -- regions ------------------------------------------------------------------------------
    @property
    def regions(self) -> tuple[Region, ...]:
        """The boxes whose union the space is; empty for a plain box."""
        return self._regions

    def without_regions(self) -> "SearchSpace":
        """The enclosing box: the same parameters, no regions."""
        return self if not self._regions else SearchSpace(self._params)

    def with_regions(self, regions: Sequence[Region | Mapping[str, Sequence[Any]]] | None) -> "SearchSpace":
        """The same parameters holding ``regions`` (None or empty: the enclosing box)."""
        return SearchSpace(self._params, list(regions) if regions else None)

    def region_space(self, i: int) -> "SearchSpace":
        """Region ``i`` as a plain space: every parameter it bounds has the region's range."""
        region = self._regions[i]
        return SearchSpace([box_parameter(p, region.get(p.name)) for p in self._params])

    def region_volumes(self) -> list[float]:
        """Each region's share of the enclosing box (module :mod:`refiner.space.regions`)."""
        return [box_fraction(self._by_name, {n: (lo, hi) for n, lo, hi in r}) for r in self._regions]

    def region_of(self, assignment: Mapping[str, Any]) -> int | None:
        """The first region holding ``assignment`` (None: none does, or the space has no regions)."""
        return next((i for i in range(len(self._regions)) if self._in_region(i, assignment)), None)

    def nearest_in_regions(self, assignment: Mapping[str, Any]) -> dict[str, Any]:
        """``assignment`` moved into the nearest region (unit distance in the enclosing box), each
        bounded value clipped into the region's range and onto its grid; unchanged without regions
        or when it is in one already."""
        if not self._regions or self.region_of(assignment) is not None:
            return dict(assignment)
        best: tuple[float, dict[str, Any]] | None = None
        for region in self._regions:
            moved, distance = dict(assignment), 0.0
            for name, lo, hi in region:
                if name not in assignment:
                    continue
                p = self._by_name[name]
                inside = box_parameter(p, (lo, hi))
                value = inside.snap(float(assignment[name]))  # type: ignore[union-attr]
                distance += (p.to_unit(value) - p.to_unit(float(assignment[name]))) ** 2  # type: ignore[union-attr]
                moved[name] = value
            if best is None or distance < best[0]:
                best = (distance, moved)
        assert best is not None
        return best[1]

    def _in_region(self, i: int, assignment: Mapping[str, Any]) -> bool:
        for name, lo, hi in self._regions[i]:
            if name not in assignment or not box_parameter(self._by_name[name], (lo, hi)).contains(assignment[name]):
                return False
        return True

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
        regions = "".join(f"; region {i}: {r.describe()}" for i, r in enumerate(self._regions))
        return f"SearchSpace({inner}{regions})"

    def replace(self, parameter: Parameter) -> "SearchSpace":
        """A new space with the parameter of the same name swapped for ``parameter``; regions that
        bound it are given up (the new range is meant as given)."""
        self[parameter.name]  # raises a clear KeyError for an unknown name
        params = [parameter if p.name == parameter.name else p for p in self._params]
        bound = any(parameter.name in r.names for r in self._regions)
        return SearchSpace(params, None if bound else (self._regions or None))

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
        """Whether every active parameter of the space has a value inside its range, and the point
        lies in at least one region when the space has regions."""
        for name in self.active_names(assignment):
            if name not in assignment or not self[name].contains(assignment[name]):
                return False
        return not self._regions or self.region_of(assignment) is not None

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """One configuration drawn uniformly (log-uniformly for log parameters); with regions,
        uniformly over their union."""
        if not self._regions:
            return self._sample_box(rng)
        volumes = np.asarray(self.region_volumes(), dtype=float)
        weights = volumes / volumes.sum() if volumes.sum() > 0 else np.full(len(volumes), 1.0 / len(volumes))
        spaces = [self.region_space(i) for i in range(len(self._regions))]
        for _ in range(_MAX_REJECTIONS):
            # A region drawn in proportion to its volume, then a point in it, kept with probability
            # 1 / (regions holding it): uniform over the union even where regions overlap.
            point = spaces[int(rng.choice(len(spaces), p=weights))]._sample_box(rng)
            holding = sum(self._in_region(i, point) for i in range(len(self._regions)))
            if holding <= 1 or rng.uniform() < 1.0 / holding:
                return point
        return point

    def _sample_box(self, rng: np.random.Generator) -> dict[str, Any]:
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
        out: dict[str, Any] = {"format_version": FORMAT_VERSION, "parameters": [p.to_dict() for p in self._params]}
        if self._regions:
            out["regions"] = [r.to_dict() for r in self._regions]
        return out

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
        regions = document.get("regions")
        if not problems and regions is not None:
            problems = region_problems({p.name: p for p in params}, regions)
        if problems:
            raise ValidationError(problems, source=source)
        return cls(params, regions)

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


    # -- overrides ------------------------------------------------------------------------------
    def override_with(self, other: "SearchSpace") -> "SearchSpace":
        """This space with every parameter that ``other`` also names taken from ``other``.

        Used when a space file narrows or widens the ranges a hypermodel declares; names that only
        ``other`` has are appended (a hypermodel may register them only under some conditions).
        ``other``'s regions come with it; this space's own regions stay only if ``other`` leaves
        every parameter they bound alone (a range set by ``other`` is meant as given).
        """
        merged = [other[p.name] if p.name in other else p for p in self._params]
        merged += [p for p in other if p.name not in self]
        if other.regions:
            return SearchSpace(merged, other.regions)
        kept = self._regions if not any(n in other for r in self._regions for n in r.names) else None
        return SearchSpace(merged, kept or None)  # no regions: one box, not an empty union



_MAX_REJECTIONS = 1000  # draws before sample() keeps a point in an overlap anyway (never reached in practice)


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
