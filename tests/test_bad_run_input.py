"""Hundreds of generated invalid run configs and override files (the space documents are in
test_bad_input.py): the loaders, `refiner validate` and `refiner run` answer each with lines naming
the setting or JSON path and the rule, exit code 2, never a traceback, and a refused resume leaves
every file of the run folder as it was.

Each document is a valid one with one to three deliberate breakages of a kind that is invalid
whatever else the document holds (unknown keys, wrong types, NaN/Infinity, huge numbers, import
paths that do not exist, out-of-range numbers, broken cross-field rules, unparsable text); every
breakage records the setting it broke, and a problem line must name it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli_processes import run_cli
from refiner.check import check_run
from refiner.cli import main
from refiner.config import load_run_config
from refiner.errors import RunFolderError, ValidationError
from refiner.overrides import override_problems, stored_override_problems
from refiner.review import load_run
from refiner.store import RunStore, is_lock_file
from refiner.validate import validate_file

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large,
                                                         HealthCheck.function_scoped_fixture]}
MANY_DIGITS = "9" * 5000  # over Python's 4300-digit limit for int(): json and tomllib raise ValueError


# -- writing TOML (tomllib reads only) -----------------------------------------------------------------
class Raw(str):
    """A TOML literal written as it is (a date-time, which JSON cannot hold)."""


def _toml_string(s: str) -> str:
    # JSON's escapes are TOML's basic-string escapes; TOML also wants DEL escaped.
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(v: Any) -> str:
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_string(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def to_toml(document: dict) -> str:
    lines = [f"{_toml_string(str(k))} = {_toml_value(v)}" for k, v in document.items() if not isinstance(v, dict)]
    for k, v in document.items():
        if isinstance(v, dict):
            lines.append(f"[{_toml_string(str(k))}]")
            lines += [f"{_toml_string(str(kk))} = {_toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def to_json(document: dict) -> str:
    return json.dumps(document, allow_nan=True, default=str)  # NaN/Infinity as a hand-edited file might


# -- the project a config points at --------------------------------------------------------------------
OBJECTIVE_PY = '''
def loss(params):
    return (params["x1"] - 1.0) ** 2 + (params["x2"] - 2.0) ** 2
'''
MODEL_PY = '''
def build_model(hp):
    raise RuntimeError("never built by these tests")

def load_data():
    return {}
'''
BAD_SPACE = {"format_version": 1, "parameters": [{"name": "x1", "type": "float", "low": 2.0, "high": 1.0}]}

FUNCTION_CONFIG = {
    "name": "demo", "directory": "runs", "function": "objective:loss", "space": "space.json",
    "engine": "keras-tuner",
    "objective": {"name": "loss", "direction": "min"},
    "search": {"rounds": 2, "trials_per_round": 4, "executions_per_trial": 1, "seed": 0},
    "narrowing": {"min_trials": 3, "min_cv_score": 0.0, "top_fraction": 0.2, "margin": 0.1, "min_width": 0.1,
                  "n_candidates": 200},
}
HYPERMODEL_CONFIG = {
    "name": "tiny.cnn-1", "hypermodel": "tinymodel:build_model", "data": "tinymodel:load_data",
    "objective": {"name": "val_accuracy", "direction": "max"},
    "search": {"rounds": 1, "trials_per_round": 2, "seed": 7},
    "fit": {"epochs": 1, "validation_split": 0.25, "batch_size": 64, "shuffle": True},
}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("project")
    (folder / "objective.py").write_text(OBJECTIVE_PY)
    (folder / "tinymodel.py").write_text(MODEL_PY)
    (folder / "space.json").write_text((EXAMPLES / "branin_space.json").read_text())
    (folder / "bad_space.json").write_text(json.dumps(BAD_SPACE))
    for i, base in enumerate((FUNCTION_CONFIG, HYPERMODEL_CONFIG)):
        for fmt, text in (("toml", to_toml(base)), ("json", to_json(base))):
            path = folder / f"base{i}.{fmt}"
            path.write_text(text)
            assert validate_file(path) == [], path  # the documents the breakages start from are valid
    return folder


# -- breaking a run config -----------------------------------------------------------------------------
TOP = ["name", "directory", "function", "hypermodel", "space", "data", "engine", "storage", "objective",
       "search", "fit", "narrowing"]
TABLE_KEYS = {
    (): set(TOP), ("objective",): {"name", "direction"},
    ("search",): {"rounds", "trials_per_round", "executions_per_trial", "seed"},
    ("narrowing",): {"min_trials", "min_cv_score", "top_fraction", "margin", "min_width", "n_candidates"},
}
INT_SETTINGS = {("search", "rounds"): (1, 1000), ("search", "trials_per_round"): (1, 10**6),
                ("search", "executions_per_trial"): (1, 1000), ("search", "seed"): (0, 2**31 - 1),
                ("narrowing", "min_trials"): (1, 10**9), ("narrowing", "n_candidates"): (10, 10**6)}
FLOAT_SETTINGS = {("narrowing", "min_cv_score"): (-1.0, 1.0), ("narrowing", "top_fraction"): (0.0, 1.0),
                  ("narrowing", "margin"): (0.0, 1.0), ("narrowing", "min_width"): (0.0, 1.0)}
STRING_SETTINGS = [("name",), ("directory",), ("space",), ("storage",), ("objective", "name")]
REFERENCES = [("function",), ("hypermodel",), ("data",)]
ENUMS = {("engine",): {"keras-tuner", "optuna"}, ("objective", "direction"): {"min", "max"}}
TABLES = [("objective",), ("search",), ("fit",), ("narrowing",)]

keys = st.text(min_size=1, max_size=8)
some_text = st.text(max_size=8)
fractional = st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer())
lists = st.lists(st.integers(-5, 5), max_size=3)
tables = st.dictionaries(st.text("abc", min_size=1, max_size=3), st.integers(), max_size=2)
datetimes = st.sampled_from([Raw("1979-05-27T07:32:00Z"), Raw("1979-05-27"), Raw("07:32:00")])
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])


def _wrong_type(path: tuple, toml: bool) -> st.SearchStrategy:
    not_string = [st.integers(), st.floats(allow_nan=False), st.booleans(), lists, tables]
    if toml:
        not_string.append(datetimes)
    if path in INT_SETTINGS:
        return st.one_of(some_text, st.booleans(), fractional, lists, tables)
    if path in FLOAT_SETTINGS:
        return st.one_of(some_text, st.booleans(), lists, tables)
    if path in TABLES:
        return st.one_of(some_text, st.integers(), st.booleans(), lists)
    return st.one_of(*not_string)


def _get(document: dict, path: tuple) -> dict | None:
    """The table holding ``path``'s last key, or None when a breakage already replaced a table."""
    table: Any = document
    for key in path[:-1]:
        table = table.get(key) if isinstance(table, dict) else None
    return table if isinstance(table, dict) else None


def _set(document: dict, path: tuple, value: Any) -> bool:
    parent = path[:-1]
    if parent and parent[0] not in document:
        document[parent[0]] = {}
    table = _get(document, path)
    if table is None:
        return False
    table[path[-1]] = value
    return True


def _name(path: tuple) -> str:
    return ".".join(path)


@st.composite
def broken_configs(draw: st.DrawFn) -> tuple[dict, str, list[str], list[str]]:
    """(document, "toml"|"json", names that problem lines must mention, breakage kinds)."""
    fmt = draw(st.sampled_from(["toml", "toml", "json"]))
    base = draw(st.sampled_from([FUNCTION_CONFIG, HYPERMODEL_CONFIG]))
    document = copy.deepcopy(base)
    toml = fmt == "toml"
    mentions: list[str] = []
    kinds: list[str] = []
    touched: set[str] = set()  # tables an earlier breakage changed something inside
    broken: set[tuple] = set()  # settings an earlier breakage changed

    def replaces_touched(path: tuple) -> bool:
        # Replacing or deleting a whole table would hide an earlier breakage inside it.
        return len(path) == 1 and path[0] in touched

    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["unknown_key", "wrong_type", "non_finite", "huge", "out_of_range",
                                     "bad_reference", "missing", "rule", "bad_space"]))
        if kind == "unknown_key":
            table_path = draw(st.sampled_from(sorted(TABLE_KEYS)))
            allowed = TABLE_KEYS[table_path] | ({"parameters", "format_version", "overrides", "round"}
                                                if not toml and not table_path else set())
            key = draw(keys.filter(lambda k, allowed=allowed: k not in allowed))
            if not _set(document, (*table_path, key), draw(st.one_of(st.integers(), some_text))):
                continue
            mention = repr(key)
        elif kind == "wrong_type":
            path = draw(st.sampled_from(list(INT_SETTINGS) + list(FLOAT_SETTINGS) + STRING_SETTINGS + REFERENCES
                                        + list(ENUMS) + TABLES))
            if replaces_touched(path) or not _set(document, path, draw(_wrong_type(path, toml))):
                continue
            mention = _name(path)
        elif kind == "non_finite":
            fit_key = draw(st.sampled_from(["epochs", "validation_split", "new"]))
            path = draw(st.sampled_from(list(INT_SETTINGS) + list(FLOAT_SETTINGS) + [("fit", fit_key)]))
            value = draw(non_finite)
            if draw(st.booleans()) and path[0] == "fit":
                value = [1, {"deep": value}]  # NaN hidden inside a fit value
            if not _set(document, path, value):
                continue
            mention = _name(path)
        elif kind == "huge":
            path = draw(st.sampled_from(list(INT_SETTINGS) + list(FLOAT_SETTINGS)))
            if path in INT_SETTINGS:
                low, high = INT_SETTINGS[path]
                big = draw(st.sampled_from([high + 1, 2**31, 2**32, 2**63, 10**30, 10**400]))
                value = big if draw(st.booleans()) else -big
            else:
                value = draw(st.sampled_from([1e300, -1e300, 1.7976931348623157e308, 10**400]))
            if not _set(document, path, value):
                continue
            mention = _name(path)
        elif kind == "out_of_range":
            choice = draw(st.sampled_from(["int", "float", "string", "enum"]))
            if choice == "int":
                path = draw(st.sampled_from(sorted(INT_SETTINGS)))
                low, high = INT_SETTINGS[path]
                value = draw(st.one_of(st.integers(max_value=low - 1), st.integers(min_value=high + 1)))
            elif choice == "float":
                path = draw(st.sampled_from(sorted(FLOAT_SETTINGS)))
                low, high = FLOAT_SETTINGS[path]
                exclusive = path in {("narrowing", "top_fraction"), ("narrowing", "min_width")}
                below = st.floats(max_value=low, allow_nan=False, allow_infinity=False).filter(
                    lambda v, low=low, exclusive=exclusive: v <= low if exclusive else v < low)
                above = st.floats(min_value=high, allow_nan=False, allow_infinity=False).filter(
                    lambda v, high=high: v > high)
                value = draw(st.one_of(below, above))
            elif choice == "string":
                path = draw(st.sampled_from([("name",), ("directory",), ("space",), ("objective", "name")]))
                value = "" if path != ("name",) else draw(st.sampled_from(
                    ["", ".hidden", "-x", "a/b", "..", "a b", "x" * 129, "é"]))
            else:
                path = draw(st.sampled_from(sorted(ENUMS)))
                value = draw(some_text.filter(lambda v, path=path: v not in ENUMS[path]))
            if not _set(document, path, value):
                continue
            mention = _name(path)
        elif kind == "bad_reference":
            present = [p for p in REFERENCES if p[0] in document]
            if not present:
                continue
            path = draw(st.sampled_from(present))
            value = draw(st.one_of(
                st.sampled_from(["", "objective", "objective:", ":loss", "a:b:c", "1mod:f", "mod-x:f", "mod:f()",
                                 "os.path", " objective:loss"]),
                st.from_regex(r"\Anosuch_[a-z0-9]{4}(\.[a-z]{1,3})?:[a-z_]{1,5}\Z"),  # no such module
            ))
            document[path[0]] = value
            mention = _name(path)
        elif kind == "missing":
            path = draw(st.sampled_from([("name",), ("objective",), ("objective", "name"), ("objective", "direction"),
                                         ("function",) if "function" in base else ("hypermodel",),
                                         ("space",) if "space" in base else ("data",)]))
            table = _get(document, path)
            if table is None or path[-1] not in table or replaces_touched(path) or path in broken:
                continue
            pair = {"function", "hypermodel", "space", "data"}
            if path[-1] in pair and (pair & set(mentions) or "rule" in kinds or "bad_space" in kinds):
                continue  # with the target gone, a missing space or data file is no longer asked for
            del table[path[-1]]
            mention = path[-1]
        elif kind == "rule":
            rule = draw(st.sampled_from(["both", "data_with_function", "fit_with_function", "fit_xy", "storage"]))
            if rule == "both":
                if "rule" in kinds or {"function", "hypermodel"} & set(mentions):
                    # adding the other target would make an earlier breakage legal
                    continue
                document["hypermodel" if "function" in document else "function"] = "objective:loss"
                mention = "hypermodel"
            elif rule in ("data_with_function", "fit_with_function"):
                key = "data" if rule == "data_with_function" else "fit"
                if "function" not in document or "hypermodel" in document or key in document:
                    continue
                document[key] = "tinymodel:load_data" if key == "data" else {"epochs": 1}
                mention = key
            elif rule == "fit_xy":
                if "hypermodel" not in document or not isinstance(document.get("fit"), dict):
                    continue
                key = draw(st.sampled_from(["x", "y"]))
                document["fit"][key] = [1, 2]
                mention = f"fit.{key}"
                touched.add("fit")
            else:
                if document.get("engine", "keras-tuner") == "optuna":
                    continue
                document["storage"] = "sqlite:///study.db"
                mention = "storage"
        else:  # bad_space
            if "function" not in base or "function" not in document:
                continue
            document["space"] = draw(st.sampled_from(["bad_space.json", "missing.json", "objective.py"]))
            mention = "space"
        mentions.append(mention)
        kinds.append(kind)
        if kind in ("wrong_type", "non_finite", "huge", "out_of_range", "missing", "bad_reference"):
            broken.add(path)
            if len(path) > 1:
                touched.add(path[0])
        elif kind == "unknown_key" and table_path:
            touched.add(table_path[0])
    if not kinds:  # every breakage was skipped: break it the simple way
        document["bogus"] = 1
        mentions.append("'bogus'")
        kinds.append("unknown_key")
    return document, fmt, mentions, kinds


@st.composite
def broken_config_texts(draw: st.DrawFn) -> tuple[bytes, str, str]:
    """(file bytes, "toml"|"json", what the breakage was) for breakages of the text itself."""
    fmt = draw(st.sampled_from(["toml", "json"]))
    text = to_toml(FUNCTION_CONFIG) if fmt == "toml" else to_json(FUNCTION_CONFIG)
    kind = draw(st.sampled_from(["truncate", "garbage", "many_digits", "not_utf8", "duplicate", "deep"]))
    if kind == "truncate":  # a strict prefix of a JSON object never parses; a TOML prefix may, so JSON only
        text = to_json(FUNCTION_CONFIG)
        fmt = "json"
        text = text[: draw(st.integers(1, len(text) - 1))]
    elif kind == "garbage":
        lines = text.splitlines()
        at = draw(st.integers(0, len(lines)))
        lines.insert(at, draw(st.sampled_from(["= 3", "[[", "name = ", "{", "x = [1,", "\"a\" = 1 2", "}}"])))
        text = "\n".join(lines) + "\n"
    elif kind == "many_digits":
        text = text.replace("200", MANY_DIGITS, 1)
    elif kind == "duplicate" and fmt == "toml":
        text = '"name" = "again"\n' + text
    elif kind == "deep":
        depth = draw(st.integers(5000, 20000))
        text = text.replace("200", "[" * depth + "]" * depth, 1)
    else:
        kind = "not_utf8"
        return text.encode() + b"\xff\xfe\n", fmt, kind
    return text.encode(), fmt, kind


# -- what every answer must look like ------------------------------------------------------------------
_SETTING = "|".join(re.escape(k) for k in TOP)
CONFIG_LINE = re.compile(rf"^(\$|line \d+ column \d+|end of file|cannot read the file|not valid (JSON|TOML)|"
                         rf"({_SETTING})([.\[]|:))")


def _check_config_lines(problems: list[str]) -> None:
    assert problems
    for line in problems:
        assert "Traceback" not in line and "\n" not in line, line
        assert CONFIG_LINE.match(line), f"names no setting or JSON path: {line!r}"


def _mentioned(problems: list[str], mention: str) -> bool:
    for line in problems:
        head = line.split(": ", 1)[0]
        if head == mention or head.startswith((mention + ".", mention + "[")) or mention in line:
            return True
        # The object that holds the field, with the field quoted: "overrides[2]: 'name' is a required
        # property" names overrides[2].name (a later mutation can leave a copied entry without it).
        if mention.startswith((head + ".", head + "[")):
            field = mention[len(head):].lstrip(".").split(".")[0].split("[")[0]
            if field and f"'{field}' is a required property" in line:
                return True
    return False


@settings(max_examples=300, **SETTINGS)
@given(case=broken_configs())
def test_invalid_run_configs_get_the_setting_and_rule_never_a_traceback(project, case):
    document, fmt, mentions, kinds = case
    path = project / f"case.{fmt}"
    path.write_text(to_toml(document) if fmt == "toml" else to_json(document))
    problems = validate_file(path)
    _check_config_lines(problems)
    for mention in mentions:
        assert _mentioned(problems, mention), (kinds, mention, problems)
    with pytest.raises(ValidationError) as raised:  # the loader `refiner run` uses says the same
        load_run_config(path)
    assert raised.value.problems == problems


@settings(max_examples=60, **SETTINGS)
@given(case=broken_config_texts())
def test_unparsable_run_configs_get_one_line_with_the_position(project, case):
    data, fmt, kind = case
    path = project / f"text.{fmt}"
    path.write_bytes(data)
    problems = validate_file(path)
    assert len(problems) == 1, (kind, problems)
    _check_config_lines(problems)
    if kind in ("truncate", "garbage", "duplicate"):
        assert re.match(r"^(line \d+ column \d+|end of file): not valid (JSON|TOML) \(", problems[0]), problems


# capsys is read (and so emptied) in every example, which makes sharing it across examples safe.
@settings(max_examples=60, **SETTINGS)
@given(case=broken_configs())
def test_cli_validate_prints_one_line_per_problem_and_exits_2(project, capsys, case):
    document, fmt, _, _ = case
    path = project / f"cli.{fmt}"
    path.write_text(to_toml(document) if fmt == "toml" else to_json(document))
    expected = validate_file(path)
    code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err and out == ""
    assert err.strip().splitlines() == [f"{path}: {line}" for line in expected]


def _cli(*args: str, cwd: Path, fresh: bool = False) -> subprocess.CompletedProcess:
    """`refiner ARGS...` as its own process, forked with TensorFlow already imported (cli_processes);
    ``fresh``: a new interpreter, `python -m refiner.cli`, whose whole stderr is the command's own
    (TensorFlow's start-up lines included, were it imported before the error)."""
    return run_cli(args, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), cwd=cwd, timeout=120, fresh=fresh)


@pytest.mark.slow
@settings(max_examples=8, **SETTINGS)
@given(case=broken_configs())
def test_refiner_run_and_validate_subprocesses_exit_2_without_a_traceback(project, tmp_path_factory, case):
    document, fmt, _, _ = case
    path = project / f"sub.{fmt}"
    path.write_text(to_toml(document) if fmt == "toml" else to_json(document))
    problems = validate_file(path)
    workdir = tmp_path_factory.mktemp("cwd")
    validated = _cli("validate", str(path), cwd=workdir, fresh=True)
    assert validated.returncode == 2 and "Traceback" not in validated.stderr
    assert validated.stderr.strip().splitlines() == [f"{path}: {line}" for line in problems]
    run = _cli("run", str(path), "--run-dir", str(workdir / "run"), cwd=workdir, fresh=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-3000:]
    # `refiner run` reports the same problems as `validate`, one line each.
    assert run.stderr.strip().splitlines() == [f"refiner: error: {path}: {line}" for line in problems]
    assert not (workdir / "run").exists() and not (workdir / "runs").exists()  # nothing was created


def test_a_reference_to_a_missing_attribute_passes_validate_and_fails_run_with_exit_2(project, tmp_path):
    # `validate` imports nothing, so only `run` can find that the module lacks the attribute.
    document = copy.deepcopy(FUNCTION_CONFIG)
    document["function"] = "objective:no_such_function"
    path = project / "attr.toml"
    path.write_text(to_toml(document))
    assert validate_file(path) == []
    run = _cli("run", str(path), "--run-dir", str(tmp_path / "run"), cwd=tmp_path, fresh=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines() == [
        f"refiner: error: {path}: function: module 'objective' has no attribute 'no_such_function'"]


# -- breaking an overrides file ------------------------------------------------------------------------
X1 = {"name": "x1", "type": "float", "low": -5.0, "high": 10.0}
VALID_OVERRIDES = {"format_version": 1, "round": 0, "overrides": [
    {"name": "x1", "action": "reject", "note": "keep the whole range"},
    {"name": "x2", "action": "edit", "after": {"name": "x2", "type": "float", "low": 1.0, "high": 9.0},
     "author": "reviewer", "timestamp": "2026-01-01T00:00:00+00:00"},
]}


def _hashes(folder: Path) -> dict[str, str]:
    # The lock files are no part of the record: a refused resume takes over (and so clears) the
    # lock the killed run of `paused_run` left, as any writer after a dead holder does.
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not is_lock_file(p.name)}


@pytest.fixture(scope="module")
def paused_run(tmp_path_factory) -> tuple[Path, Path]:
    """(config, run folder) of a 2-round run killed just after round 0's decisions were written,
    so a resume applies round 0's overrides before anything else of round 1."""
    folder = tmp_path_factory.mktemp("paused")
    (folder / "objective.py").write_text(OBJECTIVE_PY)
    (folder / "space.json").write_text((EXAMPLES / "branin_space.json").read_text())
    document = copy.deepcopy(FUNCTION_CONFIG)
    document["search"] = {"rounds": 2, "trials_per_round": 6, "seed": 0}
    config = folder / "run.toml"
    config.write_text(to_toml(document))
    run_dir = folder / "run"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", REFINER_FAILPOINT="decisions_written")
    killed = run_cli(["run", config, "--run-dir", run_dir, "--quiet"], env=env, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    store = RunStore(run_dir)
    assert store.read_decisions(0) is not None and not store.has_space(1)
    assert stored_override_problems(store, 0, VALID_OVERRIDES) == []
    return config, run_dir


OVERRIDE_PATHS_INT = ["format_version", "round"]


@st.composite
def broken_overrides(draw: st.DrawFn) -> tuple[dict, list[str], list[str]]:
    """(document, paths a problem line must name, breakage kinds); one to three breakages."""
    document = copy.deepcopy(VALID_OVERRIDES)
    entries = document["overrides"]
    mentions: list[str] = []
    kinds: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["unknown_key", "wrong_type", "non_finite", "huge", "out_of_range",
                                     "unknown_name", "duplicate", "missing", "mismatch"]))
        if not isinstance(document.get("overrides"), list):
            kind = draw(st.sampled_from(["unknown_key", "huge"]))
        i = draw(st.integers(0, 1))
        entry = entries[i] if isinstance(document.get("overrides"), list) and i < len(entries) \
            and isinstance(entries[i], dict) else None
        after = entry.get("after") if entry is not None and isinstance(entry.get("after"), dict) else None
        where = f"overrides[{i}]"
        if kind == "unknown_key":
            target = draw(st.sampled_from(["root", "entry", "after"]))
            known = {"root": {"format_version", "round", "overrides"},
                     "entry": {"name", "action", "after", "note", "author", "timestamp"},
                     "after": {"name", "type", "low", "high", "log", "step", "conditions"}}[target]
            key = draw(keys.filter(lambda k, known=known: k not in known))
            table = {"root": document, "entry": entry, "after": after}[target]
            if table is None:
                continue
            table[key] = draw(st.one_of(st.integers(), some_text))
            mention = repr(key)
        elif kind == "wrong_type":
            target = draw(st.sampled_from(["format_version", "round", "overrides", "entry", "name", "action",
                                           "after", "note", "low", "high", "log", "step"]))
            wrong = draw(st.one_of(some_text, st.booleans(), fractional, lists, tables, st.none()))
            if target in ("format_version", "round"):
                document[target] = wrong
                mention = target
            elif target == "overrides":
                document["overrides"] = draw(st.one_of(some_text, st.integers(), tables, st.none()))
                mention = "overrides"
            elif target == "entry":
                if not isinstance(document.get("overrides"), list):
                    continue
                document["overrides"][i] = draw(st.one_of(some_text, st.integers(), lists, st.none()))
                mention = where
            elif target in ("name", "action", "after", "note"):
                if entry is None:
                    continue
                entry[target] = draw(st.one_of(st.integers(), st.booleans(), lists, st.none()))
                if target == "after" and entry["action"] == "reject":
                    entry["action"] = "edit"
                mention = where
            else:
                if after is None:
                    continue
                after[target] = draw(st.one_of(some_text, lists, tables)) if target != "log" else draw(
                    st.one_of(st.integers(), some_text))
                mention = f"{where}.after"
        elif kind == "non_finite":
            if after is None:
                after = {"name": "x2", "type": "float", "low": 1.0, "high": 9.0}
                if entry is None:
                    continue
                entry.update(action="edit", after=after, name=entry.get("name", "x2"))
                after["name"] = entry["name"] if isinstance(entry["name"], str) else "x2"
            after[draw(st.sampled_from(["low", "high", "step"]))] = draw(non_finite)
            mention = f"{where}.after"
        elif kind == "huge":
            target = draw(st.sampled_from(["format_version", "round", "low", "high", "step"]))
            if target in ("format_version", "round"):
                big = draw(st.sampled_from([2**63, 10**30, 10**400]))
                document[target] = big if draw(st.booleans()) else -big
                mention = target
            else:  # a bound beyond any 64-bit float (a smaller huge bound is a valid, if odd, range)
                if after is None:
                    continue
                after[target] = -(10**400) if target == "low" else 10**400
                mention = f"{where}.after"
        elif kind == "out_of_range":
            target = draw(st.sampled_from(["swap", "log", "step", "round", "version", "action", "type"]))
            if target == "round":
                document["round"] = draw(st.one_of(st.integers(max_value=-1), st.integers(1, 10**6)))
                mention = "round"
            elif target == "version":
                document["format_version"] = draw(st.integers().filter(lambda v: v != 1))
                mention = "format_version"
            elif target == "action":
                if entry is None:
                    continue
                entry["action"] = draw(some_text.filter(lambda a: a not in ("reject", "edit")))
                mention = where
            else:
                if after is None:
                    continue
                if target == "swap":
                    after["low"], after["high"] = 9.0, 1.0
                elif target == "log":
                    after["log"], after["low"] = True, draw(st.floats(-1e6, 0.0))
                elif target == "step":
                    after["step"] = draw(st.floats(-1e6, 0.0))
                else:
                    after["type"] = draw(st.sampled_from(["choice", "fixed", "categorical", "", "Float"]))
                mention = f"{where}.after"
        elif kind == "unknown_name":
            if entry is None:
                continue
            entry["name"] = draw(st.text(min_size=1, max_size=8).filter(lambda n: n not in ("x1", "x2")))
            if isinstance(entry.get("after"), dict):
                entry["after"]["name"] = entry["name"]
            mention = f"{where}.name"
        elif kind == "duplicate":
            if not isinstance(document.get("overrides"), list) or entry is None:
                continue
            document["overrides"].append(copy.deepcopy(entry))
            mention = f"overrides[{len(document['overrides']) - 1}].name"
        elif kind == "missing":
            target = draw(st.sampled_from(["format_version", "round", "overrides", "name", "action", "after",
                                           "after.name", "after.type", "after.low"]))
            if "." not in target and target in document:
                del document[target]
                mention = f"'{target}'"
            elif target in ("name", "action") and entry is not None and target in entry:
                del entry[target]
                mention = where
            elif target == "after" and entry is not None:
                entry["action"] = "edit"
                entry.pop("after", None)
                mention = where
            elif target.startswith("after.") and after is not None and target[6:] in after:
                del after[target[6:]]
                mention = f"{where}.after"
            else:
                continue
        else:  # mismatch: the edited parameter is given under another name
            if after is None:
                continue
            after["name"] = "x1" if entry.get("name") != "x1" else "x2"
            mention = f"{where}.after.name"
        mentions.append(mention)
        kinds.append(kind)
    if not kinds:
        document["bogus"] = True
        mentions.append("'bogus'")
        kinds.append("unknown_key")
    return document, mentions, kinds


OVERRIDE_LINE = re.compile(r"^(\$|round|format_version|overrides|next space|line \d+ column \d+)([.\[]|:)")


def _check_override_lines(problems: list[str], mentions: list[str], kinds: list[str]) -> None:
    assert problems, (kinds, mentions)
    for line in problems:
        assert "Traceback" not in line and "\n" not in line, line
        assert OVERRIDE_LINE.match(line), f"names no JSON path: {line!r}"
    # Schema problems are reported before the rules that need a well-formed document, so with
    # several breakages one at least is named; with one breakage, that one.
    named = [m for m in mentions if _mentioned(problems, m)]
    assert named if len(mentions) > 1 else len(named) == 1, (kinds, mentions, problems)


@settings(max_examples=200, **SETTINGS)
@given(case=broken_overrides())
def test_invalid_overrides_are_refused_by_every_reader_and_leave_the_run_untouched(paused_run, tmp_path_factory,
                                                                                    case):
    document, mentions, kinds = case
    _, original = paused_run
    run_dir = tmp_path_factory.mktemp("o") / "run"
    shutil.copytree(original, run_dir)
    store = RunStore(run_dir)
    path = store.round_dir(0) / "overrides.json"
    path.write_text(to_json(document))
    before = _hashes(run_dir)

    decisions = store.read_decisions(0)
    problems = override_problems(decisions, json.loads(path.read_text()))  # the app's check before it writes
    _check_override_lines(problems, mentions, kinds)
    assert validate_file(path) == problems  # `refiner validate rounds/0/overrides.json`
    with pytest.raises(RunFolderError) as raised:  # what a resume runs before it writes anything
        check_run(store)
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    with pytest.raises(RunFolderError, match=re.escape(str(path))):  # the review app's loader
        load_run(run_dir.parent, run_dir.name)
    assert _hashes(run_dir) == before


@pytest.mark.slow
@settings(max_examples=8, **SETTINGS)
@given(case=broken_overrides())
def test_resume_with_invalid_overrides_exits_2_and_modifies_nothing(paused_run, tmp_path_factory, case):
    document, _, _ = case
    config, original = paused_run
    run_dir = tmp_path_factory.mktemp("resume") / "run"
    shutil.copytree(original, run_dir)
    path = RunStore(run_dir).round_dir(0) / "overrides.json"
    path.write_text(to_json(document))
    before = _hashes(run_dir)
    validated = _cli("validate", str(path), cwd=run_dir.parent)
    assert validated.returncode == 2 and "Traceback" not in validated.stderr
    assert validated.stderr.strip().splitlines() == [f"{path}: {line}" for line in validate_file(path)]
    resumed = _cli("run", str(config), "--run-dir", str(run_dir), "--quiet", cwd=run_dir.parent)
    assert resumed.returncode == 2 and "Traceback" not in resumed.stderr, resumed.stderr[-3000:]
    lines = resumed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"refiner: error: {path}: "), lines
    assert _hashes(run_dir) == before


def test_valid_overrides_still_resume_and_apply(paused_run, tmp_path):
    _, original = paused_run
    run_dir = tmp_path / "run"
    shutil.copytree(original, run_dir)
    store = RunStore(run_dir)
    (store.round_dir(0) / "overrides.json").write_text(json.dumps(VALID_OVERRIDES))
    assert validate_file(store.round_dir(0) / "overrides.json") == []
    check_run(store)
    view = load_run(tmp_path, "run")
    assert view.round(0).decision("x2")["after"] == VALID_OVERRIDES["overrides"][1]["after"]
    assert view.round(0).decision("x1")["after"] == X1

