"""The review app page, run in-process with streamlit.testing.v1.AppTest over run folders made by the loop.

Covered: run selection (sidebar and ?run=), the decision table, overrides written and validated
through the page, a path-traversal name in the URL, a corrupt run beside a good one, re-reading a
run when its files change, and how `refiner app` starts the packaged page.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from refiner import review
from refiner.review_app import runs_folder
from refiner.store import RunStore
from test_review import make_run

APP = Path(__file__).resolve().parent.parent / "app.py"


@pytest.fixture(autouse=True)
def _fresh_cache():
    # st.cache_data lives in the process, so one test's runs would leak into the next.
    st.cache_data.clear()
    yield
    st.cache_data.clear()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    runs = tmp_path_factory.mktemp("apptest") / "runs"
    runs.mkdir()
    make_run(runs, "alpha")
    return runs


@pytest.fixture
def runs(built, tmp_path, monkeypatch):
    """alpha (a real 2-round run), beta (a copy), broken (a copy with a schema-invalid trial line)."""
    runs = tmp_path / "runs"
    shutil.copytree(built, runs)
    shutil.copytree(runs / "alpha", runs / "beta")
    shutil.copytree(runs / "alpha", runs / "broken")
    path = runs / "broken" / "rounds" / "1" / "trials.jsonl"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace('"complete"', '"exploded"')
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("REFINER_RUNS", str(runs))
    return runs


def _app(run: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    if run is not None:
        at.query_params["run"] = run
    return at.run()


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_picks_a_run_from_the_sidebar_and_shows_status_best_and_charts(runs):
    at = _app("alpha")
    _no_exception(at)
    assert at.title[0].value == "Run alpha"
    assert at.selectbox(key="run").options == ["alpha", "beta", "broken"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Status"] == "finished" and metrics["Trials"] == "16 / 16"
    best = RunStore(runs / "alpha").read_run()["state"]["best"]
    assert metrics["Best loss (min)"] == review.fmt(best["score"])
    charts = {c.proto.spec and json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")}
    assert "Incumbent curve: did each narrowing help?" in charts
    assert "Round 1 against earlier rounds" in charts and "Score against units" in charts
    assert any(t.startswith("Partial dependence of units") for t in charts)
    assert any(t.startswith("Importance") for t in charts) and any(t.startswith("One line per trial") for t in charts)
    assert len(at.get("download_button")) == 4  # JSON, KerasTuner, Optuna, the round's CSV

    at.selectbox(key="run").set_value("beta").run()
    _no_exception(at)
    assert at.title[0].value == "Run beta" and at.query_params["run"] == "beta"
    at.radio(key="round").set_value(0).run()
    assert at.header[0].value == "Round 0: random search"


def test_decision_table_lists_every_decision_with_a_link_to_its_plot(runs):
    at = _app("alpha")
    decisions = RunStore(runs / "alpha").read_decisions(1)["decisions"]
    table = at.table[0].value
    links = [re.fullmatch(r"\[(.*)\]\(#r1-p(\d+)\)", cell) for cell in table["parameter"]]
    assert all(links)
    assert [_unescape(m.group(1)) for m in links] == [d["name"] for d in decisions]
    assert [int(m.group(2)) for m in links] == list(range(len(decisions)))
    assert [_unescape(a) for a in table["action"]] == [d["action"] for d in decisions]
    assert [_unescape(r) for r in table["reason"]] == [" ".join(d["reason"].split()) for d in decisions]
    expected = review.decision_frame({"decisions": decisions})
    assert [_unescape(b) for b in table["before"]] == list(expected["before"])
    assert [_unescape(b) for b in table["evidence"]] == list(expected["evidence"])
    # The anchors the links point at exist: one subheader per parameter.
    anchors = {h.proto.anchor for h in at.subheader}
    assert {f"r1-p{i}" for i in range(len(decisions))} <= anchors


def test_a_flagged_bound_stands_out(runs):
    path = runs / "alpha" / "rounds" / "1" / "decisions.json"
    document = json.loads(path.read_text())
    document["decisions"][0]["evidence"]["beyond_user_bound"] = "high"
    path.write_text(json.dumps(document))
    at = _app("alpha")
    assert _unescape(at.table[0].value["flag"][0]) == "⚠ optimum may lie above the upper bound"
    assert any("optimum may lie beyond it" in _unescape(w.value) for w in at.warning)


def test_text_from_run_files_is_never_rendered_as_html_or_markup(runs):
    hostile = "<img src=x onerror=alert(1)> **bold** [link](javascript:alert(1)) :red[x] $x$"
    path = runs / "alpha" / "rounds" / "1" / "decisions.json"
    document = json.loads(path.read_text())
    document["decisions"][0]["reason"] = hostile
    path.write_text(json.dumps(document))
    at = _app("alpha")
    _no_exception(at)
    assert at.table[0].value["reason"][0] == review.md_escape(hostile)
    assert review.md_escape(hostile) in [c.value for c in at.caption]
    for element in [*at.markdown, *at.caption]:  # alerts, tables and headings have no HTML mode at all
        assert not element.proto.allow_html, element.value


def _ov(k: int, i: int, field: str) -> str:
    return f"ov-alpha-{k}-{i}-{field}"


def test_an_edit_is_validated_and_written_as_overrides_json(runs):
    at = _app("alpha")
    i = 1  # units: int, step 16
    at.radio(key=_ov(1, i, "action")).set_value("edit").run()
    at.number_input(key=_ov(1, i, "low")).set_value(32)
    at.number_input(key=_ov(1, i, "high")).set_value(128)
    at.text_input(key=_ov(1, i, "note")).set_value("fits in memory")
    at.button(key=_ov(1, i, "save")).click().run()
    _no_exception(at)
    assert not at.error, [e.value for e in at.error]
    assert any("Saved" in _unescape(s.value) for s in at.success)
    document = json.loads((runs / "alpha" / "rounds" / "1" / "overrides.json").read_text())
    [entry] = document["overrides"]
    assert entry["name"] == "units" and entry["action"] == "edit" and entry["note"] == "fits in memory"
    assert entry["after"] == {"name": "units", "type": "int", "low": 32, "high": 128, "step": 16}
    # The page now shows the person's choice beside refiner's proposal.
    table = at.table[0].value
    assert _unescape(table["override"][i]) == "edited by a person: fits in memory"
    assert _unescape(table["after"][i]) == "[32, 128] step 16"
    assert table["refiner proposed"][i] != ""
    # ... and the export applies it (this is the last round).
    exported = json.loads(review.export_bytes(RunStore(runs / "alpha"), "json"))
    assert {p["name"]: p for p in exported["parameters"]}["units"]["high"] == 128


def test_a_bad_edit_shows_the_validation_message_and_writes_nothing(runs):
    at = _app("alpha")
    i = 1
    at.radio(key=_ov(1, i, "action")).set_value("edit").run()
    at.number_input(key=_ov(1, i, "low")).set_value(320)
    at.number_input(key=_ov(1, i, "high")).set_value(64)
    at.button(key=_ov(1, i, "save")).click().run()
    _no_exception(at)
    errors = [_unescape(e.value) for e in at.error]
    assert any("overrides[0].after: `low` must not exceed `high` for 'units', got low=320, high=64" in e
               for e in errors), errors
    assert not (runs / "alpha" / "rounds" / "1" / "overrides.json").exists()

    at.radio(key=_ov(1, i, "action")).set_value("json").run()
    at.text_area(key=_ov(1, i, "json")).set_value('{"name": "units", "type": "int", "low": 16,')
    at.button(key=_ov(1, i, "save")).click().run()
    assert any("not valid JSON" in _unescape(e.value) for e in at.error)
    assert not (runs / "alpha" / "rounds" / "1" / "overrides.json").exists()


def test_reject_and_then_return_to_the_proposal(runs):
    at = _app("alpha")
    at.radio(key=_ov(1, 0, "action")).set_value("reject").run()
    at.button(key=_ov(1, 0, "save")).click().run()
    path = runs / "alpha" / "rounds" / "1" / "overrides.json"
    assert json.loads(path.read_text())["overrides"][0]["action"] == "reject"
    assert _unescape(at.table[0].value["override"][0]) == "rejected by a person"
    at.radio(key=_ov(1, 0, "action")).set_value("keep").run()
    at.button(key=_ov(1, 0, "save")).click().run()
    assert json.loads(path.read_text())["overrides"] == []


def test_an_earlier_round_whose_successor_started_cannot_be_overridden(runs):
    at = _app("alpha")
    at.radio(key="round").set_value(0).run()
    _no_exception(at)
    assert not [w for w in at.button if w.key and w.key.startswith("ov-")]
    assert any("can no longer change it" in _unescape(c.value) for c in at.caption)


@pytest.mark.parametrize("name", ["../outside", "..%2Foutside", "/etc/passwd", "outside"])
def test_a_run_name_from_the_url_is_checked_against_the_listing(runs, name):
    shutil.copytree(runs / "alpha", runs.parent / "outside")  # a real run, next to the runs folder
    at = _app(name)
    _no_exception(at)
    assert any("Ignored the run named in the URL" in _unescape(e.value) for e in at.error)
    assert at.title[0].value in {"Run alpha", "Run beta", "Run broken"}
    assert at.selectbox(key="run").value in {"alpha", "beta", "broken"}


def test_a_corrupt_run_shows_its_problem_and_the_others_stay_usable(runs):
    at = _app("broken")
    _no_exception(at)
    [error] = at.error
    message = _unescape(error.value)
    assert message.startswith("This run cannot be shown:")
    assert "rounds/1/trials.jsonl: line 3" in message and "exploded" in message
    assert not at.get("plotly_chart")
    at.selectbox(key="run").set_value("alpha").run()
    _no_exception(at)
    assert not at.error and at.title[0].value == "Run alpha" and at.get("plotly_chart")


def test_the_page_rereads_a_run_when_its_files_change(runs):
    at = _app("alpha")
    assert {m.label: m.value for m in at.metric}["Trials"] == "16 / 16"
    path = runs / "alpha" / "rounds" / "1" / "trials.jsonl"
    record = json.loads(path.read_text().splitlines()[-1])
    record["trial_id"] = "1-99"
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n" + '{"trial_id": "1-100", "rou')  # plus a torn line
    at.run()
    _no_exception(at)
    assert {m.label: m.value for m in at.metric}["Trials"] == "17 / 16"


def test_a_run_that_has_just_started_a_round_renders_without_its_analysis(runs):
    # As the page sees a live run: round 1 has its space and one failed trial, nothing else yet.
    root = runs / "alpha"
    store = RunStore(root)
    for name in ("surrogate.json", "decisions.json"):
        (root / "rounds" / "1" / name).unlink()
    (root / "refined_space.json").unlink()
    failed = {"trial_id": "1-08", "round": 1, "hyperparameters": store.read_trials(1)[0].hyperparameters,
              "score": None, "status": "failed", "metrics": {}, "duration_s": 0.1, "message": "out of memory"}
    (root / "rounds" / "1" / "trials.jsonl").write_text(json.dumps(failed) + "\n")
    run = store.read_run()
    run["state"]["status"] = "running"
    store.write_run(run)
    at = _app("alpha")
    _no_exception(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Status"] == "running" and metrics["Trials"] == "9 / 16"
    assert any("has no decisions yet" in _unescape(i.value) for i in at.info)
    assert any("exported once the run has finished" in _unescape(i.value) for i in at.info)
    assert any("in progress" in _unescape(c.value) for c in at.caption)
    [trials] = [d.value for d in at.dataframe if "message" in d.value.columns]
    assert trials["status"].tolist() == ["failed"] and trials["message"].tolist() == ["out of memory"]


def test_an_empty_runs_folder_says_how_to_start(tmp_path, monkeypatch):
    monkeypatch.setenv("REFINER_RUNS", str(tmp_path / "nothing"))
    at = _app()
    _no_exception(at)
    assert any("No runs in" in _unescape(i.value) for i in at.info)


def test_runs_folder_comes_from_the_argument_then_the_environment(monkeypatch):
    monkeypatch.delenv("REFINER_RUNS", raising=False)
    assert runs_folder([]) == Path("runs")
    monkeypatch.setenv("REFINER_RUNS", "/data/runs")
    assert runs_folder([]) == Path("/data/runs")
    assert runs_folder(["--runs", "elsewhere", "--other"]) == Path("elsewhere")


def test_refiner_app_starts_the_packaged_page_on_loopback(monkeypatch, tmp_path):
    import os
    import subprocess

    from refiner.cli import main

    calls = []

    def launched(*args):
        calls.append(args[-1])
        raise SystemExit(0)  # os.execv does not return

    monkeypatch.setattr(os, "execv", launched)
    monkeypatch.setattr(subprocess, "call", launched)
    with pytest.raises(SystemExit):
        main(["app", "--runs", str(tmp_path)])
    [cmd] = calls
    script = cmd[cmd.index("run") + 1]
    assert script.endswith("refiner/review_app.py") and Path(script).exists()
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[-2:] == ["--runs", str(tmp_path.resolve())]
