"""Starting a run from an earlier one: imported trials with their source, across a changed space."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

import refiner
from refiner.check import check_run
from refiner import schemas
from refiner.cli import main
from refiner.errors import ValidationError
from refiner.space import Choice, Float, SearchSpace
from refiner.store import RunStore
from refiner.trial import Objective

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SPACE = SearchSpace([Float("x", -5.0, 5.0), Float("y", -5.0, 5.0), Choice("kind", ("a", "b"))])
LOSS = Objective("loss", "min")


def bowl(p):
    return (p["x"] - 1.0) ** 2 + (p["y"] + 2.0) ** 2 + (0.0 if p["kind"] == "a" else 3.0)


def _run(tmp_path, name, **kw):
    settings = dict(function=bowl, space=SPACE, objective=LOSS, rounds=2, trials_per_round=8, directory=tmp_path,
                    project_name=name, seed=0, verbose=0)
    settings.update(kw)
    return refiner.Refiner(**settings).search()


def test_a_new_run_over_a_changed_space_imports_the_earlier_trials_with_their_source(tmp_path):
    old = _run(tmp_path, "old")
    narrower = SearchSpace([Float("x", 0.0, 5.0), Float("y", -5.0, 5.0), Choice("kind", ("a", "b"))])
    new = _run(tmp_path, "new", space=narrower, warm_start=tmp_path / "old", rounds=1, trials_per_round=5)

    store = RunStore(tmp_path / "new")
    imported = store.read_imported()
    assert len(imported) == len(old.trials) == 16
    for line in store.imported_file.read_text().splitlines():
        schemas.validate(json.loads(line), "trial")
    by_source = {t.source["trial_id"]: t for t in imported}
    for t in old.trials:  # every earlier trial, with where it came from and its score unchanged
        copy = by_source[t.trial_id]
        assert copy.round == -1 and copy.source == {"run": str(tmp_path / "old"), "trial_id": t.trial_id,
                                                    "round": t.round}
        assert copy.score == t.score and dict(copy.hyperparameters) == dict(t.hyperparameters)
    inside = [t for t in imported if t.ok and narrower.contains(t.hyperparameters)]
    assert 0 < len(inside) < len(imported)  # the changed space leaves some out: kept for the audit only
    # Evidence for the first surrogate: the round's analysis saw the imported trials inside the space.
    decisions = store.read_decisions(0)
    assert decisions["n_trials"] == len(inside) + len([t for t in store.read_trials(0) if t.ok])
    assert [t.trial_id for t in new.trials[:len(inside)]] == [t.trial_id for t in inside]
    assert len(store.read_trials(0)) == 5  # the round's own budget is not spent on imports
    settings = store.read_run()["settings"]
    assert settings["warm_start"] == str(tmp_path / "old")
    events = [e for e in store.read_events() if e["event"] == "warm_started"]
    assert events == [{**events[0], "imported": 16, "evidence": len(inside)}]
    # A resume reads the imports from its own folder, not from the earlier run (which may be gone).
    shutil.rmtree(tmp_path / "old")
    again = _run(tmp_path, "new", space=narrower, warm_start=tmp_path / "old", rounds=1, trials_per_round=5)
    assert [t.trial_id for t in again.trials] == [t.trial_id for t in new.trials]


def test_a_space_that_no_longer_matches_is_refused_naming_the_parameter_and_nothing_is_written(tmp_path):
    _run(tmp_path, "old")
    extra = SearchSpace([*SPACE, Float("z", 0.0, 1.0)])
    with pytest.raises(ValidationError, match=r"parameter 'z' is not in .*old's space"):
        _run(tmp_path, "a", space=extra, function=lambda p: bowl(p) + p["z"], warm_start=tmp_path / "old")
    fewer = SearchSpace([Float("x", -5.0, 5.0), Choice("kind", ("a", "b"))])
    with pytest.raises(ValidationError, match=r"parameter 'y' of .*old is not in this run's space"):
        _run(tmp_path, "b", space=fewer, function=lambda p: bowl({**p, "y": 0.0}), warm_start=tmp_path / "old")
    other_kind = SearchSpace([Float("x", -5.0, 5.0), Choice("y", (0.0, 1.0)), Choice("kind", ("a", "b"))])
    with pytest.raises(ValidationError, match=r"parameter 'y' is float in .*old but choice in this run"):
        _run(tmp_path, "c", space=other_kind, warm_start=tmp_path / "old")
    with pytest.raises(ValidationError, match=r"optimised loss \(min\), this run loss \(max\)"):
        _run(tmp_path, "d", objective=Objective("loss", "max"), warm_start=tmp_path / "old")
    with pytest.raises(ValidationError, match=r"not a run folder"):
        _run(tmp_path, "e", warm_start=tmp_path / "nowhere")
    for name in "abcde":
        assert not (tmp_path / name / "run.json").exists()


def test_refiner_run_warm_starts_from_the_earlier_runs_refined_space(tmp_path, capsys):
    first = tmp_path / "branin"
    assert main(["run", str(EXAMPLES / "branin.toml"), "--run-dir", str(first), "--quiet"]) == 0
    second = tmp_path / "branin2"
    assert main(["run", str(EXAMPLES / "branin.toml"), "--run-dir", str(second), "--quiet",
                 "--warm-start", str(first), "--from-refined"]) == 0
    store = RunStore(second)
    assert store.read_space(0) == RunStore(first).read_refined_space()
    assert len(store.read_imported()) == 30
    assert main(["show", str(second)]) == 0
    assert f"warm start: 30 trials imported from {first}" in capsys.readouterr().out
    capsys.readouterr()
    assert main(["run", str(EXAMPLES / "branin.toml"), "--run-dir", str(tmp_path / "x"), "--from-refined"]) == 2
    assert "--from-refined: needs --warm-start" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_run_folders_made_before_warm_starts_still_read(tmp_path):
    old = _run(tmp_path, "old")
    store = RunStore(tmp_path / "old")
    assert not store.imported_file.exists() and store.read_imported() == []
    check_run(store)
    assert math.isfinite(old.best_trial.score)


def test_the_review_app_marks_imported_trials(tmp_path, monkeypatch):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from refiner import review

    _run(tmp_path, "old")
    _run(tmp_path, "new", warm_start=tmp_path / "old", rounds=1, trials_per_round=3)
    view = review.load_run(tmp_path, "new")
    assert len(view.imported) == 16
    frame = review.trials_frame(list(view.imported))
    assert list(frame["source"])[0].startswith(f"imported from {tmp_path / 'old'} (trial 0-")
    assert "source" not in review.trials_frame(view.trials[:1]).columns
    figure = review.param_scatter_figure(SPACE["x"], [*view.imported, *view.round(0).trials], view.objective)
    assert "imported" in [trace.name for trace in figure.data]

    st.cache_data.clear()
    monkeypatch.setenv("REFINER_RUNS", str(tmp_path))
    app = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=60)
    app.query_params["run"] = "new"
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert any("Imported from an earlier run: 16 trials" in e.label for e in app.expander)
    st.cache_data.clear()
