"""A person's overrides: validated like `refiner validate`, applied by the loop, recorded beside the proposal."""

from __future__ import annotations

import pytest

import refiner
from refiner.errors import ValidationError
from refiner.overrides import apply_overrides, override_problems, refined_space, write_overrides
from refiner.space import Float, SearchSpace
from refiner.store import RunStore
from refiner.trial import Objective

SPACE = SearchSpace([Float("x", -5.0, 5.0), Float("y", -5.0, 5.0)])


def bowl(p):
    return (p["x"] - 1.0) ** 2 + 0.1 * (p["y"] + 2.0) ** 2


def _agent(tmp_path, rounds):
    return refiner.Refiner(function=bowl, space=SPACE, objective=Objective("loss", "min"), rounds=rounds,
                           trials_per_round=12, directory=tmp_path, project_name="run", seed=0,
                           narrowing={"min_trials": 6, "min_cv_score": 0.0})


def test_an_edit_written_between_rounds_is_applied_to_the_next_round_and_recorded(tmp_path):
    _agent(tmp_path, rounds=1).search()
    store = RunStore(tmp_path / "run")
    edited = {"name": "y", "type": "float", "low": -3.0, "high": -1.0}
    write_overrides(store, 0, [{"name": "y", "action": "edit", "after": edited, "note": "domain knowledge"},
                               {"name": "x", "action": "reject"}])
    # The run is extended by a second round: an easy way to make round 0 "not the last".
    run = store.read_run()
    run["settings"]["rounds"] = 2
    store.write_run(run)
    _agent(tmp_path, rounds=2).search()
    space1 = store.read_space(1)
    assert space1["y"].to_dict() == edited
    assert space1["x"] == SPACE["x"]  # rejected: the range round 0 searched
    assert all(-3.0 <= t.hyperparameters["y"] <= -1.0 for t in store.read_trials(1) if not t.reserve)
    decisions = {d["name"]: d for d in store.read_decisions(0)["decisions"]}
    assert decisions["y"]["after"] == edited and "proposed" in decisions["y"]
    assert decisions["y"]["override"]["note"] == "domain knowledge"
    assert decisions["x"]["override"]["action"] == "reject"
    assert "overrides_applied" in [e["event"] for e in store.read_events()]


def test_overrides_of_a_finished_run_reach_the_file_show_and_export_alike(tmp_path, capsys):
    from refiner.check import run_problems
    from refiner.cli import main

    _agent(tmp_path, rounds=1).search()
    store = RunStore(tmp_path / "run")
    edited = {"name": "x", "type": "float", "low": 0.0, "high": 2.0}
    write_overrides(store, 0, [{"name": "x", "action": "edit", "after": edited}])
    assert refined_space(store)["x"].to_dict() == edited
    assert store.read_refined_space()["x"].to_dict() == edited  # the file on disk, too
    assert run_problems(store) == []  # the decisions on disk agree with it
    capsys.readouterr()
    assert main(["show", str(store.root)]) == 0
    assert "x [0, 2]" in capsys.readouterr().out.split("refined space: ")[1]
    assert main(["export", str(store.root), "--format", "json"]) == 0
    assert SearchSpace.from_json(capsys.readouterr().out)["x"].to_dict() == edited
    # Edited again: the latest edit wins everywhere, refiner's proposal stays on record.
    write_overrides(store, 0, [{"name": "x", "action": "reject"}])
    assert store.read_refined_space()["x"] == refined_space(store)["x"] == SPACE["x"]
    assert "proposed" in {d["name"]: d for d in store.read_decisions(0)["decisions"]}["x"]


def test_invalid_edits_are_refused_with_path_and_rule(tmp_path):
    _agent(tmp_path, rounds=1).search()
    store = RunStore(tmp_path / "run")
    with pytest.raises(ValidationError, match=r"overrides\[0\]\.after: `low` must not exceed `high` for 'x'"):
        write_overrides(store, 0, [{"name": "x", "action": "edit",
                                    "after": {"name": "x", "type": "float", "low": 3.0, "high": 1.0}}])
    with pytest.raises(ValidationError, match=r"overrides\[0\]\.name: must name a parameter of round 0, got 'z'"):
        write_overrides(store, 0, [{"name": "z", "action": "reject"}])
    with pytest.raises(ValidationError, match=r"overrides\[0\]: 'after' is a required property"):
        write_overrides(store, 0, [{"name": "x", "action": "edit"}])
    assert not (store.round_dir(0) / "overrides.json").exists()


def test_apply_keeps_the_original_proposal_when_reapplied():
    decisions = {"format_version": 1, "round": 0, "n_trials": 5, "surrogate_trusted": True, "decisions": [
        {"name": "x", "action": "narrow", "before": SPACE["x"].to_dict(),
         "after": {"name": "x", "type": "float", "low": 0.0, "high": 2.0}, "reason": "r", "evidence": {}},
    ], "next_space": {"format_version": 1, "parameters": [{"name": "x", "type": "float", "low": 0.0, "high": 2.0}]}}
    overrides = {"format_version": 1, "round": 0, "overrides": [{"name": "x", "action": "reject"}]}
    once = apply_overrides(decisions, overrides)
    twice = apply_overrides(once, overrides)
    assert once["decisions"][0]["after"] == SPACE["x"].to_dict()
    assert twice["decisions"][0]["proposed"] == decisions["decisions"][0]["after"]
    assert override_problems(decisions, {**overrides, "round": 3})[0].startswith("round: must be 0")
