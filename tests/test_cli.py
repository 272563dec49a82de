"""The ``refiner`` command: run, show, export, validate; bad input is one line and exit code 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from refiner import schemas
from refiner.cli import main
from refiner.space import SearchSpace
from refiner.store import RunStore

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def branin_run(tmp_path_factory):
    """One real 3-round run of examples/branin.toml, shared by the read-only tests below."""
    run_dir = tmp_path_factory.mktemp("cli") / "branin"
    assert main(["run", str(EXAMPLES / "branin.toml"), "--run-dir", str(run_dir), "--quiet"]) == 0
    return run_dir


def test_run_writes_a_finished_run_whose_files_all_validate(branin_run):
    store = RunStore(branin_run)
    assert store.read_run()["state"]["status"] == "finished"
    assert [len(store.read_trials(k)) for k in store.rounds()] == [10, 10, 10]
    by_name = {"space.json": "search_space", "surrogate.json": "surrogate", "decisions.json": "decisions",
               "audit.json": "audit", "run.json": "run", "refined_space.json": "search_space", "trials.jsonl": "trial", "events.jsonl": None}
    checked = 0
    for path in branin_run.rglob("*.json*"):
        if any(part.startswith("kt") for part in path.relative_to(branin_run).parts):
            continue  # KerasTuner's own files
        schema = by_name[path.name]
        lines = path.read_text().splitlines() if path.suffix == ".jsonl" else [path.read_text()]
        for line in lines:
            document = json.loads(line)
            if schema is not None:
                schemas.validate(document, schema, source=str(path))
            checked += 1
    assert checked > 30 + 3 * 3


def test_running_a_finished_run_again_resumes_without_new_trials(branin_run, capsys):
    before = len(RunStore(branin_run).all_trials())
    assert main(["run", str(EXAMPLES / "branin.toml"), "--run-dir", str(branin_run), "--quiet"]) == 0
    assert len(RunStore(branin_run).all_trials()) == before
    assert "best loss" in capsys.readouterr().out


def test_show_prints_each_round_and_the_decision_table(branin_run, capsys):
    assert main(["show", str(branin_run)]) == 0
    out = capsys.readouterr().out
    for k in range(3):
        assert f"== round {k}" in out
    assert out.count("parameter  before") == 3
    assert "refined space:" in out and "status: finished" in out


def test_export_json_is_schema_valid_and_equals_the_refined_space(branin_run, tmp_path):
    target = tmp_path / "space.json"
    assert main(["export", str(branin_run), "--format", "json", "-o", str(target)]) == 0
    document = json.loads(target.read_text())
    schemas.validate(document, "search_space")
    assert SearchSpace.from_dict(document) == RunStore(branin_run).read_refined_space()


def test_export_keras_tuner_code_runs_and_round_trips(branin_run, capsys):
    assert main(["export", str(branin_run), "--format", "keras-tuner"]) == 0
    namespace: dict = {}
    exec(compile(capsys.readouterr().out, "space_kt.py", "exec"), namespace)
    assert SearchSpace.from_keras_tuner(namespace["hp"]) == RunStore(branin_run).read_refined_space()


def test_export_optuna_code_runs_and_round_trips(branin_run, capsys):
    import optuna

    assert main(["export", str(branin_run), "--format", "optuna"]) == 0
    namespace: dict = {}
    exec(compile(capsys.readouterr().out, "space_optuna.py", "exec"), namespace)
    refined = RunStore(branin_run).read_refined_space()
    assert namespace["DISTRIBUTIONS"] == refined.to_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: sum(namespace["suggest"](t).values()), n_trials=5)
    assert all(refined.contains(t.params) for t in study.trials)


def test_changed_config_on_resume_is_refused_with_exit_2(branin_run, tmp_path, capsys):
    config = tmp_path / "branin.toml"
    shutil.copy(EXAMPLES / "branin_space.json", tmp_path / "branin_space.json")
    shutil.copy(EXAMPLES / "branin.py", tmp_path / "branin.py")
    config.write_text((EXAMPLES / "branin.toml").read_text().replace("trials_per_round = 10", "trials_per_round = 12"))
    copy = tmp_path / "run"
    shutil.copytree(branin_run, copy)
    assert main(["run", str(config), "--run-dir", str(copy), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "trials_per_round: was 10, now 12" in err and len(err.strip().splitlines()) == 1


def test_validate_accepts_the_examples(capsys):
    for name in ("branin_space.json", "branin.toml", "digits_cnn.toml"):
        assert main(["validate", str(EXAMPLES / name)]) == 0


def test_validate_reports_each_problem_with_path_and_rule(tmp_path, capsys):
    bad = tmp_path / "space.json"
    bad.write_text(json.dumps({"format_version": 1, "parameters": [
        {"name": "lr", "type": "float", "low": 0.1},
        {"name": "units", "type": "int", "low": 1, "high": 8, "step": 0},
    ]}))
    assert main(["validate", str(bad)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert any("parameters[0]" in line and "'high' is a required property" in line for line in lines)
    assert any("parameters[1].step" in line and "minimum" in line for line in lines)


def test_corrupt_run_folder_is_one_line_and_exit_2(branin_run, tmp_path, capsys):
    copy = tmp_path / "corrupt"
    shutil.copytree(branin_run, copy)
    (copy / "run.json").write_text('{"format_version": 1, "name": ')
    assert main(["show", str(copy)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("refiner: error: ") and "run.json" in err and "not valid JSON" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["export", str(tmp_path / "nowhere")]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_console_script_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "config.toml"
    bad.write_text('name = "x"\nfunction = "m:f"\nspace = "missing.json"\nbogus = 1\n')
    result = subprocess.run([sys.executable, "-m", "refiner.cli", "run", str(bad)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "bogus" in result.stderr


def test_a_damaged_run_is_refused_with_a_repair_hint_and_repairing_it_restores_the_run(branin_run, tmp_path, capsys):
    copy = tmp_path / "damaged"
    shutil.copytree(branin_run, copy)
    decisions = copy / "rounds" / "1" / "decisions.json"
    original = json.loads(decisions.read_text())
    edited = json.loads(decisions.read_text())
    edited["decisions"][0]["action"] = "shrink"  # a hand edit that breaks the schema
    decisions.write_text(json.dumps(edited))
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file() and p != decisions}
    assert main(["run", str(EXAMPLES / "branin.toml"), "--run-dir", str(copy), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "decisions.json" in err and "decisions[0].action" in err and "to repair, delete it and run again" in err
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file() and p != decisions} == before  # nothing touched
    decisions.unlink()
    assert main(["run", str(EXAMPLES / "branin.toml"), "--run-dir", str(copy), "--quiet"]) == 0
    assert json.loads(decisions.read_text()) == original  # recomputed exactly
