"""refiner.validate: one line per problem for spaces and run configs, whatever the file holds."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from refiner.validate import detect_kind, validate_file

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SPACE = {"format_version": 1, "parameters": [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}]}
CONFIG = """
    name = "demo"
    function = "json:loads"
    space = "space.json"
    [objective]
    name = "loss"
    direction = "min"
"""


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "space.json").write_text(json.dumps(SPACE))
    return tmp_path


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def test_valid_files_have_no_problems(folder):
    assert validate_file(folder / "space.json") == []
    assert validate_file(write(folder, "run.toml", CONFIG)) == []


@pytest.mark.parametrize("name", ["branin.toml", "branin_space.json", "digits_cnn.toml"])
def test_examples_are_valid(name):
    assert validate_file(EXAMPLES / name) == []


def test_space_problems_are_listed_with_json_paths(folder):
    doc = {"format_version": 1, "parameters": [
        {"name": "x", "type": "float", "low": 1.0, "high": 0.0},
        {"name": "n", "type": "int", "low": 0, "high": 10, "stepp": 2},
        {"name": "y", "type": "float", "low": 0.0, "high": 1.0, "conditions": [{"parent": "x", "values": [1.0]}]},
    ]}
    found = validate_file(write(folder, "bad.json", json.dumps(doc)))
    assert found == ["parameters[1]: Additional properties are not allowed ('stepp' was unexpected)"]
    del doc["parameters"][1]["stepp"]
    found = validate_file(write(folder, "bad.json", json.dumps(doc)))
    assert found == ["parameters[0]: `low` must not exceed `high` for 'x', got low=1.0, high=0.0"]
    doc["parameters"][0]["low"] = 0.0
    found = validate_file(write(folder, "bad.json", json.dumps(doc)))
    assert found == ["parameters[2].conditions[0].parent: must be a choice, boolean or fixed parameter, 'x' is float"]


def test_config_problems_are_listed(folder):
    text = CONFIG.replace('name = "demo"', 'name = "demo"\nhypermodel = "json:dumps"').replace("space.json", "gone.json")
    text += "[search]\nrounds = 0\ntrails_per_round = 5\n"
    found = validate_file(write(folder, "run.toml", text))
    assert "$: give exactly one of `function` and `hypermodel`, got both" in found
    assert "search.rounds: 0 is less than the minimum of 1" in found
    assert "search: Additional properties are not allowed ('trails_per_round' was unexpected)" in found
    assert any(line.startswith("data: required with `hypermodel`") for line in found)
    assert f"space: {folder / 'gone.json'}: cannot read the file (No such file or directory)" in found
    assert all("\n" not in line for line in found)


def test_a_run_config_written_as_json(folder):
    doc = {"name": "demo", "function": "json:loads", "space": "space.json",
           "objective": {"name": "loss", "direction": "min"}}
    assert validate_file(write(folder, "run.json", json.dumps(doc))) == []
    doc["search"] = {"rounds": 0}
    assert validate_file(write(folder, "run.json", json.dumps(doc))) == ["search.rounds: 0 is less than the minimum of 1"]


def test_syntax_errors_give_one_line_with_line_and_column(folder):
    assert validate_file(write(folder, "s.json", '{\n  "format_version": 1,\n  "parameters": [\n')) == [
        "line 4 column 1: not valid JSON (Expecting value)"]
    assert validate_file(write(folder, "run.toml", 'name = "x"\nrounds = = 3\n')) == [
        "line 2 column 10: not valid TOML (Invalid value)"]


def test_unreadable_files_give_one_line(folder):
    assert validate_file(folder / "missing.json") == ["cannot read the file (No such file or directory)"]
    assert validate_file(folder) == ["cannot read the file (Is a directory)"]
    (folder / "bin.json").write_bytes(b"\x89PNG\r\n")
    found = validate_file(folder / "bin.json")
    assert len(found) == 1 and found[0].startswith("cannot read the file (not UTF-8 text")


def test_documents_that_are_neither(folder):
    for text in ('{"hello": 1}', "[1, 2]", "3"):
        found = validate_file(write(folder, "x.json", text))
        assert len(found) == 1 and found[0].startswith("$: neither a search space"), found


def test_kind_is_detected_from_content_for_other_suffixes(folder):
    assert validate_file(write(folder, "space.txt", json.dumps(SPACE))) == []
    assert validate_file(write(folder, "run.cfg", CONFIG)) == []
    assert detect_kind(Path("a.toml"), {}) == "run_config"
    assert detect_kind(Path("a.json"), SPACE) == "search_space"
    assert detect_kind(Path("a.json"), {"name": "x"}) == "run_config"
    assert detect_kind(Path("a.json"), [1]) == "unknown"


def test_validation_imports_nothing(folder):
    module = "never_imported_by_validate"
    (folder / f"{module}.py").write_text("raise RuntimeError('imported')\n")
    text = CONFIG.replace("json:loads", f"{module}:f")
    assert validate_file(write(folder, "run.toml", text)) == []
    assert module not in sys.modules
