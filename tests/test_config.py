"""refiner.config: the TOML run config is checked in full and resolved lazily."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

import refiner
import refiner.loop  # noqa: F401 - loaded before _restore_import_state's snapshot, which unloads what a test imports
from refiner.config import RunConfig, load_run_config, resolve
from refiner.errors import ValidationError
from refiner.space import Float, SearchSpace
from refiner.trial import Objective

PROBLEM_LINE = re.compile(r"^(\$|[a-z_]+(\.[a-z_]+)*|line \d+ column \d+|end of file): \S[^\n]*$")
SPACE = {"format_version": 1, "parameters": [
    {"name": "x1", "type": "float", "low": -5.0, "high": 10.0},
    {"name": "x2", "type": "float", "low": 0.0, "high": 15.0},
]}


@pytest.fixture(autouse=True)
def _restore_import_state():
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]


@pytest.fixture
def project(tmp_path):
    """A config folder with a space file and a module whose name no other test uses."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "space.json").write_text(json.dumps(SPACE))
    module = f"objective_{uuid.uuid4().hex[:8]}"
    (folder / f"{module}.py").write_text(textwrap.dedent("""
        IMPORTED = True
        NOT_CALLABLE = 3

        def f(params):
            return params["x1"] ** 2 + params["x2"]

        def build_model(hp):
            return None

        def load_data():
            return {"x": [1], "y": [2]}

        class Box:
            @staticmethod
            def inner(params):
                return 1.0
    """))
    return folder, module


def write(folder: Path, text: str, name: str = "run.toml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def function_config(module: str, extra: str = "") -> str:
    return f"""
        name = "branin"
        function = "{module}:f"
        space = "space.json"
        {extra}
        [objective]
        name = "loss"
        direction = "min"
    """


def problems(path: Path) -> list[str]:
    with pytest.raises(ValidationError) as info:
        load_run_config(path)
    assert info.value.source == str(path)
    assert str(info.value).startswith(f"{path}: ")
    for line in info.value.problems:
        assert PROBLEM_LINE.match(line), f"not a one-line '<json path>: <rule>' problem: {line!r}"
    return info.value.problems


# -- valid configs ------------------------------------------------------------------------------------
def test_function_config_loads_with_defaults(project):
    folder, module = project
    path = write(folder, function_config(module))
    config = load_run_config(path)
    assert isinstance(config, RunConfig)
    assert config.name == "branin" and config.directory == Path("runs") and config.run_dir == Path("runs/branin")
    assert config.function == f"{module}:f" and config.hypermodel is None and config.data is None
    assert config.mode == "function" and config.target == f"{module}:f"
    assert config.space == SearchSpace.from_dict(SPACE)
    assert config.space_file == folder / "space.json"
    assert config.objective == Objective("loss", "min")
    assert (config.rounds, config.trials_per_round, config.executions_per_trial) == (3, 10, 1)
    assert config.seed == 0  # omitted: the default seed, as from Python
    assert config.fit == {} and config.narrowing == {}
    assert config.source == path and config.base_dir == folder
    assert config.document == {"name": "branin", "function": f"{module}:f", "space": "space.json",
                               "objective": {"name": "loss", "direction": "min"}}
    json.dumps(config.document)  # recordable in run.json


def test_every_setting_is_read(project):
    folder, module = project
    path = write(folder, f"""
        name = "digits.v2"
        directory = "elsewhere/runs"
        hypermodel = "{module}:build_model"
        data = "{module}:load_data"
        space = "space.json"
        engine = "optuna"
        storage = "sqlite:///studies.db"
        [objective]
        name = "val_accuracy"
        direction = "max"
        [search]
        rounds = 4
        trials_per_round = 7
        initial_trials = 3
        executions_per_trial = 2
        trial_retries = 1
        seed = 0
        [fit]
        epochs = 8
        validation_split = 0.2
        batch_size = 32
        callbacks_note = ["a", "b"]
        [narrowing]
        min_trials = 5
        min_cv_score = -0.5
        top_fraction = 0.5
        margin = 0
        min_width = 0.05
        n_candidates = 100
    """)
    config = load_run_config(path)
    assert config.mode == "hypermodel" and config.target == f"{module}:build_model"
    assert config.directory == Path("elsewhere/runs") and config.name == "digits.v2"
    assert (config.rounds, config.trials_per_round, config.executions_per_trial, config.seed) == (4, 7, 2, 0)
    assert config.fit == {"epochs": 8, "validation_split": 0.2, "batch_size": 32, "callbacks_note": ["a", "b"]}
    assert config.narrowing["n_candidates"] == 100 and config.narrowing["margin"] == 0
    assert config.objective == Objective("val_accuracy", "max")
    assert config.space is not None
    assert config.engine == "optuna" and config.storage == "sqlite:///studies.db"
    assert (config.initial_trials, config.trial_retries) == (3, 1)


def test_hypermodel_config_needs_no_space(project):
    folder, module = project
    path = write(folder, f"""
        name = "cnn"
        hypermodel = "{module}:build_model"
        data = "{module}:load_data"
        [objective]
        name = "val_accuracy"
        direction = "max"
    """)
    config = load_run_config(path)
    assert config.space is None and config.space_file is None


def test_space_is_found_next_to_the_config_not_the_working_directory(project, tmp_path, monkeypatch):
    folder, module = project
    write(folder, function_config(module))
    monkeypatch.chdir(tmp_path)
    assert load_run_config(Path("project") / "run.toml").space == SearchSpace.from_dict(SPACE)


def test_a_config_written_as_json_loads_the_same(project):
    folder, module = project
    toml = load_run_config(write(folder, function_config(module, 'directory = "out"')))
    doc = {"name": "branin", "function": f"{module}:f", "space": "space.json", "directory": "out",
           "objective": {"name": "loss", "direction": "min"}, "search": {"seed": None}}
    config = load_run_config(write(folder, json.dumps(doc), name="run.json"))
    assert (config.space, config.objective, config.directory, config.seed) == (toml.space, toml.objective, toml.directory, None)


def test_python_and_a_config_file_share_one_set_of_defaults(project, tmp_path):
    """A setting left out means the same from `Refiner(...)` and from a TOML file (refiner.settings)."""
    folder, module = project
    config = load_run_config(write(folder, function_config(module)))
    agent = refiner.Refiner(function=lambda p: 0.0, space=config.space, objective="loss", directory=tmp_path)
    for name in ("rounds", "trials_per_round", "initial_trials", "executions_per_trial", "trial_retries", "seed"):
        assert getattr(config, name) == getattr(agent.settings, name), name
    fresh = load_run_config(write(folder, function_config(module) + '\n[search]\nseed = "random"\nmax_trials = 30'))
    assert fresh.seed is None  # fresh randomness, as seed=None from Python
    assert (fresh.initial_trials, fresh.trials_per_round) == (6, 12)  # the split Refiner(max_trials=30) makes
    assert (refiner.Refiner(function=lambda p: 0.0, space=config.space, max_trials=30).settings.initial_trials,
            refiner.Refiner(function=lambda p: 0.0, space=config.space, max_trials=30).trials_per_round) == (6, 12)


# -- bad configs ----------------------------------------------------------------------------------------
BAD = {
    "typo'd top-level key": ('nmae = "x"', r"^\$: Additional properties are not allowed \('nmae' was unexpected\)$"),
    "typo'd search key": ("[search]\nround = 3", r"^search: Additional properties are not allowed \('round' was unexpected\)$"),
    "typo'd narrowing key": ("[narrowing]\nmargins = 0.1", r"^narrowing: Additional properties are not allowed \('margins' was unexpected\)$"),
    "rounds wrong type": ('[search]\nrounds = "3"', r"^search\.rounds: '3' is not of type 'integer'$"),
    "rounds zero": ("[search]\nrounds = 0", r"^search\.rounds: 0 is less than the minimum of 1$"),
    "trials zero": ("[search]\ntrials_per_round = 0", r"^search\.trials_per_round: 0 is less than the minimum of 1$"),
    "seed float": ("[search]\nseed = 1.5", r'^search\.seed: must be an integer in \[0, 2\*\*31 - 1\], "random" or null, got 1\.5$'),
    "seed bool": ("[search]\nseed = true", r'^search\.seed: must be an integer in \[0, 2\*\*31 - 1\], "random" or null, got True$'),
    "seed word": ('[search]\nseed = "fresh"', r'^search\.seed: must be an integer in \[0, 2\*\*31 - 1\], "random" or null'),
    "budget too small": ("[search]\nmax_trials = 3", r"^search: `max_trials` must give at least 2 trials to the random round"),
    "top_fraction too big": ("[narrowing]\ntop_fraction = 1.5", r"^narrowing\.top_fraction: 1\.5 is greater than the maximum of 1$"),
    "min_trials too small": ("[narrowing]\nmin_trials = 0", r"^narrowing\.min_trials: 0 is less than the minimum of 1$"),
    "n_candidates too small": ("[narrowing]\nn_candidates = 5", r"^narrowing\.n_candidates: 5 is less than the minimum of 10$"),
    "min_width zero": ("[narrowing]\nmin_width = 0", r"^narrowing\.min_width: 0 is less than or equal to the minimum of 0$"),
    "fit for a function": ("[fit]\nepochs = 3", r"^fit: only used with `hypermodel`"),
    "data for a function": ('data = "m:load"', r"^data: only used with `hypermodel`"),
    "date in fit": ("[fit]\nwhen = 2024-01-01", r"^fit\.when: datetime\.date\(2024, 1, 1\) is not of type"),
    "bad directory": ('directory = ""', r"^directory: '' should be non-empty$"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_configs_name_the_field_and_the_rule(project, case):
    folder, module = project
    extra, expected = BAD[case]
    # Tables go last in TOML; top-level keys go before them.
    text = function_config(module) + "\n" + extra if extra.startswith("[") else function_config(module, extra)
    found = problems(write(folder, text))
    assert any(re.search(expected, line) for line in found), found


def test_bad_objective(project):
    folder, module = project
    text = function_config(module).replace('direction = "min"', 'direction = "minimize"')
    assert problems(write(folder, text)) == ["objective.direction: 'minimize' is not one of ['max', 'min']"]
    text = function_config(module).replace('direction = "min"', "")
    assert problems(write(folder, text)) == ["objective: 'direction' is a required property"]


def test_both_function_and_hypermodel(project):
    folder, module = project
    path = write(folder, function_config(module, f'hypermodel = "{module}:build_model"\ndata = "{module}:load_data"'))
    assert "$: give exactly one of `function` and `hypermodel`, got both" in problems(path)


def test_neither_function_nor_hypermodel(project):
    folder, module = project
    path = write(folder, function_config(module).replace(f'function = "{module}:f"', ""))
    assert any(line.startswith("$: give exactly one of `function`") and line.endswith("got neither")
               for line in problems(path))


def test_space_required_with_function(project):
    folder, module = project
    path = write(folder, function_config(module).replace('space = "space.json"', ""))
    assert problems(path) == ["space: required with `function` (a plain function declares no search space)"]


def test_data_required_with_hypermodel(project):
    folder, module = project
    path = write(folder, f"""
        name = "cnn"
        hypermodel = "{module}:build_model"
        [objective]
        name = "val_accuracy"
        direction = "max"
        [fit]
        x = 1
    """)
    found = problems(path)
    assert any(line.startswith("data: required with `hypermodel`") for line in found)
    assert "fit.x: the training data comes from `data`; remove `x` from [fit]" in found


def test_missing_space_file(project):
    folder, module = project
    path = write(folder, function_config(module).replace("space.json", "nope.json"))
    assert problems(path) == [f"space: {folder / 'nope.json'}: cannot read the file (No such file or directory)"]


def test_invalid_space_file(project):
    folder, module = project
    (folder / "space.json").write_text(json.dumps({"format_version": 1, "parameters": [
        {"name": "x", "type": "float", "low": 2.0, "high": 1.0}]}))
    found = problems(write(folder, function_config(module)))
    assert found == [f"space: {folder / 'space.json'}: parameters[0]: `low` must not exceed `high` for 'x', got low=2.0, high=1.0"]
    (folder / "space.json").write_text('{"format_version": 1,\n "parameters": [}')
    found = problems(write(folder, function_config(module)))
    assert len(found) == 1 and re.match(r"^space: .*space\.json: line 2 column 17: not valid JSON", found[0]), found
    (folder / "space.json").write_text("garbage that does not start with a brace")
    found = problems(write(folder, function_config(module)))
    assert len(found) == 1 and "line 1 column 1: not valid JSON" in found[0], found


def test_broken_toml_gives_line_and_column(project):
    folder, module = project
    path = write(folder, 'name = "x"\nfunction = \n')
    assert problems(path) == ["line 2 column 12: not valid TOML (Invalid value)"]
    path = write(folder, 'name = "x"\n[objective\n')
    assert len(problems(path)) == 1 and problems(path)[0].startswith("line 2 column")


def test_unreadable_files(project):
    folder, _ = project
    with pytest.raises(ValidationError, match=r"cannot read the file \(No such file or directory\)"):
        load_run_config(folder / "missing.toml")
    (folder / "binary.toml").write_bytes(b"name = \xff\n")
    with pytest.raises(ValidationError, match=r"cannot read the file \(not UTF-8 text"):
        load_run_config(folder / "binary.toml")
    with pytest.raises(ValidationError, match=r"cannot read the file"):
        load_run_config(folder)


def test_empty_file_lists_what_is_required(project):
    folder, _ = project
    found = problems(write(folder, ""))
    assert "$: 'name' is a required property" in found and "$: 'objective' is a required property" in found


def test_references_and_names_say_the_rule_not_the_regex(project):
    folder, module = project
    text = function_config(module).replace(f'"{module}:f"', '"branin.branin"').replace('"branin"', '"my/run"', 1)
    found = problems(write(folder, text))
    assert "function: must be 'module.path:attribute' (e.g. 'branin:branin'), got 'branin.branin'" in found
    assert any(line.startswith("name: must be a folder name") and line.endswith("got 'my/run'") for line in found)


def test_unknown_module_is_caught_without_importing(project):
    folder, module = project
    found = problems(write(folder, function_config(module).replace(f"{module}:f", "no_such_module_xyz:f")))
    assert found == [f"function: no module named 'no_such_module_xyz' (looked in {folder} and sys.path)"]


def test_every_problem_at_once(project):
    folder, module = project
    text = f"""
        name = "x"
        function = "{module}:f"
        hypermodel = "{module}:build_model"
        [objective]
        name = "loss"
        direction = "down"
        [search]
        rounds = 0
    """
    found = problems(write(folder, text))
    assert len(found) >= 4, found
    assert {line.split(":")[0] for line in found} >= {"$", "objective.direction", "search.rounds", "data"}


# -- resolving ------------------------------------------------------------------------------------------
def test_loading_imports_nothing(project):
    folder, module = project
    load_run_config(write(folder, function_config(module)))
    assert module not in sys.modules


def test_loading_the_digits_config_does_not_import_tensorflow():
    code = ("import sys; from refiner.config import load_run_config; "
            "load_run_config('examples/digits_cnn.toml'); "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules, 'digits_cnn' in sys.modules)")
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]


def test_resolve_target_and_data(project):
    folder, module = project
    config = load_run_config(write(folder, function_config(module)))
    f = config.resolve_target()
    assert f({"x1": 2.0, "x2": 1.0}) == 5.0
    with pytest.raises(ValidationError, match="data: not set"):
        config.resolve_data()
    hyper = load_run_config(write(folder, f"""
        name = "cnn"
        hypermodel = "{module}:build_model"
        data = "{module}:load_data"
        [objective]
        name = "val_accuracy"
        direction = "max"
    """))
    assert hyper.resolve_target()(None) is None
    assert hyper.resolve_data()() == {"x": [1], "y": [2]}


def test_resolve_puts_the_base_dir_first(project):
    folder, module = project
    resolve(f"{module}:f", folder)
    assert sys.path[0] == str(folder.resolve())
    resolve(f"{module}:f", folder)  # idempotent: not added twice
    assert sys.path.count(str(folder.resolve())) == 1


def test_resolve_dotted_attribute(project):
    folder, module = project
    assert resolve(f"{module}:Box.inner", folder)({}) == 1.0


@pytest.mark.parametrize("ref, expected", [
    ("no_such_module_abc:f", r"^hypermodel: no module named 'no_such_module_abc' \(looked in .*\)$"),
    ("{module}:missing", r"^hypermodel: module '{module}' has no attribute 'missing'$"),
    ("{module}:Box.missing", r"^hypermodel: module '{module}' has no attribute 'Box.missing'$"),
    ("{module}:NOT_CALLABLE", r"^hypermodel: '{module}:NOT_CALLABLE' must be callable, got int$"),
    ("{module}", r"^hypermodel: must be 'module.path:attribute' \(e.g. 'branin:branin'\), got '{module}'$"),
    ("{module}.sub:f", r"^hypermodel: no module named '{module}.sub'"),
])
def test_resolve_errors_name_the_field(project, ref, expected):
    folder, module = project
    with pytest.raises(ValidationError) as info:
        resolve(ref.format(module=module), folder, field="hypermodel")
    assert re.match(expected.format(module=module), str(info.value)), str(info.value)


def test_resolve_reports_a_module_that_fails_to_import(tmp_path):
    name = f"broken_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ValidationError, match=rf"^function: importing '{name}' failed: RuntimeError: boom$") as info:
        resolve(f"{name}:f", tmp_path, field="function")
    assert isinstance(info.value.__cause__, RuntimeError)  # the traceback is kept for debugging
    dep = f"needs_dep_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{dep}.py").write_text("import a_dependency_that_is_not_installed\n")
    with pytest.raises(ValidationError, match=rf"^function: importing '{dep}' failed: No module named 'a_dependency_that_is_not_installed'$"):
        resolve(f"{dep}:f", tmp_path, field="function")


def test_config_space_is_a_search_space(project):
    folder, module = project
    (folder / "space.json").write_text(SearchSpace([Float("x1", 0.0, 1.0)]).to_json())
    config = load_run_config(write(folder, function_config(module)))
    assert config.space == SearchSpace([Float("x1", 0.0, 1.0)])
