"""A search space in KerasTuner's and Optuna's terms, both ways.

:class:`LibraryForms` gives :class:`~refiner.space.SearchSpace` its ``to_keras_tuner`` /
``from_keras_tuner`` and ``to_optuna`` / ``from_optuna``; KerasTuner and Optuna are imported only
when a conversion runs (KerasTuner pulls in TensorFlow, which takes seconds).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from refiner.errors import ValidationError
from refiner.space.parameters import Boolean, Choice, Condition, Fixed, Float, Int, Parameter

if TYPE_CHECKING:
    import keras_tuner
    import optuna

    from refiner.space.search_space import SearchSpace

__all__ = ["LibraryForms", "keras_tuner_problems", "REGION_PARAMETER"]

REGION_PARAMETER = "region"
"""The name of the choice of region in the library forms of a space made of regions."""


class LibraryForms:
    """The conversions of a search space; mixed into :class:`~refiner.space.SearchSpace`."""

    _params: tuple[Parameter, ...]

    # -- KerasTuner -----------------------------------------------------------------------------
    def to_keras_tuner(self, hp: "keras_tuner.HyperParameters | None" = None) -> "keras_tuner.HyperParameters":
        """Register every parameter on a (new) ``keras_tuner.HyperParameters``, conditions included.

        Passed as ``hyperparameters=`` to a tuner, it overrides the ranges ``build_model`` declares
        (KerasTuner keeps the first registration of a name).

        A space made of regions is registered exactly, never as its enclosing box: a choice
        ``region`` (0, 1, ...) and, under ``hp.conditional_scope("region", [i])``, each parameter a
        region bounds with that region's range (KerasTuner holds one name under several scopes and
        uses the active one). ``without_regions().to_keras_tuner()`` is the enclosing box.
        """
        import keras_tuner as kt

        problems = keras_tuner_problems(self)
        if problems:
            raise ValidationError(problems)
        hp = kt.HyperParameters() if hp is None else hp
        regions = getattr(self, "regions", ())
        bounded = {n for r in regions for n in r.names}
        if regions:
            if REGION_PARAMETER in {p.name for p in self._params}:
                raise ValidationError(f"parameters: a space with regions cannot also have a parameter named "
                                      f"{REGION_PARAMETER!r} (the KerasTuner form uses that name); rename it")
            hp.Choice(REGION_PARAMETER, list(range(len(regions))), ordered=False)
        for p in self._params:
            if p.name in bounded:
                for i in range(len(regions)):
                    with hp.conditional_scope(REGION_PARAMETER, [i]):
                        _register(hp, self.region_space(i)[p.name])  # type: ignore[attr-defined]
                continue
            # KerasTuner's scopes take one parent each; nest them for several conditions.
            _register_nested(hp, p, [(c.parent, list(c.values)) for c in p.conditions])
        return hp

    @classmethod
    def from_keras_tuner(cls, hp: "keras_tuner.HyperParameters") -> "SearchSpace":
        """Read the space a ``keras_tuner.HyperParameters`` declares.

        KerasTuner's multiplicative log-``step`` ints (e.g. 32, 64, 128) have no Optuna twin, so they
        become ordered choices of exactly those values; ``reverse_log`` is read as ``log``. The
        region form :meth:`to_keras_tuner` writes for a space made of regions reads back as those
        regions.
        """
        params = cls._params_from_keras_tuner(hp)
        regions = _regions_of(params)
        if regions is None:
            return cls(params)
        merged, boxes = regions
        return cls(merged, boxes)  # type: ignore[call-arg]

    @staticmethod
    def _params_from_keras_tuner(hp: "keras_tuner.HyperParameters") -> list[Parameter]:
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
        return params

    # -- Optuna ---------------------------------------------------------------------------------
    def to_optuna(self) -> dict[str, "optuna.distributions.BaseDistribution"]:
        """One Optuna distribution per parameter (fixed ones as a one-value categorical).

        Optuna is define-by-run, so conditions are not part of a distribution: a conditional
        parameter is simply suggested only when its condition holds (see ``refiner.export``).
        Nor can distributions hold a union of regions: a space made of regions is refused (its
        Optuna code in ``refiner.export`` suggests the region first; ``without_regions()`` or
        ``region_space(i)`` give plain boxes).
        """
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        regions = getattr(self, "regions", ())
        if regions:
            raise ValidationError(f"regions: Optuna distributions cannot hold a union of {len(regions)} regions; "
                                  f"use refiner.export's Optuna code, or without_regions() for the enclosing box")

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


def _regions_of(params: list[Parameter]) -> tuple[list[Parameter], list[dict[str, list[Any]]]] | None:
    """The parameters and regions of the region form (a choice ``region`` of 0..k-1, and numeric
    parameters registered once per region under that choice alone), or None for any other form."""
    choice = next((p for p in params if p.name == REGION_PARAMETER), None)
    if not isinstance(choice, Choice) or list(choice.values) != list(range(len(choice.values))):
        return None
    k = len(choice.values)
    scoped: dict[str, dict[int, Parameter]] = {}
    for p in params:
        if len(p.conditions) == 1 and p.conditions[0].parent == REGION_PARAMETER and len(p.conditions[0].values) == 1:
            if not isinstance(p, (Float, Int)):
                return None
            scoped.setdefault(p.name, {})[int(p.conditions[0].values[0])] = p
    if not scoped or any(sorted(by_region) != list(range(k)) for by_region in scoped.values()):
        return None
    merged: list[Parameter] = []
    for p in params:
        if p.name == REGION_PARAMETER or (p.name in scoped and p is not scoped[p.name][0]):
            continue
        if p.name in scoped:
            ranges = scoped[p.name].values()
            p = dataclasses.replace(p, low=min(r.low for r in ranges), high=max(r.high for r in ranges),  # type: ignore[union-attr]
                                    conditions=(), default=None)
        merged.append(p)
    boxes = [{name: [by[i].low, by[i].high] for name, by in scoped.items()  # type: ignore[union-attr]
              if (by[i].low, by[i].high) != (min(r.low for r in by.values()), max(r.high for r in by.values()))}  # type: ignore[union-attr]
             for i in range(k)]
    return merged, boxes


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

