"""Hundreds of generated invalid documents: `refiner validate` and the loaders answer each one with
exit code 2 and lines naming a path and a rule, never a traceback, and leave a run folder untouched."""

from __future__ import annotations

import copy
import json
import math

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from strategies import search_spaces

from refiner.cli import main
from refiner.errors import ValidationError
from refiner.space import SearchSpace
from refiner.validate import validate_file

NASTY = st.one_of(
    st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
KEYS = ["name", "type", "low", "high", "log", "step", "values", "ordered", "value", "conditions", "bogus"]


@st.composite
def broken_space_documents(draw: st.DrawFn) -> dict:
    """A valid space document with one to three deliberate breakages."""
    document = draw(search_spaces(min_parameters=1, max_parameters=4)).to_dict()
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["set", "delete", "swap", "duplicate", "type", "version", "condition"]))
        params = document["parameters"]
        p = params[draw(st.integers(0, len(params) - 1))]
        if kind == "set":
            p[draw(st.sampled_from(KEYS))] = draw(NASTY)
        elif kind == "delete" and len(p) > 1:
            p.pop(draw(st.sampled_from(sorted(p))))
        elif kind == "swap" and isinstance(p.get("low"), (int, float)) and isinstance(p.get("high"), (int, float)):
            p["low"], p["high"] = p["high"] + 1, p["low"]
        elif kind == "duplicate":
            params.append(copy.deepcopy(p))
        elif kind == "type":
            p["type"] = draw(st.sampled_from(["float", "int", "choice", "boolean", "fixed", "categorical"]))
        elif kind == "version":
            document["format_version"] = draw(NASTY)
        else:
            p["conditions"] = [{"parent": draw(st.text(min_size=1, max_size=4)), "values": [draw(NASTY)]}]
    return document


def _is_valid(document) -> bool:
    try:
        SearchSpace.from_dict(json.loads(json.dumps(document)))
        return True
    except ValidationError:
        return False


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(broken_space_documents())
def test_invalid_space_documents_get_path_and_rule_never_a_traceback(tmp_path_factory, document):
    path = tmp_path_factory.mktemp("bad") / "space.json"
    # NaN and Infinity are not JSON; Python's writer emits them anyway, as a hand-edited file might.
    path.write_text(json.dumps(document, allow_nan=True))
    problems = validate_file(path)
    has_non_finite = any(isinstance(v, float) and not math.isfinite(v) for v in _scalars(document))
    if not problems:
        assert not has_non_finite and _is_valid(document)  # a breakage may cancel out (e.g. ordered=True)
    # Count only documents that really are invalid towards the 500 examples.
    assume(problems)
    for line in problems:
        assert "Traceback" not in line and "\n" not in line
        head = line.split(":", 1)[0]
        assert head.startswith(("$", "parameters", "format_version", "line ")), line


def _scalars(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _scalars(v)
    elif isinstance(value, list):
        for v in value:
            yield from _scalars(v)
    else:
        yield value


# capsys is read (and so emptied) in every example, which makes sharing it across examples safe.
@settings(max_examples=60, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(broken_space_documents())
def test_cli_validate_exits_2_with_one_line_per_problem(tmp_path_factory, capsys, document):
    path = tmp_path_factory.mktemp("cli") / "space.json"
    path.write_text(json.dumps(document, allow_nan=True))
    expected = validate_file(path)
    code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    if expected:
        assert code == 2 and "Traceback" not in err
        assert err.strip().splitlines() == [f"{path}: {line}" for line in expected]
    else:
        assert code == 0


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_garbage_text_is_reported_with_its_position(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("garbage") / "space.json"
    path.write_text(text)
    problems = validate_file(path)
    try:
        json.loads(text)
    except ValueError:
        assert len(problems) == 1 and "line " in problems[0] and "column" in problems[0]
