"""Export a search space for reuse: portable JSON, a KerasTuner module, or an Optuna module.

:func:`render` returns text. The two Python forms are self-contained modules (they import only
``keras_tuner`` or ``optuna``), so a refined space can be dropped into a project that does not
have refiner installed::

    from refiner.export import render
    Path("space_kt.py").write_text(render(space, "keras-tuner"))

Every literal is written with ``repr``: Python writes the shortest text that reads back as the
same float, and quotes any string safely, so running the module rebuilds the exported space.
KerasTuner cannot hold three things exactly, and the KerasTuner module says so in a comment where
it meets them: a choice of booleans becomes ``hp.Boolean`` (or ``hp.Fixed`` for one value), since
KerasTuner would store them as 0/1; an ordered choice of strings is registered unordered; and
conditions must nest as a chain (see :func:`keras_tuner_problems`), or :func:`render` refuses.

A space made of regions (a union of boxes) is written exactly, never as its enclosing box: both
Python forms first choose a region (a choice named ``region``: ``hp.Choice`` with every bounded
parameter registered once per region under ``hp.conditional_scope("region", [i])``, or
``trial.suggest_categorical`` followed by that region's ranges), so each region gets an equal
share of random draws and every draw lies in the union.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from refiner import __version__
from refiner.errors import ValidationError
from refiner.space import (
    REGION_PARAMETER,
    Boolean,
    Choice,
    Condition,
    Fixed,
    Float,
    Int,
    Parameter,
    SearchSpace,
    keras_tuner_problems,
)

__all__ = ["FORMATS", "SUFFIXES", "render", "keras_tuner_problems"]

log = logging.getLogger(__name__)

FORMATS = ("json", "keras-tuner", "optuna")
SUFFIXES = {"json": ".json", "keras-tuner": ".py", "optuna": ".py"}


def render(space: SearchSpace, fmt: str) -> str:
    """The text of ``space`` in format ``fmt`` (one of :data:`FORMATS`).

    Raises:
        ValidationError: (a ``ValueError``) ``fmt`` is not a known format, or, for
            ``"keras-tuner"``, the space has conditions KerasTuner cannot nest; one line each,
            as :func:`keras_tuner_problems` gives them.
    """
    renderers: dict[str, Callable[[SearchSpace], str]] = {
        "json": lambda s: s.to_json(),
        "keras-tuner": _render_keras_tuner,
        "optuna": _render_optuna,
    }
    if fmt not in renderers:
        raise ValidationError(f"export format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    text = renderers[fmt](space)
    log.debug("rendered %d parameters as %s (%d characters)", len(space), fmt, len(text))
    return text


def _lit(value: Any) -> str:
    # repr is exact for the scalars a space may hold (finite floats, ints, bools, str) and None.
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_lit(v) for v in value) + "]"
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) as a Python literal")


def _header(space: SearchSpace, title: str, usage: list[str]) -> list[str]:
    lines = [f"# {title}", f"# Exported by refiner {__version__}: {len(space)} parameters."]
    for p in space:
        # Names and values may hold any character; repr keeps each comment on one line.
        described = repr(p.describe())[1:-1]
        lines.append(f"#   {_lit(p.name)}: {p.type_name} {described}".rstrip())
    if space.regions:
        lines.append(f"# The space is the union of {len(space.regions)} regions (the ranges above enclose them);")
        lines.append(f"# {_lit(REGION_PARAMETER)} chooses one, then its ranges apply:")
        for i, r in enumerate(space.regions):
            lines.append(f"#   region {i}: {repr(r.describe())[1:-1]}")
    lines.append("#")
    lines += [f"# {u}".rstrip() for u in usage]
    return lines


# -- KerasTuner ---------------------------------------------------------------------------------
def _kt_call(p: Parameter) -> str:
    name = _lit(p.name)
    # A declared default is written out; none means KerasTuner's own (low, the first value, False).
    default = [] if p.default is None else [f"default={_lit(p.default)}"]
    if isinstance(p, Float):
        args = [name, _lit(p.low), _lit(p.high)]
        if p.step is not None:
            args.append(f"step={_lit(p.step)}")
        if p.log:
            args.append("sampling='log'")
        return f"hp.Float({', '.join(args + default)})"
    if isinstance(p, Int):
        args = [name, _lit(p.low), _lit(p.high)]
        if p.step is not None and not p.log:
            args.append(f"step={_lit(p.step)}")
        if p.log:
            args.append("sampling='log'")
        return f"hp.Int({', '.join(args + default)})"
    if isinstance(p, Choice) and isinstance(p.values[0], bool):
        # KerasTuner stores a choice of booleans as 0/1 ints, so build_model would see 1, not
        # True; Boolean and Fixed keep real booleans and mean the same.
        if len(p.values) == 1:
            return f"hp.Fixed({name}, {_lit(p.values[0])})"
        first = p.values[0] if p.default is None else p.default
        return f"hp.Boolean({name}, default={_lit(first)})" if first else f"hp.Boolean({name})"
    if isinstance(p, Choice):
        args = [name, _lit(list(p.values))]
        if not isinstance(p.values[0], str):
            # Explicit even when False: KerasTuner otherwise marks every numeric choice ordered.
            args.append(f"ordered={p.ordered!r}")
        return f"hp.Choice({', '.join(args + default)})"
    if isinstance(p, Boolean):
        return f"hp.Boolean({', '.join([name] + default)})"
    if isinstance(p, Fixed):
        return f"hp.Fixed({name}, {_lit(p.value)})"
    raise TypeError(f"unknown parameter type {type(p).__name__}")  # pragma: no cover


def _render_keras_tuner(space: SearchSpace) -> str:
    problems = keras_tuner_problems(space)
    if problems:
        raise ValidationError(problems)
    lines = _header(space, "KerasTuner search space", [
        "Search exactly this space; the pre-filled hyperparameters override the ranges",
        "build_model declares (the first registration of a name wins), and",
        "tune_new_entries=False keeps it from adding parameters of its own:",
        "",
        "    tuner = keras_tuner.BayesianOptimization(build_model, objective=...,",
        "                                             hyperparameters=hp, tune_new_entries=False)",
    ])
    lines += ["", "import keras_tuner", "", "", "def build_hyperparameters() -> keras_tuner.HyperParameters:",
              "    hp = keras_tuner.HyperParameters()"]
    bounded = {n for r in space.regions for n in r.names}
    if space.regions:
        _no_region_clash(space)
        lines.append("    # Which region; build_model need not read it.")
        lines.append(f"    hp.Choice({_lit(REGION_PARAMETER)}, {_lit(list(range(len(space.regions))))}, ordered=False)")
    for p in space:
        if p.name in bounded:  # unconditional (a rule of regions): one registration per region
            for i in range(len(space.regions)):
                lines.append(f"    with hp.conditional_scope({_lit(REGION_PARAMETER)}, [{i}]):")
                lines.append(f"        {_kt_call(space.region_space(i)[p.name])}")
            continue
        indent = "    "
        for c in p.conditions:
            lines.append(f"{indent}with hp.conditional_scope({_lit(c.parent)}, {_lit(list(c.values))}):")
            indent += "    "
        if isinstance(p, Choice) and p.ordered and isinstance(p.values[0], str):
            lines.append(f"{indent}# ordered in refiner; KerasTuner orders numeric choices only")
        elif isinstance(p, Choice) and isinstance(p.values[0], bool):
            lines.append(f"{indent}# a choice of {_lit(list(p.values))} in refiner")
        lines.append(f"{indent}{_kt_call(p)}")
    lines += ["    return hp", "", "", "hp = build_hyperparameters()", ""]
    return "\n".join(lines)


# -- Optuna -------------------------------------------------------------------------------------
def _optuna_distribution(p: Parameter) -> str:
    d = "optuna.distributions."
    if isinstance(p, Float):
        return f"{d}FloatDistribution({_lit(p.low)}, {_lit(p.high)}, log={p.log!r}, step={_lit(p.step)})"
    if isinstance(p, Int):
        return f"{d}IntDistribution({_lit(p.low)}, {_lit(p.high)}, log={p.log!r}, step={_lit(p.grid_step)})"
    return f"{d}CategoricalDistribution({_lit(list(_categories(p)))})"


def _categories(p: Parameter) -> tuple[Any, ...]:
    # Matches SearchSpace.to_optuna: booleans and fixed values are categoricals too.
    if isinstance(p, Fixed):
        return (p.value,)
    return tuple(p.values)  # type: ignore[union-attr]


def _optuna_suggest(p: Parameter) -> str:
    name = _lit(p.name)
    if isinstance(p, Float):
        return f"trial.suggest_float({name}, {_lit(p.low)}, {_lit(p.high)}, step={_lit(p.step)}, log={p.log!r})"
    if isinstance(p, Int):
        return f"trial.suggest_int({name}, {_lit(p.low)}, {_lit(p.high)}, step={_lit(p.grid_step)}, log={p.log!r})"
    return f"trial.suggest_categorical({name}, {_lit(list(_categories(p)))})"


def _condition_expr(conditions: tuple[Condition, ...]) -> str:
    return " and ".join(f"_holds(params, {_lit(c.parent)}, {_lit(list(c.values))})" for c in conditions)


def _render_optuna(space: SearchSpace) -> str:
    lines = _header(space, "Optuna search space", [
        "DISTRIBUTIONS maps each name to its distribution (for create_trial / add_trial);",
        "suggest(trial) draws one configuration define-by-run, suggesting a conditional",
        "parameter only when its conditions hold:",
        "",
        "    def objective(trial):",
        "        params = suggest(trial)",
        "        return train_and_score(**params)",
        "",
        "What Optuna's distributions cannot hold is kept as data: CONDITIONS (when a parameter",
        "is active), DEFAULTS (the declared defaults; study.enqueue_trial(DEFAULTS) tries them",
        "first) and ORDERED (choices whose values are ranked). refiner reads all of it back with",
        "SearchSpace.from_optuna(DISTRIBUTIONS, CONDITIONS, DEFAULTS, ORDERED).",
    ])
    if space.regions:
        _no_region_clash(space)
        lines += ["", "DISTRIBUTIONS hold the enclosing box; REGIONS lists the boxes whose union the space is",
                  f"(name -> [low, high]), and suggest(trial) first suggests {_lit(REGION_PARAMETER)}, then that region's ranges."]
        lines = lines[:-2] + [f"# {u}" for u in lines[-2:]]
    lines += ["", "import optuna", "", "DISTRIBUTIONS: dict[str, optuna.distributions.BaseDistribution] = {"]
    lines += [f"    {_lit(p.name)}: {_optuna_distribution(p)}," for p in space]
    lines += ["}", "", "CONDITIONS: dict[str, list[dict]] = {"]
    for p in space:
        if p.conditions:
            conditions = ", ".join(f"{{'parent': {_lit(c.parent)}, 'values': {_lit(list(c.values))}}}" for c in p.conditions)
            lines.append(f"    {_lit(p.name)}: [{conditions}],")
    lines += ["}", "", "DEFAULTS: dict = {"]
    lines += [f"    {_lit(p.name)}: {_lit(p.default)}," for p in space if p.default is not None]
    ordered = [p.name for p in space if isinstance(p, Choice) and p.ordered]
    lines += ["}", "", f"ORDERED: list[str] = {_lit(ordered)}"]
    if space.regions:
        lines += ["", "REGIONS: list[dict[str, list]] = ["]
        lines += [f"    {{{', '.join(f'{_lit(n)}: [{_lit(lo)}, {_lit(hi)}]' for n, lo, hi in r)}}}," for r in space.regions]
        lines += ["]"]
    lines += [
        "",
        "",
        "def _holds(params: dict, parent: str, values: list) -> bool:",
        "    # The parent must be active and take one of `values`; since True == 1 in Python,",
        "    # a boolean only matches a boolean.",
        "    if parent not in params:",
        "        return False",
        "    value = params[parent]",
        "    return any(value == v and isinstance(value, bool) == isinstance(v, bool) for v in values)",
        "",
        "",
        "def suggest(trial: optuna.trial.Trial) -> dict:",
        "    params: dict = {}",
    ]
    bounded = {n for r in space.regions for n in r.names}
    if space.regions:
        lines.append(f"    region = trial.suggest_categorical({_lit(REGION_PARAMETER)}, "
                     f"{_lit(list(range(len(space.regions))))})  # not a parameter of the model")
    for p in space:
        if p.name in bounded:  # unconditional (a rule of regions): the chosen region's range
            for i in range(len(space.regions)):
                lines.append(f"    {'if' if i == 0 else 'elif'} region == {i}:")
                lines.append(f"        params[{_lit(p.name)}] = {_optuna_suggest(space.region_space(i)[p.name])}")
            continue
        call = f"params[{_lit(p.name)}] = {_optuna_suggest(p)}"
        if p.conditions:
            lines.append(f"    if {_condition_expr(p.conditions)}:")
            lines.append(f"        {call}")
        else:
            lines.append(f"    {call}")
    lines += ["    return params", ""]
    return "\n".join(lines)


def _no_region_clash(space: SearchSpace) -> None:
    if REGION_PARAMETER in space:
        raise ValidationError(f"parameters: a space with regions cannot also have a parameter named "
                              f"{REGION_PARAMETER!r} (the exported code uses that name); rename it")
