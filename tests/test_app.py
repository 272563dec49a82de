"""The review app page, run in-process with streamlit.testing.v1.AppTest over run folders made by the loop.

Covered: run selection (sidebar and ?run=), the decision table, overrides written and validated
through the page, a path-traversal name in the URL, a corrupt run beside a good one, re-reading a
run when its files change, and how `refiner app` starts the packaged page.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from refiner import review
from refiner.review.page import runs_folder
from refiner.store import RunStore
from test_review import make_run

APP = Path(__file__).resolve().parent.parent / "app.py"


@pytest.fixture(autouse=True)
def _fresh_cache():
    # The page's caches live in the process, so one test's runs would leak into the next.
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture(autouse=True)
def _loopback(monkeypatch):
    # As `refiner app` starts it; the page refuses to serve on any other address (see the safety tests).
    from streamlit import config

    before = config.get_option("server.address")
    config.set_option("server.address", "127.0.0.1")
    monkeypatch.setattr(sys, "argv", ["app.py"])
    yield
    config.set_option("server.address", before)


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


def _chart_titles(at: AppTest) -> list[str]:
    """Every chart's title: the Vega-Lite charts each load draws, then the Plotly ones drawn on demand."""
    return [json.loads(c.proto.spec)["title"] for c in at.get("vega_lite_chart")] + [
        json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]


def _no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_picks_a_run_from_the_sidebar_and_shows_status_best_and_charts(runs):
    at = _app("alpha")
    _no_exception(at)
    assert at.title[0].value == "Run alpha"
    assert at.selectbox(key="run").options == ["alpha", "beta", "broken"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Status"] == "finished" and metrics["Trials"] == "16 / 16"
    assert "Epochs" not in metrics  # only a run with an epoch budget (fidelity.total) shows it
    best = RunStore(runs / "alpha").read_run()["state"]["best"]
    assert metrics["Best loss (min)"] == review.fmt(best["score"])
    charts = set(_chart_titles(at))
    assert "Incumbent curve: did each narrowing help?" in charts
    assert any(t.startswith("Round 1 against earlier rounds") for t in charts)
    assert any(t.startswith("Importance") for t in charts)
    # Per-parameter charts, the across-rounds chart and parallel coordinates are drawn on demand
    # (issue 14, defect 12 and its speed target).
    assert "Score against units" not in charts and not any(t.startswith("One line per trial") for t in charts)
    assert not any(t.endswith("trials per round") for t in charts)
    # incumbent, distribution, importance: Vega-Lite, which the browser draws far sooner than Plotly
    assert len(at.get("vega_lite_chart")) == 3 and not at.get("plotly_chart")
    at.session_state["param-1-1"] = True  # open units' section
    at.toggle(key="parcoords-1-on").set_value(True).run()
    charts = set(_chart_titles(at))
    assert "Score against units" in charts and any(t.startswith("Partial dependence of units") for t in charts)
    assert any(t.startswith("One line per trial") for t in charts)
    assert len(at.get("download_button")) == 4  # JSON, KerasTuner, Optuna, the round's CSV

    at.selectbox(key="run").set_value("beta").run()
    _no_exception(at)
    assert at.title[0].value == "Run beta" and at.query_params["run"] == "beta"
    at.radio(key="round").set_value(0).run()
    assert at.header[0].value == "Round 0: KerasTuner random search"


def test_decision_table_lists_every_decision_with_a_link_to_its_plot(runs):
    at = _app("alpha")
    decisions = RunStore(runs / "alpha").read_decisions(1)["decisions"]
    table = at.table[0].value
    links = [re.fullmatch(r"\[(.*)\]\(#r1-p(\d+)\)", cell) for cell in table["parameter"]]
    assert all(links)
    assert [_unescape(m.group(1)) for m in links] == [d["name"] for d in decisions]
    assert [int(m.group(2)) for m in links] == list(range(len(decisions)))
    assert [_unescape(a) for a in table["action"]] == [d["action"] for d in decisions]  # no override yet
    assert [_unescape(r) for r in table["reason"]] == [" ".join(d["reason"].split()) for d in decisions]
    expected = review.decision_frame({"decisions": decisions})
    assert [_unescape(b) for b in table["before"]] == list(expected["before"])
    assert [_unescape(b) for b in table["evidence"]] == list(expected["evidence"])
    # The anchors the links point at exist: one subheader per parameter, its section still closed.
    anchors = {h.proto.anchor for h in at.subheader}
    assert {f"r1-p{i}" for i in range(len(decisions))} <= anchors


def test_a_parameters_section_is_built_only_while_it_is_open(runs):
    # Issue 14's speed target: a closed section sends only its heading, its decision's line (type,
    # range, decision, importance) and the closed expander; the evidence, the charts and the override
    # controls come when it is opened, and "Open every parameter's section" opens them all.
    at = _app("alpha")
    decisions = RunStore(runs / "alpha").read_decisions(1)["decisions"]
    sections = [e for e in at.expander if e.label == "Evidence, charts and review"]
    assert len(sections) == len(decisions) and not any(e.proto.expanded for e in sections)
    assert any(_unescape(m.value).startswith("int, searched [16, 512] step 16 · decision **narrow** → [")
               for m in at.markdown)
    assert not any(t.key and t.key.startswith("ov-") for t in at.toggle)
    assert not any(" ".join(d["reason"].split()) in _unescape(c.value) for d in decisions for c in at.caption)
    assert len(_chart_titles(at)) == 3
    at.session_state["param-1-1"] = True
    at.run()
    _no_exception(at)
    assert [t.key for t in at.toggle if t.key and t.key.startswith("ov-")] == ["ov-alpha-1-1-open"]
    assert any(_unescape(c.value) == " ".join(decisions[1]["reason"].split()) for c in at.caption)
    titles = _chart_titles(at)
    assert len(titles) == 5 and "Score against units" in titles
    at.toggle(key="plots-all-1").set_value(True).run()
    _no_exception(at)
    assert all(at.session_state[f"param-1-{i}"] for i in range(len(decisions)))
    assert len([t for t in at.toggle if t.key and t.key.startswith("ov-")]) == len(decisions)
    at.toggle(key="plots-all-1").set_value(False).run()
    assert not any(t.key and t.key.startswith("ov-") for t in at.toggle) and len(_chart_titles(at)) == 3


def test_a_section_left_open_is_open_again_after_looking_at_another_round(runs):
    at = _app("alpha")
    at.session_state["param-1-1"] = True  # open units' section
    at.run()
    assert "ov-alpha-1-1-open" in [t.key for t in at.toggle]
    at.radio(key="round").set_value(0).run()
    _no_exception(at)
    assert not any(t.key and t.key.startswith("ov-alpha-1-") for t in at.toggle)
    at.radio(key="round").set_value(1).run()
    _no_exception(at)
    assert [t.key for t in at.toggle if t.key and t.key.startswith("ov-")] == ["ov-alpha-1-1-open"]
    at.session_state["param-1-1"] = False  # closed by the person: stays closed
    at.run()
    at.radio(key="round").set_value(0).run()
    at.radio(key="round").set_value(1).run()
    assert not any(t.key and t.key.startswith("ov-") for t in at.toggle)


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
    at.session_state["param-1-0"] = True  # the reason's caption is in the parameter's section
    at.run()
    _no_exception(at)
    assert at.table[0].value["reason"][0] == review.md_escape(hostile)
    assert review.md_escape(hostile) in [c.value for c in at.caption]
    for element in [*at.markdown, *at.caption]:  # alerts, tables and headings have no HTML mode at all
        assert not element.proto.allow_html, element.value
    # A name the reason quotes in backticks shows as code, in the table and in the section's caption.
    quoting = "Kept: only 2 completed trials have `dropout` active."
    document["decisions"][0]["reason"] = quoting
    path.write_text(json.dumps(document))
    at.run()
    assert at.table[0].value["reason"][0] == review.md_message(quoting) != review.md_escape(quoting)
    assert review.md_message(quoting) in [c.value for c in at.caption]


def _ov(k: int, i: int, field: str) -> str:
    return f"ov-alpha-{k}-{i}-{field}"


def _open(at: AppTest, k: int, i: int) -> AppTest:
    """Open the parameter's section, then its review switch."""
    at.session_state[f"param-{k}-{i}"] = True
    return at.run().toggle(key=_ov(k, i, "open")).set_value(True).run()


def test_an_edit_is_validated_and_written_as_overrides_json(runs):
    at = _open(_app("alpha"), 1, 1)
    i = 1  # units: int, step 16
    at.radio(key=_ov(1, i, "action")).set_value("edit").run()
    at.text_input(key=_ov(1, i, "low")).set_value("32")
    at.text_input(key=_ov(1, i, "high")).set_value("128")
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
    # Header and action column say what the next space uses, not refiner's superseded action (defect 10).
    assert _unescape(table["action"][i]) == "edited by a person"
    assert any("decision **edited by a person**" in _unescape(m.value) for m in at.markdown)
    # In the last round the text names the refined space, not a next round that does not exist (defect 6).
    infos = [_unescape(x.value) for x in at.info if "A person edited" in _unescape(x.value)]
    assert infos and "the refined space uses [32, 128] step 16" in infos[0] and "next round" not in infos[0]
    # ... and the export applies it (this is the last round).
    exported = json.loads(review.export_bytes(RunStore(runs / "alpha"), "json"))
    assert {p["name"]: p for p in exported["parameters"]}["units"]["high"] == 128


def _save_edit(at: AppTest, i: int, low: str, high: str, beyond: bool = False) -> list[str]:
    at.radio(key=_ov(1, i, "action")).set_value("edit").run()
    at.text_input(key=_ov(1, i, "low")).set_value(low)
    at.text_input(key=_ov(1, i, "high")).set_value(high)
    at.checkbox(key=_ov(1, i, "beyond")).set_value(beyond)
    at.button(key=_ov(1, i, "save")).click().run()
    _no_exception(at)
    return [_unescape(e.value) for e in at.error]


@pytest.mark.parametrize("low, high, message", [
    ("320", "64", "Not saved: units: low must be below high, got low=320, high=64"),
    ("0.001", "0.01", "Not saved: units: low must be a whole number (int parameter), got '0.001'"),
    ("64", "64", "Not saved: units: low must be below high, got low=64, high=64 (a zero-width range"),
    ("16", "1024", "Not saved: units: [16, 1024] reaches outside the declared range [16, 512]; tick 'go beyond"),
    ("abc", "64", "Not saved: units: low must be a whole number (int parameter), got 'abc'"),
])
def test_a_bad_int_edit_is_refused_with_a_clear_message_and_writes_nothing(runs, low, high, message):
    at = _open(_app("alpha"), 1, 1)  # units: int [16, 512] step 16 (defect 2)
    errors = _save_edit(at, 1, low, high)
    assert any(e.startswith(message) for e in errors), errors
    assert all("`" not in e and "overrides[" not in e for e in errors), errors  # defect 9
    assert not (runs / "alpha" / "rounds" / "1" / "overrides.json").exists()


def test_going_beyond_the_declared_range_needs_the_box_ticked(runs):
    at = _open(_app("alpha"), 1, 1)
    assert _save_edit(at, 1, "16", "1024", beyond=True) == []
    after = json.loads((runs / "alpha" / "rounds" / "1" / "overrides.json").read_text())["overrides"][0]["after"]
    assert (after["low"], after["high"]) == (16, 1024)


def test_a_float_edit_keeps_tiny_values_and_names_the_parameter_in_errors(runs):
    at = _open(_app("alpha"), 1, 0)  # learning_rate: log float
    assert _save_edit(at, 0, "0.0005", "0.002") == []
    after = json.loads((runs / "alpha" / "rounds" / "1" / "overrides.json").read_text())["overrides"][0]["after"]
    assert (after["low"], after["high"]) == (0.0005, 0.002)
    at.radio(key=_ov(1, 0, "action")).set_value("json").run()
    at.text_area(key=_ov(1, 0, "json")).set_value('{"name": "lr", "type": "float", "low": 0.001, "high": 0.01}')
    at.button(key=_ov(1, 0, "save")).click().run()
    errors = [_unescape(e.value) for e in at.error]
    assert any(e.startswith("Not saved: learning_rate: name: must be 'learning_rate'") for e in errors), errors


def test_a_saved_override_keeps_another_open_review_open(runs):
    # Defect 1: after a Save, the next click in another decision's review section collapsed it.
    at = _open(_open(_app("alpha"), 1, 0), 1, 2)
    at.radio(key=_ov(1, 0, "action")).set_value("reject").run()
    at.button(key=_ov(1, 2, "save")).click().run()  # save the other one (activation: keep)
    _no_exception(at)
    assert any("Saved" in _unescape(s.value) for s in at.success)
    assert at.session_state["param-1-0"] is True and at.session_state["param-1-2"] is True  # sections open
    assert at.toggle(key=_ov(1, 0, "open")).value is True
    assert at.radio(key=_ov(1, 0, "action")).value == "reject"  # still open, the choice still there
    at.button(key=_ov(1, 0, "save")).click().run()
    assert json.loads((runs / "alpha" / "rounds" / "1" / "overrides.json").read_text())["overrides"][0]["action"] == "reject"
    # The section whose decision changed stays open too (its identity must not follow the decision).
    assert at.toggle(key=_ov(1, 0, "open")).value is True
    assert any("A person rejected this decision" in _unescape(x.value) for x in at.info)


def test_json_edit_errors(runs):
    at = _open(_app("alpha"), 1, 1)
    i = 1

    at.radio(key=_ov(1, i, "action")).set_value("json").run()
    at.text_area(key=_ov(1, i, "json")).set_value('{"name": "units", "type": "int", "low": 16,')
    at.button(key=_ov(1, i, "save")).click().run()
    assert any("not valid JSON" in _unescape(e.value) for e in at.error)
    assert not (runs / "alpha" / "rounds" / "1" / "overrides.json").exists()


def test_reject_and_then_return_to_the_proposal(runs):
    at = _open(_app("alpha"), 1, 0)
    at.radio(key=_ov(1, 0, "action")).set_value("reject").run()
    at.button(key=_ov(1, 0, "save")).click().run()
    path = runs / "alpha" / "rounds" / "1" / "overrides.json"
    assert json.loads(path.read_text())["overrides"][0]["action"] == "reject"
    assert _unescape(at.table[0].value["override"][0]) == "rejected by a person"
    assert _unescape(at.table[0].value["action"][0]) == "rejected by a person (range kept)"
    at.radio(key=_ov(1, 0, "action")).set_value("keep").run()
    at.button(key=_ov(1, 0, "save")).click().run()
    assert json.loads(path.read_text())["overrides"] == []


def test_an_earlier_round_whose_successor_started_cannot_be_overridden(runs):
    at = _app("alpha")
    at.radio(key="round").set_value(0).run()
    at.session_state["param-0-0"] = True
    at.run()
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
    assert not _chart_titles(at)
    at.selectbox(key="run").set_value("alpha").run()
    _no_exception(at)
    assert not at.error and at.title[0].value == "Run alpha" and _chart_titles(at)


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
    from refiner.lock import RunLock

    with RunLock(root):  # a live writer, as a running `refiner run` holds it
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
    assert script.endswith("refiner/review/page.py") and Path(script).exists()
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[-2:] == ["--runs", str(tmp_path.resolve())]


def test_a_killed_run_is_shown_stopped_with_the_command_that_resumes_it(runs):
    # Defect 3: run.json still says "running" but no process holds the run folder.
    store = RunStore(runs / "alpha")
    run = store.read_run()
    run["state"]["status"] = "running"
    run["settings"]["config"] = "examples/alpha.toml"
    store.write_run(run)
    at = _app("alpha")
    _no_exception(at)
    assert {m.label: m.value for m in at.metric}["Status"] == "stopped (writer gone)"
    [error] = [_unescape(e.value) for e in at.error]
    assert "no refiner process holds the run folder" in error
    assert f"resume with 'refiner run examples/alpha.toml --run-dir {runs / 'alpha'}'" in error.replace("`", "'")
    assert not any("re-reads" in _unescape(c.value) for c in at.caption)  # no endless live polling


def test_rounds_are_numbered_from_0_and_the_engine_is_named(runs):
    # Defects 4 and 11: "Round 2 / 3" above "Round 1: Bayesian search"; an Optuna run called Bayesian.
    store = RunStore(runs / "alpha")
    run = store.read_run()
    run["settings"]["engine"] = "optuna"
    store.write_run(run)
    at = _app("alpha")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Round"] == "1" and metrics["Engine"] == "optuna"
    assert at.header[0].value == "Round 1: Optuna model-based sampler (TPE or GP)"
    assert at.radio(key="round").options == ["0 (Optuna random sampler)", "1 (Optuna model-based sampler (TPE or GP))"]


def test_live_updates_off_reads_as_a_sentence(runs):
    from refiner.lock import RunLock

    store = RunStore(runs / "alpha")
    store.update_state(status="running")
    with RunLock(runs / "alpha"):
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.query_params["run"] = "alpha"
        at.session_state["live"] = False
        at.run()
    captions = [_unescape(c.value) for c in at.caption]
    assert "The run is in progress; live updates are off (sidebar), so this page shows it as it was when loaded." \
        in captions, captions


def test_an_untrusted_surrogates_importance_is_marked(runs):
    path = runs / "alpha" / "rounds" / "1" / "surrogate.json"
    document = json.loads(path.read_text())
    document["trusted"] = False
    path.write_text(json.dumps(document))
    at = _app("alpha")
    titles = _chart_titles(at)
    assert any(t.startswith("Importance") and t.endswith("NOT TRUSTED: ranges kept") for t in titles), titles


@pytest.mark.parametrize("address, allowed", [("", False), ("0.0.0.0", False), ("0.0.0.0", True)])
def test_the_page_serves_nothing_off_loopback_unless_allowed(runs, monkeypatch, address, allowed):
    # Defect 13: `streamlit run app.py` outside the repository listens on every interface.
    from streamlit import config

    config.set_option("server.address", address)
    monkeypatch.setattr(sys, "argv", ["app.py", *(["--allow-remote"] if allowed else [])])
    at = _app("alpha")
    _no_exception(at)
    if allowed:
        assert any("Shared view" in _unescape(w.value) for w in at.warning)
        assert at.title[0].value == "Run alpha"
    else:
        [error] = at.error
        assert _unescape(error.value).startswith("Not served: this server listens on")
        assert [t.value for t in at.title] == ["refiner review"] and not _chart_titles(at)


def test_read_only_switches_overrides_and_approval_off(runs, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["app.py", "--read-only"])
    at = _app("alpha")
    at.toggle(key="plots-all-1").set_value(True).run()  # every section open: still nothing to edit
    _no_exception(at)
    assert len(_chart_titles(at)) > 3
    assert not [w for w in at.toggle if w.key and w.key.startswith("ov-")]
    assert not [b for b in at.button if b.key and (b.key.startswith("ov-") or b.key.startswith("approve"))]
    assert any("Read-only" in _unescape(i.value) for i in at.sidebar.info)


def test_refiner_app_refuses_another_address_without_allow_remote(capsys, monkeypatch, tmp_path):
    import os

    from refiner.cli import main

    assert main(["app", "--runs", str(tmp_path), "--address", "0.0.0.0"]) == 2
    assert "--address 0.0.0.0: the app has no login" in capsys.readouterr().err
    calls = []
    monkeypatch.setattr(os, "execv", lambda *args: (calls.append(args[-1]), (_ for _ in ()).throw(SystemExit(0))))
    with pytest.raises(SystemExit):
        main(["app", "--runs", str(tmp_path), "--address", "0.0.0.0", "--allow-remote", "--read-only"])
    assert calls[0][-2:] == ["--read-only", "--allow-remote"]
    assert calls[0][calls[0].index("--server.fileWatcherType") + 1] == "none"  # new tabs load faster


def test_runs_overview_lists_status_engine_best_and_trials(runs):
    at = _app("alpha")
    at.sidebar.radio(key="view").set_value("Runs overview").run()
    _no_exception(at)
    frame = at.dataframe[0].value
    assert list(frame["run"]) == ["alpha", "beta", "broken"]
    row = frame.iloc[0]
    assert row["status"] == "finished" and row["engine"] == "keras-tuner" and row["trials"] == 16
    assert frame.iloc[2]["status"] == "finished"  # run.json of the broken run is fine; its trial line is not


def test_across_rounds_shows_one_chart_at_a_time_ranges_contour_or_parallel(runs):
    at = _app("alpha")

    def titles() -> list[str]:
        return _chart_titles(at)

    assert at.radio(key="across").value is None and len(titles()) == 3  # none until one is picked
    at.radio(key="across").set_value("Ranges").run()
    _no_exception(at)
    assert any(t.endswith("searched range (box) and trials per round") for t in titles())
    at.radio(key="across").set_value("Contour").run()
    _no_exception(at)
    assert any("interpolated between the trials (not a model)" in t for t in titles())
    assert not any(t.endswith("trials per round") for t in titles())
    assert any("trust them only where dots are dense" in _unescape(c.value) for c in at.caption)
    at.radio(key="across").set_value("Parallel coordinates").run()
    assert any(t.startswith("All rounds: one line per trial") for t in titles()) and len(titles()) == 4


def test_a_big_rounds_trials_table_is_drawn_on_demand(runs, monkeypatch):
    from refiner.review import page

    monkeypatch.setattr(page, "TRIALS_SHOWN", 5)  # alpha's rounds have 8 trials
    at = _app("alpha")
    assert not [d for d in at.dataframe if "status" in d.value.columns]
    at.toggle(key="trials-1-on").set_value(True).run()
    [trials] = [d.value for d in at.dataframe if "status" in d.value.columns]
    assert len(trials) == 8


def test_compare_overlays_the_picked_runs_and_leaves_out_another_objective(runs):
    run = RunStore(runs / "beta").read_run()
    run["settings"]["objective"] = {"name": "accuracy", "direction": "max"}
    RunStore(runs / "beta").write_run(run)
    at = _app("alpha")
    at.sidebar.radio(key="view").set_value("Runs overview").run()
    at.multiselect(key="compare").set_value(["alpha", "beta"]).run()
    _no_exception(at)
    [chart] = at.get("plotly_chart")
    spec = json.loads(chart.proto.spec)
    assert [d["name"] for d in spec["data"]] == ["alpha"]
    assert any("beta left out: it optimises accuracy (max)" in _unescape(w.value) for w in at.warning)


@pytest.mark.slow
def test_approve_and_continue_lets_a_waiting_run_go_on_and_says_so(tmp_path, monkeypatch):
    """The gate from the app's side: the button writes the approval, the page confirms it, the run goes on."""
    from refiner.gate import read_approval
    from test_gate import _agent, _in_thread, _wait_status

    runs = tmp_path / "runs"
    monkeypatch.setenv("REFINER_RUNS", str(runs))
    # The confirmation stays 10 s from its first drawing; the run going on (in this process) makes the
    # page rerun, and on a busy machine that rerun came after the 10 s (an empty list below).
    monkeypatch.setattr("refiner.review.page.FLASH_SECONDS", 600)
    agent = _agent(runs)
    thread, errors = _in_thread(agent)
    _wait_status(agent.store, "awaiting_review")
    at = _app("gated")
    _no_exception(at)
    assert any("waits for review" in _unescape(m.value) for m in at.markdown)
    at.button(key="approve-0").click().run()
    _no_exception(at)
    assert [_unescape(s.value) for s in at.success if "Approved round 0" in _unescape(s.value)] == [
        "Approved round 0: the run goes on to round 1."]
    assert read_approval(agent.store, 0)["by"] == "app"
    thread.join(120)
    assert not thread.is_alive() and not errors, errors
    assert agent.store.read_run()["state"]["status"] == "finished"
    at = _app("gated")  # read again: round 0 shows the approval as a record, the button is gone
    at.radio(key="round").set_value(0).run()
    assert not [b for b in at.button if b.key == "approve-0"]
    assert any(_unescape(c.value).startswith("Approved (app") for c in at.caption)


def test_a_run_with_an_epoch_budget_shows_the_epochs_spent_in_all_and_per_round(tmp_path, monkeypatch):
    # Issue 11: the page says what `refiner show` says: the epochs trained against fidelity.total.
    import refiner
    from refiner import console
    from refiner.fidelity import trial_epochs
    from refiner.space import Float, SearchSpace

    def curve_loss(p, budget):
        return (p["x"] - 1.0) ** 2 + 2.0 / budget

    total = 60
    refiner.Refiner(function=curve_loss, space=SearchSpace([Float("x", -3.0, 3.0)]), objective="loss", rounds=2,
                    fidelity=refiner.Fidelity("epochs", min=1, max=9, eta=3, total=total), directory=tmp_path / "runs",
                    project_name="paid", verbose=0, narrowing={"min_trials": 4}).search()
    store = RunStore(tmp_path / "runs" / "paid")
    spent = [sum(trial_epochs(t) for t in store.read_trials(k)) for k in (0, 1)]
    monkeypatch.setenv("REFINER_RUNS", str(tmp_path / "runs"))
    at = _app("paid")
    _no_exception(at)
    assert {m.label: m.value for m in at.metric}["Epochs"] == f"{sum(spent)} / {total}"
    # The trial count is only a cap here, and trials a rung stopped are evidence, not failures.
    trials = store.all_trials()
    stopped = sum(1 for t in trials if t.status.value == "stopped")
    [count] = [m for m in at.metric if m.label == "Trials"]
    assert stopped and count.value == str(len(trials)) and count.delta == f"{stopped} stopped early"
    shares = {k: share for k, _, share in console.epoch_spend(store.read_run()["settings"], {0: [], 1: []}).rounds}
    assert sum(shares.values()) == total
    for k in (0, 1):
        at.radio(key="round").set_value(k).run()
        assert f"Epochs: {spent[k]} trained in this round, whose share of fidelity.total = {total} is {shares[k]}." in [
            _unescape(c.value) for c in at.caption]
