"""The review app's pure side (refiner.review): listing, loading, tables, figures, overrides, export.

Run folders come from the real loop on a fast function with every parameter kind (log float,
stepped int, choice, boolean, conditional float), built once for the module.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil

import pytest

import refiner
from refiner import review, schemas
from refiner.cli import main as cli_main
from refiner.errors import RunFolderError
from refiner.overrides import write_overrides
from refiner.space import Boolean, Choice, Float, Int, SearchSpace, parameter_from_dict
from refiner.store import RunStore
from refiner.trial import Objective

SPACE = SearchSpace([
    Float("learning_rate", 1e-4, 1e-1, log=True),
    Int("units", 16, 512, step=16),
    Choice("activation", ("relu", "tanh", "sigmoid")),
    Boolean("use_dropout"),
    Float("dropout", 0.0, 0.5, conditions=({"parent": "use_dropout", "values": [True]},)),
])


def mixed(p):
    # Optimum at the upper bound of learning_rate, so narrowing flags "the optimum may lie beyond".
    loss = (math.log10(p["learning_rate"]) + 1.0) ** 2 + ((p["units"] - 200) / 200) ** 2
    loss += {"relu": 0.0, "tanh": 0.3, "sigmoid": 1.0}[p["activation"]]
    if p["use_dropout"]:
        loss += (p["dropout"] - 0.2) ** 2
    return loss


def make_run(directory, name="mixed", rounds=2, trials=8):
    refiner.Refiner(function=mixed, space=SPACE, objective=Objective("loss", "min"), rounds=rounds,
                    trials_per_round=trials, directory=directory, project_name=name, seed=0,
                    narrowing={"min_trials": 4, "min_cv_score": 0.0}).search()
    return directory / name


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    make_run(runs)
    return runs


@pytest.fixture
def runs(built, tmp_path):
    """A private copy of the built runs folder, so a test may change or break it."""
    copy = tmp_path / "runs"
    shutil.copytree(built, copy)
    return copy


# -- listing and names --------------------------------------------------------------------------
def test_list_runs_lists_run_folders_by_name_only(runs):
    (runs / "not_a_run").mkdir()
    (runs / ".hidden").mkdir()
    shutil.copytree(runs / "mixed", runs / ".hidden" / "x")
    (runs / "file.txt").write_text("x")
    shutil.copytree(runs / "mixed", runs / "another")
    assert review.list_runs(runs) == ["another", "mixed"]
    assert review.list_runs(runs / "missing") == []


@pytest.mark.parametrize("name", ["../mixed", "..", ".", "a/b", "a\\b", "/etc", ".hidden", "", "mi\x00xed",
                                  " mixed", "mixed/../mixed"])
def test_unsafe_run_names_are_refused_before_any_path_is_built(runs, name):
    with pytest.raises(review.RunNameError, match="not allowed"):
        review.check_run_name(runs, name)


def test_a_run_outside_the_listing_is_refused_even_if_it_exists(runs, tmp_path):
    shutil.copytree(runs / "mixed", tmp_path / "outside")
    with pytest.raises(review.RunNameError, match="no run named 'outside'"):
        review.load_run(runs, "outside")
    assert review.resolve_run(runs, "mixed") == runs / "mixed"


def test_latest_run_is_the_one_changed_last(runs):
    import os

    shutil.copytree(runs / "mixed", runs / "older")
    os.utime(runs / "older" / "run.json", (1, 1))
    assert review.latest_run(runs) == "mixed"
    assert review.latest_run(runs / "missing") is None


# -- loading --------------------------------------------------------------------------------------
def test_load_run_reads_every_round(runs):
    view = review.load_run(runs, "mixed")
    assert view.status == "finished" and view.has_refined_space
    assert [r.k for r in view.rounds] == [0, 1]
    assert all(len(r.trials) == 8 for r in view.rounds)
    r0, r1 = view.rounds
    assert r0.next_started and not r1.next_started
    assert r0.surrogate["model"] and r0.decisions["round"] == 0
    assert [d["name"] for d in r1.decisions["decisions"]] == SPACE.names
    assert view.best.score == min(t.score for t in view.trials if t.ok)
    assert view.events and view.events[-1]["event"] == "run_finished"


def test_a_torn_or_invalid_trial_line_gives_one_clear_line(runs):
    path = runs / "mixed" / "rounds" / "1" / "trials.jsonl"
    lines = path.read_text().splitlines()
    record = json.loads(lines[2])
    record["status"] = "exploded"
    lines[2] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RunFolderError) as info:
        review.load_run(runs, "mixed")
    message = str(info.value)
    assert "trials.jsonl: line 3" in message and "exploded" in message and "\n" not in message


def test_a_torn_last_line_is_ignored_while_the_run_is_written(runs):
    path = runs / "mixed" / "rounds" / "1" / "trials.jsonl"
    with open(path, "a") as fh:
        fh.write('{"trial_id": "1-99", "rou')  # a writer caught mid-line
    assert len(review.load_run(runs, "mixed").round(1).trials) == 8


@pytest.mark.parametrize("breakage, expected", [
    (lambda root: (root / "run.json").write_text("{not json"), "run.json: line 1 column 2: not valid JSON"),
    (lambda root: (root / "run.json").write_text(json.dumps({"format_version": 1})),
     "run.json: $: 'created_at' is a required property"),
    (lambda root: (root / "rounds" / "0" / "surrogate.json").write_text('{"format_version": 2}'), "surrogate.json"),
    (lambda root: (root / "rounds" / "1" / "overrides.json").write_text(json.dumps(
        {"format_version": 1, "round": 1, "overrides": [{"name": "nope", "action": "reject"}]})),
     "overrides.json: overrides[0].name: must name a parameter of round 1"),
])
def test_a_corrupt_run_raises_run_folder_error_naming_the_file(runs, breakage, expected):
    breakage(runs / "mixed")
    with pytest.raises(RunFolderError) as info:
        review.load_run(runs, "mixed")
    assert expected in str(info.value)


def test_run_signature_changes_only_when_a_file_the_app_reads_changes(runs):
    root = runs / "mixed"
    before = review.run_signature(root)
    assert review.run_signature(root) == before
    (root / "rounds" / "0" / "kt" / "noise.txt").write_text("KerasTuner's own files do not count")
    assert review.run_signature(root) == before
    with open(root / "rounds" / "1" / "trials.jsonl", "a") as fh:
        fh.write("\n")
    assert review.run_signature(root) != before


# -- tables ---------------------------------------------------------------------------------------
def test_trials_frame_has_every_hyperparameter_metric_status_and_duration(runs):
    view = review.load_run(runs, "mixed")
    r = view.round(1)
    frame = review.trials_frame(r.trials, r.space)
    assert list(frame.columns[:5]) == ["trial", "round", "status", "score", "duration (s)"]
    assert set(SPACE.names) <= set(frame.columns) and "metric: loss" in frame.columns
    assert list(frame["trial"]) == [t.trial_id for t in r.trials]
    assert frame["score"].tolist() == [t.score for t in r.trials]
    inactive = [t for t in r.trials if not t.hyperparameters["use_dropout"]]
    for t in inactive:
        assert frame.loc[frame["trial"] == t.trial_id, "dropout"].isna().all()
    csv = frame.to_csv(index=False)
    assert csv.splitlines()[0].startswith("trial,round,status,score")


def test_incumbent_frame_is_monotone_in_the_objective_direction(runs):
    view = review.load_run(runs, "mixed")
    frame = review.incumbent_frame(view.trials, view.objective)
    best = frame["best so far"].tolist()
    assert best == sorted(best, reverse=True)  # "loss": lower is better
    assert best[-1] == view.best.score and frame["n"].tolist() == list(range(1, len(view.trials) + 1))


def _decisions_doc(flag=None, dropped=()):
    before = {"name": "act", "type": "choice", "values": ["a", "b", "c"]}
    after = {"name": "act", "type": "choice", "values": [v for v in "abc" if v not in dropped]}
    lr_before = {"name": "lr", "type": "float", "low": 0.0001, "high": 0.1, "log": True}
    lr_after = {"name": "lr", "type": "float", "low": 0.01, "high": 0.1, "log": True}
    return {"format_version": 1, "round": 0, "n_trials": 9, "surrogate_trusted": True, "decisions": [
        {"name": "lr", "action": "narrow", "before": lr_before, "after": lr_after, "reason": "narrowed <b>it</b>",
         "evidence": {"incumbent": 0.09, "incumbent_trial": "0-03", "cv_score": 0.8, "model": "extra_trees",
                      "importance": 0.7, "n_trials": 9, "beyond_user_bound": flag, "region_low": 0.02,
                      "region_high": 0.1, "shrink": 0.33}},
        {"name": "act", "action": "drop_values" if dropped else "keep", "before": before, "after": after,
         "reason": "values", "evidence": {"incumbent": "a", "cv_score": 0.8, "importance": 0.3, "n_trials": 9,
                                          "beyond_user_bound": None, "dropped": list(dropped)}},
    ], "next_space": {"format_version": 1, "parameters": [lr_after, after]}}


def test_decision_frame_shows_each_decision_and_flags_the_bound_the_optimum_may_lie_beyond():
    frame = review.decision_frame(_decisions_doc(flag="high"))
    assert list(frame["parameter"]) == ["lr", "act"]
    assert list(frame["action"]) == ["narrow", "keep"]
    lr = frame.iloc[0]
    assert lr["before"] == "[0.0001, 0.1] log" and lr["after"] == "[0.01, 0.1] log"
    assert lr["flag"] == "⚠ optimum may lie above the upper bound" and frame.iloc[1]["flag"] == ""
    assert lr["reason"] == "narrowed <b>it</b>"  # kept as text; the app escapes it
    assert "best trial's value 0.09 (trial 0-03)" in lr["evidence"] and "new width 33% of old" in lr["evidence"]
    assert review.beyond_text({"beyond_user_bound": "both"}).startswith("⚠")


def test_decision_frame_shows_a_persons_override_beside_the_proposal(runs):
    store = RunStore(runs / "mixed")
    edited = {"name": "units", "type": "int", "low": 64, "high": 256, "step": 16}
    write_overrides(store, 1, [{"name": "units", "action": "edit", "after": edited, "note": "memory"},
                               {"name": "activation", "action": "reject"}])
    r = review.load_run(runs, "mixed").round(1)
    frame = review.decision_frame(r.decisions).set_index("parameter")
    assert frame.loc["units", "after"] == "[64, 256] step 16"
    assert frame.loc["units", "refiner proposed"] != ""
    assert frame.loc["units", "override"] == "edited by a person: memory"
    assert frame.loc["activation", "override"] == "rejected by a person"
    assert frame.loc["learning_rate", "override"] == ""
    table = review.overrides_frame(r.overrides)
    assert list(table["parameter"]) == ["units", "activation"] and table.iloc[0]["note"] == "memory"


def test_md_escape_leaves_no_markup_active():
    hostile = "<script>alert(1)</script> [x](javascript:alert(1)) **b** :red[x] $x$ `c` | #h\nnext"
    out = review.md_escape(hostile)
    assert "\n" not in out
    # Every ASCII punctuation mark that Markdown or Streamlit reads is preceded by a backslash.
    assert not re.search(r"(?<!\\)[<>\[\]()*:$`|#]", out)
    assert review.md_escape("plain words 12") == "plain words 12"


def test_a_message_shows_quoted_names_as_code_and_nothing_else_as_markup():
    # Issue 14, defect 9: narrowing reasons quote names in backticks, shown literally before.
    out = review.md_message("Kept: only 2 completed trials have `dropout` active, fewer than min_trials=5.")
    assert out == r"Kept\: only 2 completed trials have `dropout` active, fewer than min\_trials\=5\."
    hostile = "**b** `[x](javascript:alert(1))` <i>x</i> :red[y]"
    out = review.md_message(hostile)
    code = re.findall(r"(?<!\\)`([^`]*)`", out)
    assert code == ["[x](javascript:alert(1))"]  # inside a code span Markdown reads nothing
    outside = re.sub(r"(?<!\\)`[^`]*`", "", out)
    assert not re.search(r"(?<!\\)[<>\[\]()*:$`|#]", outside)
    assert review.md_message("an `unpaired backtick") == review.md_escape("an `unpaired backtick")


# -- figures --------------------------------------------------------------------------------------
def test_incumbent_chart_colours_by_round_and_draws_the_best_so_far(runs):
    view = review.load_run(runs, "mixed")
    spec = review.incumbent_chart(view.trials, view.objective).to_dict()
    dots, line = spec["layer"]
    scale = dots["encoding"]["color"]["scale"]
    assert scale["domain"] == ["round 0", "round 1", "best so far"]
    assert scale["range"] == [review.round_color(0), review.round_color(1), "black"]  # a round keeps its colour
    points = spec["datasets"][dots["data"]["name"]]
    assert len(points) == len(view.trials) and {p["series"] for p in points} == {"round 0", "round 1"}
    best = [p["score"] for p in spec["datasets"][line["data"]["name"]]]
    assert best == sorted(best, reverse=True) and best[-1] == min(p["score"] for p in points)  # loss: falls
    assert line["mark"]["interpolate"] == "step-after"


def test_scatter_of_a_log_parameter_has_a_log_axis_and_the_before_after_ranges(runs):
    view = review.load_run(runs, "mixed")
    r = view.round(0)
    p = r.space["learning_rate"]
    d = r.decision("learning_rate")
    fig = review.param_scatter_figure(p, view.trials, view.objective, d, 0)
    assert fig.layout.xaxis.type == "log"
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    before, after = parameter_from_dict(d["before"]), parameter_from_dict(d["after"])
    # Plotly.js 4 places shapes on a log axis by value, annotations by log10 of the value.
    assert (rects[0].x0, rects[0].x1) == pytest.approx((before.low, before.high))
    assert (rects[1].x0, rects[1].x1) == pytest.approx((after.low, after.high))
    labels = {a.text.strip(): a.x for a in fig.layout.annotations}
    assert labels["searched"] == pytest.approx(math.log10(before.low))
    assert labels["next round"] == pytest.approx(math.log10(after.high))
    assert any(t.name == "best trial" for t in fig.data)


def test_scatter_marks_the_flagged_bound_and_dropped_values():
    doc = _decisions_doc(flag="high", dropped=("c",))
    lr = parameter_from_dict(doc["decisions"][0]["before"])
    trials = [refiner.Trial(f"0-{i}", 0, {"lr": 10 ** (-4 + i / 3), "act": "abc"[i % 3]}, float(i),
                            refiner.TrialState.COMPLETE) for i in range(9)]
    fig = review.param_scatter_figure(lr, trials, Objective("loss", "min"), doc["decisions"][0], 0)
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(lines) == 1 and lines[0].x0 == pytest.approx(0.1)  # the upper bound
    assert any(a.text.startswith("⚠") and a.x == pytest.approx(-1.0) for a in fig.layout.annotations)
    act = parameter_from_dict(doc["decisions"][1]["before"])
    fig = review.param_scatter_figure(act, trials, Objective("loss", "min"), doc["decisions"][1], 0)
    assert fig.layout.xaxis.type == "category"
    fills = [s.fillcolor for s in fig.layout.shapes]
    assert len(fills) == 3 and fills[2] != fills[0] == fills[1]  # 'c' dropped, 'a' and 'b' kept
    assert [a.text for a in fig.layout.annotations] == ["kept", "kept", "dropped"]


# -- issue 14, defect 7 -----------------------------------------------------------------------
def _trial(i, k, hps, score):
    return refiner.Trial(f"{k}-{i:02d}", k, hps, score, refiner.TrialState.COMPLETE)


def test_choice_and_boolean_legends_show_markers(runs):
    view = review.load_run(runs, "mixed")
    r = view.round(1)
    for name in ("activation", "use_dropout"):
        fig = review.param_scatter_figure(r.space[name], view.trials, view.objective, r.decision(name), 1)
        legend = [t for t in fig.data if t.showlegend is not False]
        assert {t.name for t in legend} >= {"round 0", "round 1", "best trial"}
        # Every legend entry is drawn as a marker, in its round's colour (a box trace's entry is empty).
        assert all(t.type == "scatter" and "markers" in t.mode for t in legend), [(t.type, t.name) for t in legend]
        assert {t.name: t.marker.color for t in legend}["round 1"] == review.round_color(1)


def test_the_star_marks_the_best_trial_shown_even_if_it_did_not_use_a_conditional_parameter():
    dropout = Float("dropout", 0.0, 0.5, conditions=({"parent": "use_dropout", "values": [True]},))
    with_it = [_trial(i, 0, {"use_dropout": True, "dropout": 0.1 * i}, 1.0 + i) for i in range(4)]
    best_without = _trial(9, 1, {"use_dropout": False}, 0.5)  # the run's best: dropout inactive
    fig = review.param_scatter_figure(dropout, [*with_it, best_without], Objective("loss", "min"))
    assert not any(t.name == "best trial" for t in fig.data)  # not the best of those that used it (1.0)
    assert any("best trial (0.5) did not use dropout" in a.text for a in fig.layout.annotations)
    fig = review.param_scatter_figure(dropout, with_it, Objective("loss", "min"))
    [star] = [t for t in fig.data if t.name == "best trial"]
    assert (star.x[0], star.y[0]) == (0.0, 1.0)


def test_refiner_proposed_is_labelled_above_the_plot_not_on_the_trials():
    doc = _decisions_doc()
    d = dict(doc["decisions"][0])
    d["proposed"], d["after"] = d["after"], {**d["before"], "low": 0.001, "high": 0.05}
    lr = parameter_from_dict(d["before"])
    trials = [_trial(i, 0, {"lr": 10 ** (-4 + i / 3)}, float(i)) for i in range(9)]
    fig = review.param_scatter_figure(lr, trials, Objective("loss", "min"), d, 0)
    [label] = [a for a in fig.layout.annotations if "refiner proposed" in a.text]
    # In the margin above the plot area (y domain 1, text going up), where no marker can be.
    assert label.yref == "y domain" and label.y == 1.0 and label.yanchor == "bottom"


def test_tiny_values_are_labelled_by_fmt_on_every_numeric_axis():
    eps = Float("eps", 0.00001, 0.00009)
    trials = [_trial(i, 0, {"eps": 0.00001 * (1 + i)}, 0.00001 * i + 0.00002) for i in range(9)]
    fig = review.param_scatter_figure(eps, trials, Objective("loss", "min"))
    for axis in (fig.layout.xaxis, fig.layout.yaxis):
        assert axis.tickmode == "array" and axis.ticktext, axis
        assert all(text == review.fmt(v) for text, v in zip(axis.ticktext, axis.tickvals, strict=True))
        assert not any(text.startswith(".") or "µ" in text for text in axis.ticktext)
    assert "2e-05" in fig.layout.xaxis.ticktext and "0.3" == review.fmt(0.1 + 0.2)


# -- views: scores' distribution, contour, compare --------------------------------------------------
def test_score_distribution_is_one_ecdf_line_per_round_up_to_k(runs):
    view = review.load_run(runs, "mixed")

    def lines(chart) -> dict[str, list[dict]]:
        spec = chart.to_dict()
        rows = spec["datasets"][spec["data"]["name"]]
        return {label: [r for r in rows if r["series"] == label] for label in dict.fromkeys(r["series"] for r in rows)}

    shown = lines(review.score_distribution_chart(view.rounds, 1, view.objective))
    assert list(shown) == ["round 0 (8 trials)", "round 1 (8 trials)"]
    for r, line in zip(view.rounds, shown.values(), strict=True):
        scores = sorted(t.score for t in r.trials if t.ok)
        assert [p["score"] for p in line] == scores and line[-1]["share"] == 1.0 and line[0]["share"] == 1 / len(scores)
    assert shown["round 1 (8 trials)"][0]["width"] > shown["round 0 (8 trials)"][0]["width"]  # the round under review
    assert len(lines(review.score_distribution_chart(view.rounds, 0, view.objective))) == 1
    high = review.score_distribution_chart(view.rounds, 1, Objective("loss", "max"))
    first = next(iter(lines(high).values()))
    assert [p["score"] for p in first] == sorted((p["score"] for p in first), reverse=True)  # better first either way
    assert high.to_dict()["encoding"]["x"]["scale"]["reverse"] is True  # and on the left


def test_contour_uses_the_two_most_important_numeric_parameters(runs):
    view = review.load_run(runs, "mixed")
    r = view.round(1)
    fig, note = review.contour_figure(view.trials, view.round(0).space, r.surrogate, view.objective)
    numeric = sorted(("learning_rate", "units", "dropout"), key=lambda n: -r.surrogate["importances"][n])
    assert note.startswith(f"{numeric[0]} and {numeric[1]}")
    assert "not a model" in fig.layout.title.text and fig.data[0].type == "contour"
    contour, points = fig.data
    assert len(contour.z) == len(contour.y) == 40 and len(contour.z[0]) == 40
    used = [t for t in view.trials if t.ok and numeric[0] in t.hyperparameters and numeric[1] in t.hyperparameters]
    assert len(points.x) == len(used)
    # Interpolated between the trials: never outside their scores (log10 when they span decades).
    zs = [z for row in contour.z for z in row]
    scores = [t.score for t in used]
    lo, hi = (min(scores), max(scores)) if max(scores) / min(scores) < 100 else \
        (math.log10(min(scores)), math.log10(max(scores)))
    assert lo - 1e-9 <= min(zs) and max(zs) <= hi + 1e-9
    fig, note = review.contour_figure(view.trials, SearchSpace([Float("x", 0, 1), Choice("c", ("a", "b"))]),
                                      None, view.objective)
    assert fig is None and "two numeric parameters" in note


def test_compare_overlays_each_runs_best_so_far(runs):
    view = review.load_run(runs, "mixed")
    worse = [refiner.Trial(t.trial_id, t.round, t.hyperparameters, (t.score or 0) + 1, t.status) for t in view.trials]
    fig = review.compare_figure([("mixed", view.trials), ("worse", worse)], view.objective)
    assert [t.name for t in fig.data] == ["mixed", "worse"]
    assert fig.data[0].y[-1] == view.best.score and fig.data[1].y[-1] == pytest.approx(view.best.score + 1)
    assert list(fig.data[0].y) == sorted(fig.data[0].y, reverse=True)  # min: only ever goes down


def test_partial_dependence_has_an_uncertainty_band(runs):
    view = review.load_run(runs, "mixed")
    r = view.round(1)
    fig = review.partial_dependence_figure(r.space["units"], r.surrogate, r.decision("units"))
    band, mean = fig.data[0], fig.data[1]
    pd_ = r.surrogate["partial_dependence"]["units"]
    assert band.fill == "toself" and list(mean.y) == pd_["mean"]
    assert max(band.y) == pytest.approx(max(m + s for m, s in zip(pd_["mean"], pd_["std"], strict=True)))
    fig = review.partial_dependence_figure(r.space["activation"], r.surrogate)
    assert fig.data[0].type == "bar"
    assert list(fig.data[0].error_y.array) == r.surrogate["partial_dependence"]["activation"]["std"]
    assert review.partial_dependence_figure(r.space["units"], None) is None
    assert review.partial_dependence_figure(r.space["learning_rate"], r.surrogate).layout.xaxis.type == "log"


def test_importance_bars_are_sorted_largest_on_top_and_grey_when_not_trusted(runs):
    r = review.load_run(runs, "mixed").round(1)
    spec = review.importance_chart(r.surrogate).to_dict()
    bars = spec["layer"][0]
    rows = spec["datasets"][spec["data"]["name"]]
    assert [row["importance"] for row in rows] == sorted(r.surrogate["importances"].values(), reverse=True)
    assert bars["encoding"]["y"]["sort"] == [row["parameter"] for row in rows]  # largest on top
    assert "NOT TRUSTED" not in spec["title"] and bars["mark"]["color"] != "#bbbbbb"
    untrusted = review.importance_chart({**r.surrogate, "trusted": False}).to_dict()
    assert untrusted["title"].endswith("NOT TRUSTED: ranges kept") and untrusted["layer"][0]["mark"]["color"] == "#bbbbbb"
    assert review.importance_chart(None) is None


def test_parallel_coordinates_has_every_tunable_parameter_and_the_score(runs):
    view = review.load_run(runs, "mixed")
    r = view.round(1)
    fig = review.parallel_coordinates_figure(r.trials, r.space, view.objective)
    dims = fig.data[0].dimensions
    assert [d.label for d in dims] == ["learning_rate (log)", "units", "activation", "use_dropout", "dropout",
                                       dims[-1].label]
    assert dims[-1].label.startswith("loss")
    assert all(len(d.values) == len(r.trials) for d in dims)
    lr_values = [t.hyperparameters["learning_rate"] for t in r.trials]
    assert list(dims[0].values) == pytest.approx([math.log10(v) for v in lr_values])
    assert review.parallel_coordinates_figure([], r.space, view.objective) is None


# -- overrides and export ---------------------------------------------------------------------------
def test_build_and_merge_overrides():
    entry = review.build_override("x", "edit", {"name": "x", "type": "float", "low": 0, "high": 1}, " why ")
    assert entry == {"name": "x", "action": "edit", "after": {"name": "x", "type": "float", "low": 0, "high": 1},
                     "note": "why"}
    assert review.build_override("x", "reject") == {"name": "x", "action": "reject"}
    existing = {"overrides": [{"name": "x", "action": "reject"}, {"name": "y", "action": "reject"}]}
    assert review.merge_overrides(existing, entry, "x") == [{"name": "y", "action": "reject"}, entry]
    assert review.merge_overrides(existing, None, "y") == [{"name": "x", "action": "reject"}]


@pytest.mark.parametrize("fmt", ["json", "keras-tuner", "optuna"])
def test_export_bytes_are_exactly_what_refiner_export_prints(runs, fmt, capsys):
    store = RunStore(runs / "mixed")
    write_overrides(store, 1, [{"name": "units", "action": "edit",
                                "after": {"name": "units", "type": "int", "low": 32, "high": 64, "step": 16}}])
    data = review.export_bytes(store, fmt)
    assert cli_main(["export", str(runs / "mixed"), "--format", fmt]) == 0
    assert data == capsys.readouterr().out.encode("utf-8")
    if fmt == "json":
        document = json.loads(data)
        assert schemas.problems(document, "search_space") == []
        assert {p["name"]: p for p in document["parameters"]}["units"]["high"] == 64  # the override counts
    assert review.export_filename("my run/..", fmt).startswith("my_run")
    assert "/" not in review.export_filename("../../etc", fmt)


def test_export_of_an_unfinished_run_says_why(runs):
    (runs / "mixed" / "refined_space.json").unlink()
    with pytest.raises(RunFolderError, match="has not finished"):
        review.export_bytes(RunStore(runs / "mixed"), "json")


def test_a_symlink_pointing_out_of_the_runs_folder_is_not_a_run(tmp_path):
    outside, runs = tmp_path / "outside", tmp_path / "runs"
    runs.mkdir()
    make_run(outside, name="secret", rounds=1, trials=4)
    (runs / "secret").symlink_to(outside / "secret", target_is_directory=True)
    make_run(runs, name="mine", rounds=1, trials=4)
    (runs / "alias").symlink_to(runs / "mine", target_is_directory=True)  # links are never runs
    assert review.list_runs(runs) == ["mine"]
    with pytest.raises(review.RunNameError):
        review.resolve_run(runs, "secret")


def test_a_fidelity_runs_learning_curves_show_which_trials_stopped(tmp_path):
    def curve_loss(p, budget):
        return (p["x"] - 1.0) ** 2 + 2.0 / budget

    refiner.Refiner(function=curve_loss, space=SearchSpace([Float("x", -3.0, 3.0)]), objective="loss", rounds=1,
                    trials_per_round=9, fidelity={"max": 9}, directory=tmp_path, project_name="mf", verbose=0).search()
    view = review.load_run(tmp_path, "mf")
    [r] = view.rounds
    spec = review.learning_curves_chart(r, Objective("loss", "min")).to_dict()
    rows = spec["datasets"][spec["data"]["name"]]
    lines = {trial: [row for row in rows if row["trial"] == trial] for trial in dict.fromkeys(row["trial"] for row in rows)}
    assert len(lines) == 9  # one line per trial
    stopped = [line for line in lines.values() if line[0]["status"] == "stopped at a rung"]
    assert stopped and len(stopped) == sum(1 for t in r.trials if not t.ok)
    assert all(max(p["epoch"] for p in line) < 9 for line in stopped)
    assert all(max(p["epoch"] for p in line) == 9 for line in lines.values() if line[0]["status"] == "trained to the end")
    assert spec["encoding"]["strokeDash"]["scale"]["range"][0] == [2, 2]  # stopped: dotted
    assert f"{sum(t.fidelity for t in r.trials)} of 81 epochs spent" in spec["title"]
    no_curves = dataclasses.replace(r, trials=tuple(dataclasses.replace(t, curve=None) for t in r.trials))
    assert review.learning_curves_chart(no_curves, Objective("loss", "min")) is None  # a run without a fidelity
