"""The run config for ``refiner run CONFIG``: a TOML file (JSON works too), checked in full.

::

    name = "branin"
    function = "branin:branin"        # or: hypermodel = "digits_cnn:build_model"
    space = "branin_space.json"       # relative to this file's folder
    [objective]
    name = "loss"
    direction = "min"
    [search]
    rounds = 3
    trials_per_round = 10
    seed = 0

The shape is ``schemas/run_config.schema.json``; rules that tie fields together are checked
here. :func:`load_run_config` reports every broken rule at once as ``"<json path>: <rule>"``
lines. Loading never imports the user's code (a hypermodel module imports TensorFlow, which
takes seconds): :meth:`RunConfig.resolve_target` and :meth:`RunConfig.resolve_data` do that.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import json
import logging
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI (a dependency there)
    import tomli as tomllib

from refiner import schemas
from refiner.engines import DEFAULT_ENGINE, engine_names
from refiner.errors import ValidationError
from refiner.jsonio import parse_limit_reason
from refiner.settings import DEFAULTS as SEARCH_DEFAULTS
from refiner.settings import SearchSettings
from refiner.space import SearchSpace
from refiner.trial import Objective

__all__ = ["RunConfig", "load_run_config", "read_document", "resolve", "DEFAULTS"]

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {"directory": "runs", **SEARCH_DEFAULTS}
"""The same defaults as ``Refiner(...)`` (:data:`refiner.settings.DEFAULTS`), plus the output folder."""

_REFERENCE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$", re.ASCII)
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_REFERENCE_FIELDS = ("function", "hypermodel", "data")


@dataclass(frozen=True)
class RunConfig:
    """A checked run config. Paths in it are already resolved against the config file's folder."""

    name: str
    directory: Path
    function: str | None
    hypermodel: str | None
    space: SearchSpace | None
    data: str | None
    objective: Objective
    settings: SearchSettings  # [search] and [narrowing], checked as Refiner(...) checks them
    fit: dict[str, Any]
    narrowing: dict[str, Any]
    source: Path
    document: dict[str, Any] = field(repr=False)
    space_file: Path | None = None
    engine: str = DEFAULT_ENGINE
    storage: str | None = None
    review: str | None = None  # refiner.gate: "each-round" makes the run wait for approval between rounds
    review_timeout: float | None = None

    # The settings under the names the [search] table uses.
    rounds = property(lambda self: self.settings.rounds)
    trials_per_round = property(lambda self: self.settings.trials_per_round)
    initial_trials = property(lambda self: self.settings.initial_trials)
    executions_per_trial = property(lambda self: self.settings.executions_per_trial)
    trial_retries = property(lambda self: self.settings.trial_retries)
    seed = property(lambda self: self.settings.seed)

    @property
    def base_dir(self) -> Path:
        """The config file's folder: ``space`` and imported modules are looked up there."""
        return self.source.parent

    @property
    def mode(self) -> str:
        return "hypermodel" if self.hypermodel is not None else "function"

    @property
    def target(self) -> str:
        """The ``module:attr`` reference of the hypermodel or the function."""
        return self.hypermodel if self.hypermodel is not None else self.function  # type: ignore[return-value]

    @property
    def run_dir(self) -> Path:
        return self.directory / self.name

    def resolve_target(self) -> Callable[..., Any]:
        """Import the hypermodel (``build_model(hp)``) or the function."""
        return resolve(self.target, self.base_dir, field=self.mode, source=str(self.source))

    def resolve_data(self) -> Callable[[], Any]:
        """Import the data loader (hypermodel runs only)."""
        if self.data is None:
            raise ValidationError("data: not set; only a `hypermodel` run has a data loader", source=str(self.source))
        return resolve(self.data, self.base_dir, field="data", source=str(self.source))


# -- reading ----------------------------------------------------------------------------------------
def read_document(path: Path) -> Any:
    """Parse a TOML or JSON file: ``*.json`` is JSON, ``*.toml`` TOML, and any other name JSON
    when its text starts with ``{``. Unreadable or malformed files raise :class:`ValidationError`
    with one line giving the line and column."""
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValidationError(f"cannot read the file ({exc.strerror})", source=source) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"cannot read the file (not UTF-8 text: byte {exc.start} is {raw[exc.start]:#04x})",
                              source=source) from None
    suffix = path.suffix.lower()
    if suffix == ".json" or (suffix != ".toml" and text.lstrip().startswith("{")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"line {exc.lineno} column {exc.colno}: not valid JSON ({exc.msg})", source=source) from None
        except (ValueError, RecursionError) as exc:  # an integer of over 4300 digits, or absurd nesting
            raise ValidationError(f"not valid JSON ({parse_limit_reason(exc)})", source=source) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(_toml_error(str(exc)), source=source) from None
    except (ValueError, RecursionError) as exc:
        raise ValidationError(f"not valid TOML ({parse_limit_reason(exc)})", source=source) from None


def _toml_error(message: str) -> str:
    # tomllib says "Invalid value (at line 3, column 9)"; say it the way JSON errors are said.
    m = re.match(r"^(?P<msg>.*) \(at line (?P<line>\d+), column (?P<col>\d+)\)$", message)
    if m:
        return f"line {m['line']} column {m['col']}: not valid TOML ({m['msg']})"
    m = re.match(r"^(?P<msg>.*) \(at end of document\)$", message)
    if m:
        return f"end of file: not valid TOML ({m['msg']})"
    return f"not valid TOML ({message})"


# -- checking ---------------------------------------------------------------------------------------
def load_run_config(path: str | Path) -> RunConfig:
    """Read and check a run config; every broken rule is reported at once.

    Raises:
        ValidationError: ``problems`` holds one ``"<json path>: <rule>"`` line per broken rule
            (the file's own line/column for TOML or JSON syntax errors); ``source`` is the file.
    """
    path = Path(path)
    document = read_document(path)
    problems, space, space_file = _check(document, path.parent)
    if not isinstance(document, dict):  # only a JSON file can hold a non-object; the schema said so
        raise ValidationError(problems, source=str(path))
    if problems:
        raise ValidationError(problems, source=str(path))
    search = document.get("search", {})
    settings = _search_settings(search, document.get("narrowing", {}), document.get("fidelity"))
    objective = document["objective"]
    config = RunConfig(
        name=document["name"],
        directory=Path(document.get("directory", DEFAULTS["directory"])),
        function=document.get("function"),
        hypermodel=document.get("hypermodel"),
        space=space,
        data=document.get("data"),
        objective=Objective(objective["name"], objective["direction"]),
        settings=settings,
        fit=dict(document.get("fit", {})),
        narrowing=dict(document.get("narrowing", {})),
        engine=document.get("engine", DEFAULT_ENGINE),
        storage=document.get("storage"),
        review=None if document.get("review", "off") == "off" else document["review"],
        review_timeout=document.get("review_timeout"),
        source=path,
        document=document,
        space_file=space_file,
    )
    log.debug("loaded run config %s: %s %s", path, config.mode, config.target)
    return config


def _search_settings(search: dict[str, Any], narrowing: dict[str, Any] | None = None,
                     fidelity: dict[str, Any] | None = None) -> SearchSettings:
    """The ``[search]``, ``[narrowing]`` and ``[fidelity]`` tables through the same checks and
    defaults as ``Refiner(...)``; ``seed = "random"`` asks for fresh randomness (TOML has no null)."""
    given = dict(search)
    if given.get("seed") == "random":
        given["seed"] = None
    return SearchSettings.create(**given, narrowing=narrowing, fidelity=fidelity)


def _check(document: Any, base_dir: Path) -> tuple[list[str], SearchSpace | None, Path | None]:
    """All problems of a parsed config, plus its space when the space file is valid."""
    problems = [_friendlier(line, document) for line in schemas.problems(document, "run_config")]
    if not isinstance(document, dict):
        return problems, None, None

    has_function = document.get("function") is not None
    has_hypermodel = document.get("hypermodel") is not None
    if has_function and has_hypermodel:
        problems.append("$: give exactly one of `function` and `hypermodel`, got both")
    elif not has_function and not has_hypermodel:
        problems.append("$: give exactly one of `function` (a plain Python function) and "
                        "`hypermodel` (a KerasTuner build_model), got neither")
    if has_function and "space" not in document:
        problems.append("space: required with `function` (a plain function declares no search space)")
    if has_hypermodel and "data" not in document:
        problems.append("data: required with `hypermodel` (a callable returning the fit arguments, "
                        "e.g. {\"x\": x, \"y\": y}, or a tuple (x, y))")
    if has_function and not has_hypermodel:
        if "data" in document:
            problems.append("data: only used with `hypermodel`; a `function` is called with the parameters alone")
        if document.get("fit"):
            problems.append("fit: only used with `hypermodel`; a `function` is not trained with model.fit")
    search = document.get("search", {})
    fidelity = document.get("fidelity")
    if isinstance(search, dict) and not any(line.startswith(("search", "fidelity")) for line in problems):
        try:
            _search_settings(search, None, fidelity if isinstance(fidelity, dict) else None)
        except ValueError as exc:  # rules that tie the settings together, e.g. max_trials and rounds
            problems.append(str(exc) if str(exc).startswith("fidelity.") else f"search: {exc}")
    if isinstance(fidelity, dict) and isinstance(document.get("fit"), dict) and "epochs" in document["fit"]:
        problems.append("fit.epochs: with [fidelity] a trial trains fidelity.max epochs; remove `epochs` from [fit]")
    engine = document.get("engine", DEFAULT_ENGINE)
    if isinstance(engine, str) and engine not in engine_names():
        problems.append(f"engine: must be one of {', '.join(engine_names())}, got {engine!r}")
    if document.get("storage") is not None and document.get("engine", DEFAULT_ENGINE) != "optuna":
        problems.append("storage: only used with engine = \"optuna\" (the keras-tuner engine keeps its trials "
                        "in the run folder); remove `storage` or set engine = \"optuna\"")
    if document.get("review_timeout") is not None and document.get("review", "off") == "off":
        problems.append("review_timeout: only used with review = \"each-round\"; remove it or set review")
    # TOML (and Python's JSON reader) accept nan and inf; the schema's range checks let NaN through
    # and run.json cannot record either, so every non-finite number is refused here.
    problems += [f"{schemas.json_path(where)}: must be a finite number, got {value!r}"
                 for where, value in _non_finite(document)]
    fit = document.get("fit")
    if isinstance(fit, dict):
        for key in ("x", "y"):
            if key in fit:
                problems.append(f"fit.{key}: the training data comes from `data`; remove `{key}` from [fit]")

    for key in _REFERENCE_FIELDS:
        ref = document.get(key)
        if isinstance(ref, str) and _REFERENCE.match(ref):
            missing = _missing_module(ref, base_dir)
            if missing:
                problems.append(f"{key}: {missing}")

    space = space_file = None
    if isinstance(document.get("space"), str) and document["space"]:
        space_file = base_dir / document["space"]
        try:
            space = _load_space(space_file)
        except ValidationError as exc:
            problems += [f"space: {exc.source}: {line}" if exc.source else f"space: {line}" for line in exc.problems]
    return sorted(set(problems), key=problems.index), space, space_file


def _non_finite(value: Any, where: tuple = ()) -> Iterable[tuple[tuple, float]]:
    if isinstance(value, float) and not math.isfinite(value):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, (*where, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _non_finite(item, (*where, i))


def _friendlier(line: str, document: Any) -> str:
    # jsonschema's "does not match '<regex>'" tells the user the regex, not the rule.
    path, _, message = line.partition(": ")
    if path == "search.seed":  # anyOf's "not valid under any of the given schemas" names no rule
        seed = document.get("search", {}).get("seed")
        return f"search.seed: must be an integer in [0, 2**31 - 1], \"random\" or null, got {seed!r}"
    if "does not match" not in message:
        return line
    if path == "name":
        return (f"name: must be a folder name of letters, digits, '_', '.' and '-' (not starting with "
                f"'.' or '-', at most 128 characters), got {document.get('name')!r}")
    if path in _REFERENCE_FIELDS:
        return f"{path}: must be 'module.path:attribute' (e.g. 'branin:branin'), got {document.get(path)!r}"
    return line


def _missing_module(ref: str, base_dir: Path) -> str | None:
    """Why the top-level module of ``ref`` cannot be found, or None; imports nothing."""
    module = ref.partition(":")[0]
    top = module.split(".")[0]
    if top in sys.modules:
        return None
    search_path = [str(base_dir)] + sys.path
    if importlib.machinery.PathFinder.find_spec(top, search_path) is None and top not in sys.builtin_module_names:
        return f"no module named {top!r} (looked in {base_dir} and sys.path)"
    return None


def _load_space(path: Path) -> SearchSpace:
    try:
        return SearchSpace.from_json(Path(path))
    except ValidationError:
        raise
    except (ValueError, RecursionError) as exc:  # what json.loads raises besides JSONDecodeError
        raise ValidationError(f"not valid JSON ({parse_limit_reason(exc)})", source=str(path)) from None


# -- importing --------------------------------------------------------------------------------------
def resolve(ref: str, base_dir: str | Path, *, field: str = "target", source: str | None = None) -> Any:
    """Import ``"module.path:attr"`` (``attr`` may be dotted), with ``base_dir`` first on ``sys.path``.

    Raises:
        ValidationError: naming ``field`` when the reference is malformed, the module cannot be
            found or fails to import, the attribute is missing, or it is not callable.
    """
    if not isinstance(ref, str) or not _REFERENCE.match(ref):
        raise ValidationError(f"{field}: must be 'module.path:attribute' (e.g. 'branin:branin'), got {ref!r}", source=source)
    module_name, _, attr_path = ref.partition(":")
    base = str(Path(base_dir).resolve())
    # First on the path so an example next to the config wins over an installed module of that name.
    if sys.path[:1] != [base]:
        if base in sys.path:
            sys.path.remove(base)
        sys.path.insert(0, base)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ValidationError(f"{field}: no module named {exc.name!r} (looked in {base} and sys.path)",
                                  source=source) from exc
        raise ValidationError(f"{field}: importing {module_name!r} failed: {exc}", source=source) from exc
    except Exception as exc:  # the user's module raised: say which module, keep the cause chained
        raise ValidationError(f"{field}: importing {module_name!r} failed: {type(exc).__name__}: {exc}",
                              source=source) from exc
    target: Any = module
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValidationError(f"{field}: module {module_name!r} has no attribute {attr_path!r}", source=source) from None
    if not callable(target):
        raise ValidationError(f"{field}: {ref!r} must be callable, got {type(target).__name__}", source=source)
    return target
