"""refiner.space: validation messages, contains / sample / snap, JSON loading.

The last block pins edge cases that review found broken in ``space.py`` and that are now fixed.
When one is fixed the test XPASSes, fails the suite, and the marker should go.
"""

from __future__ import annotations

import copy
import json
import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import float_params, identical, int_params, search_spaces

from refiner.errors import ValidationError
from refiner.space import Boolean, Choice, Condition, Fixed, Float, Int, SearchSpace

PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# "<json path>: <rule>", the path being $ or format_version or parameters[i].field[j].field...
PROBLEM_LINE = re.compile(r"^(\$|format_version|parameters(\[\d+\](\.[a-z_]+(\[\d+\])?)*)?): \S[^\n]*$")


def base_document() -> dict:
    return {
        "format_version": 1,
        "parameters": [
            {"name": "lr", "type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            {"name": "units", "type": "int", "low": 32, "high": 256, "step": 32},
            {"name": "act", "type": "choice", "values": ["relu", "tanh"]},
            {"name": "use_dropout", "type": "boolean"},
            {"name": "dropout", "type": "float", "low": 0.0, "high": 0.5,
             "conditions": [{"parent": "use_dropout", "values": [True]}]},
            {"name": "batch", "type": "fixed", "value": 32},
        ],
    }


def problems_of(document) -> list[str]:
    with pytest.raises(ValidationError) as info:
        SearchSpace.from_dict(document)
    found = info.value.problems
    assert found, "a ValidationError must carry at least one problem"
    for line in found:
        assert PROBLEM_LINE.match(line), f"not a one-line '<json path>: <rule>' problem: {line!r}"
    return found


def test_base_document_is_valid():
    space = SearchSpace.from_dict(base_document())
    assert space.names == ["lr", "units", "act", "use_dropout", "dropout", "batch"]


def _set(path, value):
    def mutate(doc):
        target = doc
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
    return mutate


def _delete(path):
    def mutate(doc):
        target = doc
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]
    return mutate


# (mutation, the problem line expected, as a regex)
BAD_DOCUMENTS = {
    "low above high": (_set(["parameters", 0, "high"], 1e-5), r"^parameters\[0\]: `low` must not exceed `high` for 'lr', got low=0\.0001, high=1e-05$"),
    "log needs positive low": (_set(["parameters", 4, "log"], True), r"^parameters\[4\]: `low` must be positive when `log` is true for 'dropout', got low=0\.0$"),
    "step must divide": (_set(["parameters", 1, "step"], 100), r"^parameters\[1\]: `high - low` must be a multiple of `step` for 'units'"),
    "int step is an integer": (_set(["parameters", 1, "step"], 2.5), r"^parameters\[1\]\.step: 2\.5 is not of type 'integer'$"),
    "int bounds are integers": (_set(["parameters", 1, "low"], 1.5), r"^parameters\[1\]\.low: 1\.5 is not of type 'integer'$"),
    "float step positive": (_set(["parameters", 4, "step"], 0), r"^parameters\[4\]\.step: 0 is less than or equal to the minimum of 0$"),
    "step with log": (_set(["parameters", 0, "step"], 0.001), r"^parameters\[0\]: `step` cannot be combined with `log` for 'lr'"),
    "float bound type": (_set(["parameters", 0, "low"], "small"), r"^parameters\[0\]\.low: 'small' is not of type 'number'$"),
    "missing high": (_delete(["parameters", 0, "high"]), r"^parameters\[0\]: 'high' is a required property$"),
    "typo'd key": (_set(["parameters", 2, "valuez"], ["x"]), r"^parameters\[2\]: Additional properties are not allowed \('valuez' was unexpected\)$"),
    "unknown type": (_set(["parameters", 3, "type"], "bool"), r"^parameters\[3\]\.type: 'bool' is not one of"),
    "empty choice": (_set(["parameters", 2, "values"], []), r"^parameters\[2\]\.values: \[\] should be non-empty$"),
    "mixed choice": (_set(["parameters", 2, "values"], ["relu", 3]), r"^parameters\[2\]: `values` must all be of one type .* got \['relu', 3\]$"),
    "repeated choice": (_set(["parameters", 2, "values"], ["relu", "relu"]), r"^parameters\[2\]\.values: \['relu', 'relu'\] has non-unique elements$"),
    "fixed needs value": (_delete(["parameters", 5, "value"]), r"^parameters\[5\]: 'value' is a required property$"),
    "fixed value type": (_set(["parameters", 5, "value"], None), r"^parameters\[5\]\.value: None is not of type 'string', 'number', 'boolean'$"),
    "duplicate name": (_set(["parameters", 1, "name"], "lr"), r"^parameters\[1\]\.name: must be unique, 'lr' appears twice$"),
    "empty name": (_set(["parameters", 1, "name"], ""), r"^parameters\[1\]\.name: '' should be non-empty$"),
    "unknown parent": (_set(["parameters", 4, "conditions", 0, "parent"], "nope"), r"^parameters\[4\]\.conditions\[0\]\.parent: must name a parameter declared earlier, got 'nope'$"),
    "numeric parent": (_set(["parameters", 4, "conditions", 0, "parent"], "units"), r"^parameters\[4\]\.conditions\[0\]\.parent: must be a choice, boolean or fixed parameter, 'units' is int$"),
    "impossible parent value": (_set(["parameters", 4, "conditions", 0, "values"], [1]), r"^parameters\[4\]\.conditions\[0\]\.values: must be values 'use_dropout' can take, got \[1\]$"),
    "empty condition values": (_set(["parameters", 4, "conditions", 0, "values"], []), r"^parameters\[4\]\.conditions\[0\]\.values: \[\] should be non-empty$"),
    "format version": (_set(["format_version"], 2), r"^format_version: 1 was expected$"),
    "top-level typo": (_set(["paramters"], []), r"^\$: Additional properties are not allowed \('paramters' was unexpected\)$"),
    "not an object": (lambda doc: None, None),
}


@pytest.mark.parametrize("case", sorted(BAD_DOCUMENTS))
def test_bad_documents_give_one_line_per_rule_with_the_json_path(case):
    mutate, expected = BAD_DOCUMENTS[case]
    if expected is None:  # the document is not an object at all
        assert problems_of(["parameters"]) == ["$: ['parameters'] is not of type 'object'"]
        return
    document = base_document()
    mutate(document)
    found = problems_of(document)
    assert any(re.search(expected, line) for line in found), found


def test_every_broken_rule_is_reported_at_once():
    document = base_document()
    document["parameters"][0]["low"] = "small"
    document["parameters"][2]["ordered"] = "yes"
    document["extra"] = 1
    found = problems_of(document)
    assert len(found) == 3
    assert [line.split(":")[0] for line in found] == ["$", "parameters[0].low", "parameters[2].ordered"]


def test_constructor_rules_name_the_parameter_and_the_value_received():
    with pytest.raises(ValueError, match=r"`low` must not exceed `high` for 'x', got low=2\.0, high=1\.0"):
        Float("x", 2.0, 1.0)
    with pytest.raises(ValueError, match=r"`step` must be a positive integer for 'n', got 0"):
        Int("n", 0, 10, step=0)
    with pytest.raises(ValueError, match=r"`low` must be an integer for 'n', got 0\.5"):
        Int("n", 0.5, 10)
    with pytest.raises(ValueError, match=r"`values` must be unique for 'c'"):
        Choice("c", (1, 1))
    with pytest.raises(ValueError, match=r"`value` must be a str, int, float or bool for 'f', got None"):
        Fixed("f", None)
    with pytest.raises(ValueError, match=r"string of 1 to 200 characters, got ''"):
        Boolean("")
    with pytest.raises(ValidationError) as info:
        SearchSpace([Float("c", 0, 1, conditions=[Condition("b", (True,))]), Boolean("b")])
    assert info.value.problems == ["parameters[0].conditions[0].parent: must name a parameter declared earlier, got 'b'"]


# A small JSON value, and mutations that break documents in random places.
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=4)
    # |x| <= 1e300: wider ranges overflow (see test_range_wider_than_a_float_is_a_validation_error)
    | st.floats(-1e300, 1e300, allow_nan=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def _locations(node, path=()):
    yield path
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _locations(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _locations(v, path + (i,))


@PROPERTY
@given(space=search_spaces(), data=st.data())
def test_any_broken_document_raises_validation_error_with_one_line_problems(space, data):
    document = space.to_dict()
    path = data.draw(st.sampled_from([p for p in _locations(document) if p]))
    op = data.draw(st.sampled_from(["replace", "delete", "add_key", "swap"]))
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    if op == "replace":
        parent[path[-1]] = data.draw(_json_values)
    elif op == "delete":
        del parent[path[-1]]
    elif op == "add_key" and isinstance(parent, dict):
        parent[data.draw(st.text(min_size=1, max_size=5))] = data.draw(_json_values)
    elif op == "swap" and len(document["parameters"]) > 1:
        ps = document["parameters"]
        ps[0], ps[-1] = ps[-1], ps[0]
    try:
        SearchSpace.from_dict(document)
    except ValidationError as exc:
        assert exc.problems
        for line in exc.problems:
            assert PROBLEM_LINE.match(line), line


# -- contains / sample / snap -----------------------------------------------------------------------
@PROPERTY
@given(space=search_spaces(), seed=st.integers(0, 2**32 - 1))
def test_samples_are_in_the_space_with_exactly_the_active_parameters(space, seed):
    rng = np.random.default_rng(seed)
    for _ in range(5):
        config = space.sample(rng)
        assert space.contains(config)
        assert list(config) == space.active_names(config)
        for name, value in config.items():
            p = space[name]
            if isinstance(p, Int):
                assert type(value) is int
            elif isinstance(p, Float):
                assert type(value) is float
            elif isinstance(p, Boolean):
                assert type(value) is bool


def test_sampling_is_reproducible_with_a_seed():
    space = SearchSpace.from_dict(base_document())
    a = [space.sample(np.random.default_rng(7)) for _ in range(3)]
    b = [space.sample(np.random.default_rng(7)) for _ in range(3)]
    assert a == b


_any_float = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def numeric_params(draw):
    return draw(st.one_of(float_params("x"), int_params("x")))


@PROPERTY
@given(p=numeric_params(), x=_any_float)
def test_snap_gives_a_contained_value_and_is_idempotent(p, x):
    snapped = p.snap(x)
    assert p.contains(snapped), (p, x, snapped)
    assert p.low <= snapped <= p.high
    assert p.snap(snapped) == pytest.approx(snapped, rel=1e-12, abs=1e-12)
    if isinstance(p, Int):
        assert type(snapped) is int
    else:
        assert type(snapped) is float
        if p.step is None:
            assert snapped == min(max(x, p.low), p.high)


@PROPERTY
@given(p=numeric_params(), u=st.floats(0, 1))
def test_from_unit_lands_in_range_and_to_unit_inverts_it(p, u):
    value = p.from_unit(u)
    assert p.contains(value)
    back = p.to_unit(value)
    assert 0.0 <= back <= 1.0
    if isinstance(p, Float) and p.step is None and p.width > 1e-6 * max(1.0, abs(p.low), abs(p.high)):
        # (Ranges narrow next to their magnitude cannot resolve u to 1e-9 in floating point.)
        assert back == pytest.approx(u, abs=1e-9)


@PROPERTY
@given(p=numeric_params(), x=_any_float)
def test_contained_values_snap_to_themselves(p, x):
    value = p.snap(x)
    assert p.snap(value) == pytest.approx(value, rel=1e-9, abs=1e-9)
    if isinstance(p, Int):
        assert p.snap(value) == value


def test_contains_keeps_types_apart():
    assert not Float("f", 0, 2).contains(True)
    assert not Float("f", 0, 2).contains(float("nan"))
    assert not Float("f", 0, 2).contains("1")
    assert Float("f", 0, 2).contains(1)
    assert Float("f", 0, 1, step=0.25).contains(0.75) and not Float("f", 0, 1, step=0.25).contains(0.7)
    assert Int("i", 0, 10, step=2).contains(4.0) and not Int("i", 0, 10, step=2).contains(5)
    assert not Int("i", 0, 10).contains(True) and not Int("i", 0, 10).contains(4.5)
    assert Int("i", 0, 10).contains(np.int64(3))
    assert not Choice("c", (0, 1)).contains(True) and not Choice("c", (True, False)).contains(1)
    assert Choice("c", (1.0, 2.0)).contains(1) and not Choice("c", ("1",)).contains(1)
    assert Boolean("b").contains(np.bool_(True)) and not Boolean("b").contains(1)
    assert Fixed("x", 1).contains(1) and not Fixed("x", 1).contains(True)


def test_space_contains_checks_only_active_parameters():
    space = SearchSpace.from_dict(base_document())
    config = {"lr": 1e-3, "units": 64, "act": "relu", "use_dropout": False, "batch": 32}
    assert space.contains(config)
    assert space.contains({**config, "dropout": 99.0})  # inactive: not checked
    assert not space.contains({**config, "use_dropout": True})  # dropout now active and missing
    assert space.contains({**config, "use_dropout": True, "dropout": 0.25})
    assert not space.contains({**config, "units": 33})
    assert not space.contains({k: v for k, v in config.items() if k != "lr"})


def test_nested_conditions_need_the_whole_chain():
    space = SearchSpace([
        Choice("opt", ("adam", "sgd")),
        Boolean("nesterov", conditions=[Condition("opt", ("sgd",))]),
        Float("boost", 0, 1, conditions=[Condition("nesterov", (True,))]),
    ])
    assert space.active_names({"opt": "adam", "nesterov": True}) == ["opt"]
    assert space.active_names({"opt": "sgd", "nesterov": True}) == ["opt", "nesterov", "boost"]
    assert space.active_names({"opt": "sgd", "nesterov": False}) == ["opt", "nesterov"]


# -- JSON loading -----------------------------------------------------------------------------------
def test_from_json_reports_bad_text_with_line_and_column():
    with pytest.raises(ValidationError, match=r"^line 1 column 2: not valid JSON \(Expecting property name"):
        SearchSpace.from_json("{nope}")


def test_from_json_reports_a_missing_file_with_its_path(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(ValidationError) as info:
        SearchSpace.from_json(missing)
    assert str(info.value) == f"{missing}: cannot read the file (No such file or directory)"


def test_from_json_reports_a_directory(tmp_path):
    with pytest.raises(ValidationError, match="cannot read the file"):
        SearchSpace.from_json(tmp_path)


def test_from_json_reports_broken_files_with_line_column_and_path(tmp_path):
    path = tmp_path / "space.json"
    path.write_text('{\n  "format_version": 1,\n  "parameters": [,]\n}\n')
    with pytest.raises(ValidationError) as info:
        SearchSpace.from_json(path)
    assert info.value.source == str(path)
    assert info.value.problems[0].startswith("line 3 column 18: not valid JSON")
    path.write_text("")
    with pytest.raises(ValidationError, match=r"line 1 column 1: not valid JSON"):
        SearchSpace.from_json(path)


def test_from_json_reports_schema_problems_with_the_file(tmp_path):
    document = base_document()
    document["parameters"][0]["high"] = 1e-5
    path = tmp_path / "space.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ValidationError) as info:
        SearchSpace.from_json(path)
    assert str(info.value).startswith(f"{path}: parameters[0]: `low` must not exceed `high`")


def test_to_json_writes_a_file_that_loads_back(tmp_path):
    space = SearchSpace.from_dict(base_document())
    path = tmp_path / "out" / "space.json"
    path.parent.mkdir()
    text = space.to_json(path)
    assert path.read_text() == text
    assert identical(SearchSpace.from_json(path), space)


@PROPERTY
@given(search_spaces())
def test_hash_agrees_with_equality_for_identical_spaces(space):
    twin = SearchSpace.from_dict(copy.deepcopy(space.to_dict()))
    assert twin == space and hash(twin) == hash(space)


# -- edge cases found by review (each once a bug in space.py) ------------------------------------
def test_sampling_a_wide_int_range():
    space = SearchSpace([Int("seed", 0, 2**62)])
    assert space.contains(space.sample(np.random.default_rng(0)))


def test_from_json_reports_a_binary_file(tmp_path):
    path = tmp_path / "space.json"
    path.write_bytes(b"\xff\xfe{\x00")
    with pytest.raises(ValidationError, match="cannot read the file"):
        SearchSpace.from_json(path)


def test_range_wider_than_a_float_is_a_validation_error():
    with pytest.raises(ValidationError):
        SearchSpace.from_dict({"format_version": 1, "parameters": [
            {"name": "x", "type": "float", "low": -1e308, "high": 1e308, "step": 1.0}]})


def test_fixed_value_must_be_finite():
    with pytest.raises(ValueError):
        Fixed("x", float("inf"))


def test_long_names_round_trip_or_are_refused():
    try:
        space = SearchSpace([Float("x" * 201, 0.0, 1.0)])
    except ValueError:
        return
    assert SearchSpace.from_json(space.to_json()) == space


def test_float_contains_numpy_scalars():
    assert Float("x", 0.0, 1.0).contains(np.float32(0.5))
    assert Float("x", 0.0, 2.0).contains(np.int64(1))


def test_boolean_and_int_choices_are_different_spaces():
    a = SearchSpace([Choice("c", (True, False))])
    b = SearchSpace([Choice("c", (1, 0))])
    assert a != b or hash(a) == hash(b)


def test_keras_tuner_round_trip_of_a_one_value_choice():
    space = SearchSpace([Choice("units", (64,))])
    assert identical(SearchSpace.from_keras_tuner(space.to_keras_tuner()), space)


def test_keras_tuner_round_trip_of_a_boolean_choice():
    space = SearchSpace([Choice("flag", (False, True))])
    back = SearchSpace.from_keras_tuner(space.to_keras_tuner())["flag"]
    assert back.contains(True) and back.contains(False)


def test_keras_tuner_ordered_string_choice():
    SearchSpace([Choice("size", ("s", "m", "l"), ordered=True)]).to_keras_tuner()


def test_keras_tuner_conditions_on_two_independent_parents():
    space = SearchSpace([
        Boolean("a"), Boolean("b"),
        Float("c", 0.0, 1.0, conditions=[Condition("a", (True,)), Condition("b", (True,))]),
    ])
    with pytest.raises(ValidationError):
        space.to_keras_tuner()


def test_keras_tuner_condition_values_of_mixed_numeric_types():
    space = SearchSpace([Choice("a", (1.0, 2.5)), Float("c", 0.0, 1.0, conditions=[Condition("a", (1, 2.5))])])
    hp = space.to_keras_tuner()
    hp.values["a"] = 2.5
    assert hp.is_active("c")


def test_optuna_round_trip_of_a_float_step_range():
    space = SearchSpace([Float("x", 0.1, 0.1 + 3 * 0.2, step=0.2)])
    assert space["x"].high == 0.7  # stored as the decimal the user meant
    assert SearchSpace.from_optuna(space.to_optuna()) == space


def test_to_unit_of_a_log_range_one_ulp_wide():
    p = Float("x", 3695.7833927916454, 3695.783392791646, log=True)
    assert 0.0 <= p.to_unit(p.low) <= 1.0


def test_optuna_round_trip_keeps_conditions_when_given():
    space = SearchSpace.from_dict(base_document())
    conditions = {p.name: p.conditions for p in space}
    assert SearchSpace.from_optuna(space.to_optuna(), conditions) == space
    assert math.isclose(space.to_optuna()["lr"].low, 1e-4)


def test_numbers_beyond_float_range_are_a_value_error_naming_the_setting():
    from refiner.narrowing import NarrowingConfig

    for make in (lambda: Float("x", 0, 10**400), lambda: Int("n", 0, 10**400), lambda: Float("x", -1e308, 1e308)):
        with pytest.raises(ValueError, match="`(high|low)"):
            make()
    with pytest.raises(ValueError, match="min_trials"):
        NarrowingConfig.from_dict({"min_trials": 10**400})
