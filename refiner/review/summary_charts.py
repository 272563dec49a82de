"""The charts every page load draws, in Vega-Lite (Altair): incumbent curve, scores' distribution,
the surrogate's importances, and a fidelity round's learning curves.

Why not Plotly, as the on-demand figures (:mod:`~refiner.review.figures`)? A first visit (a new
browser tab with an empty cache) must download and compile the charting library before the charts
show: for a 200-trial run in headless Chromium on a 2-core machine the full page took 6.2 s with
these charts in Plotly (4.7 MB) and 4.5 s in Vega-Lite (0.8 MB), medians of 6 loads interleaved
(benchmarks/app_load_times.py --cold). Once the browser has the code cached the two are level.
Colours and axes come from :mod:`~refiner.review.chart_style`.

Each chart is built from a small frame with plain column names; Vega-Lite writes numbers with the
d3 format below: 4 significant digits as :func:`refiner.text.fmt`, but written out where fmt uses an
exponent below 1e-4 (0.00002 for fmt's 2e-05), and 1.235e+5 where fmt writes 1.235e+05.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import altair as alt
import pandas as pd

from refiner.review.chart_style import numbers, round_color, score_title, tick_values, wants_log
from refiner.review.runs import RoundView
from refiner.review.tables import incumbent_frame
from refiner.text import fmt
from refiner.trial import Objective, Trial, TrialState

__all__ = ["incumbent_chart", "score_distribution_chart", "importance_chart", "learning_curves_chart"]

NUMBER = ".4~g"  # d3's 4 significant digits, trailing zeros dropped (fmt's precision; see above)
HEIGHT = 360
_IMPORTANT = "#00CC96"
_UNTRUSTED = "#bbbbbb"  # grey: these bars decided nothing
_STOPPED = "#9e9e9e"


def _legend(columns: int | None = None) -> alt.Legend:
    # Below the plot: beside the title it crowds a half-width chart. Vega clips a legend row wider
    # than the chart, so a half-width chart's long labels go ``columns`` to a row.
    return alt.Legend(orient="bottom", title=None, **({"columns": columns} if columns else {}))


def _series(labels: Sequence[str], colors: Sequence[str]) -> alt.Scale:
    return alt.Scale(domain=list(labels), range=list(colors))


def _score_axis(values: Sequence[float], title: str, reverse: bool = False) -> dict[str, Any]:
    """Scale and axis for scores: log when they span decades, round ticks either way, and a little
    room beyond the extreme scores (as Plotly leaves) so the outer ticks and points show whole."""
    log = wants_log(values)
    ticks = tick_values(log, values)
    scale: dict[str, Any] = {"type": "log" if log else "linear", "zero": False, "reverse": reverse, "nice": False}
    found = numbers(values, positive=log)
    if found and max(found) > min(found):
        lo, hi = (math.log10(min(found)), math.log10(max(found))) if log else (min(found), max(found))
        pad = 0.06 * (hi - lo)
        scale["domain"] = [10 ** (lo - pad), 10 ** (hi + pad)] if log else [lo - pad, hi + pad]
        ticks = [t for t in ticks if scale["domain"][0] <= t <= scale["domain"][1]]
    return dict(scale=alt.Scale(**scale), axis=alt.Axis(title=title, format=NUMBER, **({"values": ticks} if ticks else {})))


def _run_order(n: int) -> alt.X:
    """Trials 1..n in run order, without Vega's rounding of the axis out to the next nice number."""
    return alt.X("n:Q", title="trial (in run order)", scale=alt.Scale(domain=[0, n + 1], nice=False),
                 axis=alt.Axis(format="d", tickMinStep=1))


def _params(t: Trial) -> str:
    return ", ".join(f"{k}={fmt(v)}" for k, v in t.hyperparameters.items())


def incumbent_chart(trials: Sequence[Trial], objective: Objective) -> alt.LayerChart:
    """Every usable trial's score in run order, coloured by round, with the best-so-far line."""
    frame = incumbent_frame(trials, objective)
    points = pd.DataFrame(
        [{"n": n, "series": f"round {t.round}", "score": t.score, "trial": t.trial_id, "round": t.round,
          "hyperparameters": _params(t)} for n, t in enumerate(trials, start=1) if t.ok],
        columns=["n", "series", "score", "trial", "round", "hyperparameters"])
    best = pd.DataFrame({"n": frame["n"], "series": "best so far", "score": frame["best so far"]}).dropna()
    rounds = sorted({t.round for t in trials})
    colors = _series([f"round {k}" for k in rounds] + ["best so far"], [round_color(k) for k in rounds] + ["black"])
    x = _run_order(len(trials))
    y = alt.Y("score:Q", **_score_axis(list(frame["score"].dropna()), score_title(objective)))
    color = alt.Color("series:N", scale=colors, legend=_legend())
    dots = alt.Chart(points).mark_circle(size=60, opacity=0.85).encode(
        x=x, y=y, color=color, tooltip=["trial:N", "round:O", alt.Tooltip("score:Q", format=NUMBER), "hyperparameters:N"])
    line = alt.Chart(best).mark_line(interpolate="step-after", strokeWidth=2).encode(x=x, y=y, color=color)
    return alt.layer(dots, line).properties(title="Incumbent curve: did each narrowing help?", height=HEIGHT)


def score_distribution_chart(rounds: Sequence[RoundView], k: int, objective: Objective) -> alt.Chart:
    """Empirical distribution (ECDF) of the scores of round ``k`` and every earlier round.

    One step line per round: at score s, the share of the round's usable trials scoring s or
    better. A narrowing that helped moves the later round's line towards the better end; the
    better end is on the left whatever the direction.
    """
    rows, labels, colors = [], [], []
    for r in rounds:
        scores = sorted((float(t.score) for t in r.trials if t.ok), reverse=objective.direction == "max")  # type: ignore[arg-type]
        if r.k > k or not scores:
            continue
        label = f"round {r.k} ({len(scores)} trials)"
        labels.append(label)
        colors.append(round_color(r.k))
        rows += [{"series": label, "score": s, "share": (i + 1) / len(scores), "width": 3.0 if r.k == k else 1.5,
                  "opacity": 1.0 if r.k == k else 0.6} for i, s in enumerate(scores)]
    frame = pd.DataFrame(rows, columns=["series", "score", "share", "width", "opacity"])
    return alt.Chart(frame).mark_line(interpolate="step-after").encode(
        x=alt.X("score:Q", **_score_axis(list(frame["score"]), score_title(objective),
                                         reverse=objective.direction == "max")),
        y=alt.Y("share:Q", scale=alt.Scale(domain=[0, 1.02], nice=False),
                axis=alt.Axis(title="share of trials at least this good", format=".0%")),
        color=alt.Color("series:N", scale=_series(labels, colors), legend=_legend(columns=2)),
        # In share order, each step runs from a score to the next worse one (step-after).
        order=alt.Order("share:Q"),
        strokeWidth=alt.StrokeWidth("width:Q", scale=None),  # the round under review stands out
        opacity=alt.Opacity("opacity:Q", scale=None),
        tooltip=["series:N", alt.Tooltip("score:Q", format=NUMBER), alt.Tooltip("share:Q", format=".0%")],
    ).properties(title=f"Round {k} against earlier rounds: scores' empirical distribution", height=HEIGHT)


def importance_chart(surrogate: Mapping[str, Any] | None) -> alt.LayerChart | None:
    """The surrogate's importances as horizontal bars, largest on top (None if there are none);
    grey, with "NOT TRUSTED" in the title, when the surrogate was not trusted."""
    importances = (surrogate or {}).get("importances") or {}
    if not importances:
        return None
    assert surrogate is not None
    frame = pd.DataFrame([{"parameter": n, "importance": float(v)} for n, v in importances.items()])
    frame = frame.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)
    cv = surrogate.get("cv_score")
    trusted = bool(surrogate.get("trusted"))
    title = (f"Importance ({surrogate.get('model') or 'none'}, CV Spearman {'-' if cv is None else f'{cv:.2f}'})"
             + ("" if trusted else " - NOT TRUSTED: ranges kept"))
    y = alt.Y("parameter:N", sort=list(frame["parameter"]), title=None)
    x = alt.X("importance:Q", scale=alt.Scale(domain=[0, 1]),
              axis=alt.Axis(title="importance (share of partial-dependence variance)", format=".1~f"))
    bars = alt.Chart(frame).mark_bar(color=_IMPORTANT if trusted else _UNTRUSTED).encode(
        x=x, y=y, tooltip=["parameter:N", alt.Tooltip("importance:Q", format=".3f")])
    labels = alt.Chart(frame).mark_text(align="left", dx=4).encode(x=x, y=y, text=alt.Text("importance:Q", format=".2f"))
    return alt.layer(bars, labels).properties(title=title, height=max(HEIGHT - 80, 36 * len(frame)))


def learning_curves_chart(round_view: RoundView, objective: Objective) -> alt.Chart | None:
    """A fidelity run's learning curves for one round: the objective after each epoch (or rung),
    one line per trial. Trials a rung stopped are grey and dotted, so the epochs they saved show;
    ``None`` when the round's trials have no curves (a run without a fidelity)."""
    with_curves = [t for t in round_view.trials if t.curve]
    if not with_curves:
        return None
    stopped, finished = "stopped at a rung", "trained to the end"
    frame = pd.DataFrame(
        [{"trial": t.trial_id, "epoch": budget, "value": value,
          "status": stopped if t.status is TrialState.STOPPED else finished}
         for t in with_curves for budget, value in t.curve],  # type: ignore[union-attr]
        columns=["trial", "epoch", "value", "status"])
    frame = frame.sort_values("status", key=lambda s: s == finished, kind="stable")  # finished lines on top
    spent = sum(t.fidelity or 0 for t in with_curves)
    most = max((t.fidelity or 0 for t in with_curves), default=0)
    status = [stopped, finished]
    return alt.Chart(frame).mark_line(point=alt.OverlayMarkDef(size=16)).encode(
        x=alt.X("epoch:Q", title="epochs", axis=alt.Axis(format="d", tickMinStep=1)),
        y=alt.Y("value:Q", **_score_axis(list(frame["value"]), score_title(objective))),
        detail="trial:N",
        color=alt.Color("status:N", scale=_series(status, [_STOPPED, round_color(round_view.k)]), legend=_legend()),
        strokeDash=alt.StrokeDash("status:N", scale=alt.Scale(domain=status, range=[[2, 2], [1, 0]]), legend=None),
        order=alt.Order("epoch:Q"),  # each line runs through its epochs
        tooltip=["trial:N", "status:N", "epoch:Q", alt.Tooltip("value:Q", format=NUMBER)],
    ).properties(title=f"Round {round_view.k}: learning curves ({spent} of {most * len(with_curves)} epochs spent)",
                 height=HEIGHT)
