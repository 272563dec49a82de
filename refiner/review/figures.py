"""The app's Plotly figures, drawn on demand: per-parameter ranges and evidence, ranges across
rounds, contour, parallel coordinates, and the runs compare view.

The charts every load draws (incumbent curve, scores' distribution, importances, learning curves)
are Vega-Lite, in :mod:`~refiner.review.summary_charts`: the browser loads and draws Plotly's
4.7 MB far more slowly. Both take colours and axes from :mod:`~refiner.review.chart_style`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import plotly.graph_objects as go

from refiner.review.chart_style import log_ticks, round_color, score_title, tick_values, wants_log
from refiner.review.runs import RoundView
from refiner.review.tables import incumbent_frame
from refiner.space import Fixed, Float, Int, Parameter, SearchSpace, discrete_values, parameter_from_dict
from refiner.text import fmt
from refiner.trial import Objective, Trial, best_trial

__all__ = [
    "param_scatter_figure", "partial_dependence_figure", "parallel_coordinates_figure", "range_history_figure",
    "parallel_all_rounds_figure", "contour_figure", "compare_figure",
]


_BEFORE_FILL = "rgba(120, 120, 120, 0.16)"
_AFTER_FILL = "rgba(0, 170, 90, 0.13)"
_DROPPED_FILL = "rgba(220, 50, 50, 0.2)"
_FLAG_COLOR = "#d62728"


def _axis(log: bool, values: Iterable[Any] = ()) -> dict[str, Any]:
    """A linear axis, or a log axis labelled 1-2-5 (decades only when wide): Plotly's default
    small "2 3 4 5" labels between decades read like values."""
    # Labels written by fmt, like everywhere else: Plotly's own format turns 0.00001 into "10µ"
    # or a cut-off ".00001" (issue 14, defect 7).
    ticks = tick_values(log, values)
    if not ticks:
        return {"type": "log" if log else "linear"}
    return {"type": "log" if log else "linear", "tickmode": "array", "tickvals": ticks,
            "ticktext": [fmt(t) for t in ticks]}


def _bounds(*params: Parameter | None) -> list[float]:
    return [v for p in params if isinstance(p, (Float, Int)) for v in (p.low, p.high)]


def _layout(fig: go.Figure, title: str, height: int = 360) -> go.Figure:
    # The legend goes below the plot: beside the title it wraps into it on half-width charts.
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=50, b=10),
                      legend=dict(orientation="h", yanchor="top", y=-0.22, xanchor="left", x=0.0))
    return fig


def _hover(t: Trial) -> str:
    hps = ", ".join(f"{k}={fmt(v)}" for k, v in t.hyperparameters.items())
    return f"trial {t.trial_id}<br>{hps}"


def contour_figure(trials: Sequence[Trial], space: SearchSpace, surrogate: Mapping[str, Any] | None,
                   objective: Objective, regions: SearchSpace | None = None) -> tuple[go.Figure | None, str]:
    """Scores over the two most important numeric parameters, interpolated from the trials; the
    regions of ``regions`` (a space made of regions, e.g. the last round's) drawn as dashed boxes.

    The surface is an inverse-distance-weighted average of the trials' scores (log scores when they
    span decades) on a 40 × 40 grid in each parameter's own scale; it is not a model's prediction,
    and it says nothing where there are no trials, so the trials are drawn on top. Returns the
    figure (None when it cannot be drawn) and a one-line note saying which two and why.
    """
    importances = (surrogate or {}).get("importances") or {}
    numeric = [p for p in space.tunable() if isinstance(p, (Float, Int))]
    if len(numeric) < 2:
        return None, "a contour needs two numeric parameters; this space has fewer."
    ranked = sorted(numeric, key=lambda p: -float(importances.get(p.name, -1.0)))
    px, py = ranked[0], ranked[1]
    used = [t for t in trials if t.ok and t.hyperparameters.get(px.name) is not None
            and t.hyperparameters.get(py.name) is not None]
    if len(used) < 4:
        return None, f"too few trials with both {px.name} and {py.name} to draw a surface."
    why = ("the two most important by the surrogate" + ("" if surrogate.get("trusted") else " (not trusted)")
           if importances else "the first two numeric parameters (no importances yet)")

    def scale(p: Parameter, v: float) -> float:
        return math.log10(v) if getattr(p, "log", False) else float(v)

    xs = [scale(px, t.hyperparameters[px.name]) for t in used]
    ys = [scale(py, t.hyperparameters[py.name]) for t in used]
    raw = [float(t.score) for t in used]  # type: ignore[arg-type]
    log_z = wants_log(raw)
    zs = [math.log10(v) for v in raw] if log_z else raw
    (x0, x1), (y0, y1) = (min(xs), max(xs)), (min(ys), max(ys))
    sx, sy = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    n = 40
    gx = [x0 + (x1 - x0) * i / (n - 1) for i in range(n)]
    gy = [y0 + (y1 - y0) * j / (n - 1) for j in range(n)]
    grid = []
    for y in gy:
        row = []
        for x in gx:
            num = den = 0.0
            for xi, yi, zi in zip(xs, ys, zs, strict=True):
                d2 = ((x - xi) / sx) ** 2 + ((y - yi) / sy) ** 2
                if d2 < 1e-12:
                    num, den = zi, 1.0
                    break
                w = 1.0 / (d2 * d2)  # power 4: the surface follows the nearby trials, not the mean
                num += w * zi
                den += w
            row.append(num / den)
        grid.append(row)
    scale_name = "Viridis_r" if objective.direction == "max" else "Viridis"  # dark is better
    label = f"{objective.name}{' (log10)' if log_z else ''}"
    fig = go.Figure(go.Contour(x=gx, y=gy, z=grid, colorscale=scale_name, ncontours=14, opacity=0.85,
                               colorbar=dict(title=label), hoverinfo="skip", name="interpolated"))
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name="trials", text=[_hover(t) for t in used],
                             customdata=[fmt(v) for v in raw], hovertemplate="%{text}<br>score %{customdata}<extra></extra>",
                             marker=dict(size=6, color="white", line=dict(color="black", width=1))))
    for p, axis, grid_values in ((px, fig.update_xaxes, gx), (py, fig.update_yaxes, gy)):
        if getattr(p, "log", False):
            ticks = log_ticks(10 ** min(grid_values), 10 ** max(grid_values))
            axis(title=f"{p.name} (log)", tickmode="array", tickvals=[math.log10(t) for t in ticks],
                 ticktext=[fmt(t) for t in ticks])
        else:
            axis(title=p.name, **_axis(False, grid_values))
    if regions is not None and regions.regions and px.name in regions and py.name in regions:
        _region_boxes(fig, regions, px, py, scale)
    fig.update_layout(showlegend=False)
    title = f"{px.name} × {py.name}: scores interpolated between the trials (not a model)"
    return _layout(fig, title, height=460), f"{px.name} and {py.name}: {why}."


def compare_figure(runs: Sequence[tuple[str, Sequence[Trial]]], objective: Objective) -> go.Figure:
    """Several runs' best-so-far curves over trials in run order, one line per run."""
    fig = go.Figure()
    values: list[float] = []
    for i, (name, trials) in enumerate(runs):
        frame = incumbent_frame(trials, objective)
        ys = list(frame["best so far"])
        values += [float(v) for v in ys if v is not None and v == v]
        fig.add_trace(go.Scatter(x=list(frame["n"]), y=ys, mode="lines", name=name,
                                 line=dict(shape="hv", width=2, color=round_color(i))))
    fig.update_xaxes(title="trial (in run order)")
    fig.update_yaxes(title=f"best {score_title(objective)} so far", **_axis(wants_log(values), values))
    return _layout(fig, "Best so far, run against run", height=420)


def _cat_label(v: Any) -> str:
    return fmt(v)


def _numeric_bands(fig: go.Figure, before: Parameter | None, after: Parameter | None,
                   proposed: Parameter | None, evidence: Mapping[str, Any] | None, log: bool = False) -> None:
    """Shade the range searched (grey) and the range for the next round (green) on a numeric x axis."""

    def at(v: float) -> float:
        # Plotly.js 4 places shapes on a log axis by value but annotations by log10 of the value.
        return math.log10(v) if log else v

    def label(x: float, text: str, top: bool, anchor: str, color: str = "gray") -> None:
        fig.add_annotation(x=at(x), y=1 if top else 0, yref="y domain", text=text, showarrow=False,
                           xanchor=anchor, yanchor="top" if top else "bottom", font=dict(size=11, color=color))

    if isinstance(before, (Float, Int)):
        fig.add_vrect(x0=before.low, x1=before.high, fillcolor=_BEFORE_FILL, line_width=0, layer="below")
        label(before.low, " searched", top=True, anchor="left")
    if isinstance(after, (Float, Int)):
        fig.add_vrect(x0=after.low, x1=after.high, fillcolor=_AFTER_FILL, line=dict(color="green", width=2),
                      layer="below")
        label(after.high, "next round ", top=False, anchor="right", color="green")
    if isinstance(proposed, (Float, Int)) and proposed != after:
        fig.add_vrect(x0=proposed.low, x1=proposed.high, fillcolor="rgba(0,0,0,0)", layer="below",
                      line=dict(color="orange", width=2, dash="dot"))
        # Above the plot area, where no trial (nor the best trial's star) can sit under it (defect 7).
        fig.add_annotation(x=at(proposed.low), y=1.0, yref="y domain", text=" refiner proposed", showarrow=False,
                           xanchor="left", yanchor="bottom", font=dict(size=11, color="darkorange"))
    side = (evidence or {}).get("beyond_user_bound")
    if side and isinstance(before, (Float, Int)):
        for edge, which in ((before.low, "low"), (before.high, "high")):
            if side in (which, "both"):
                fig.add_vline(x=edge, line=dict(color=_FLAG_COLOR, width=3, dash="dash"))
                # Text on the inner side of the line, so it does not stretch the axis outwards.
                fig.add_annotation(x=at(edge), y=0.92, yref="y domain", showarrow=False,
                                   text="⚠ optimum may lie beyond ", font=dict(size=11, color=_FLAG_COLOR),
                                   xanchor="right" if which == "high" else "left")


def _categorical_bands(fig: go.Figure, before: Parameter | None, after: Parameter | None, labels: list[str]) -> None:
    if before is None or after is None:
        return
    kept = {_cat_label(v) for v in discrete_values(after)}
    if all(label in kept for label in labels):
        return  # nothing dropped: shading every value "kept" would only add noise
    for i, label in enumerate(labels):
        fill = _AFTER_FILL if label in kept else _DROPPED_FILL
        fig.add_vrect(x0=i - 0.45, x1=i + 0.45, fillcolor=fill, line_width=0, layer="below",
                      annotation_text="kept" if label in kept else "dropped", annotation_position="top")


def _decision_params(decision: Mapping[str, Any] | None) -> tuple[Parameter | None, Parameter | None, Parameter | None]:
    if not decision:
        return None, None, None
    before = parameter_from_dict(decision["before"])
    after = parameter_from_dict(decision["after"])
    proposed = parameter_from_dict(decision["proposed"]) if "proposed" in decision else None
    return before, after, proposed


def param_scatter_figure(param: Parameter, trials: Sequence[Trial], objective: Objective,
                         decision: Mapping[str, Any] | None = None, k: int | None = None) -> go.Figure:
    """Score against this parameter's value for ``trials`` (coloured by round), with the ranges drawn.

    Grey: the range round ``k`` searched; green: the range of the next round (what the person chose,
    if they overrode); dotted orange: refiner's proposal where a person changed it; a red dashed line
    at a user-set bound the optimum may lie beyond. Log parameters get a log axis.
    """
    before, after, proposed = _decision_params(decision)
    before = before or param
    evidence = decision.get("evidence") if decision else None
    used = [t for t in trials if t.ok and param.name in t.hyperparameters]
    fig = go.Figure()
    numeric = isinstance(param, (Float, Int))
    labels = [_cat_label(v) for v in discrete_values(before)]
    for t in used:  # values outside the searched set (earlier wider rounds) get their own category
        label = _cat_label(t.hyperparameters[param.name])
        if not numeric and label not in labels:
            labels.append(label)
    for r in sorted({t.round for t in used}):
        pts = [t for t in used if t.round == r]
        name = "imported" if r < 0 else f"round {r}"  # a warm start's trials, from an earlier run
        xs = [t.hyperparameters[param.name] if numeric else _cat_label(t.hyperparameters[param.name]) for t in pts]
        ys = [t.score for t in pts]
        text = [_hover(t) for t in pts]
        marker = dict(color=round_color(r), size=8, opacity=1.0 if k is None or r == k else 0.45)
        if numeric:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name=name, marker=marker, text=text,
                                     hovertemplate="%{text}<br>score %{y:.4g}<extra></extra>"))
        else:
            # A box trace's legend entry is its (invisible) box: the legend shows a marker-only twin.
            fig.add_trace(go.Box(x=xs, y=ys, name=name, boxpoints="all", jitter=0.5, pointpos=0,
                                 fillcolor="rgba(0,0,0,0)", line=dict(width=0), marker=marker, text=text,
                                 hoveron="points", hovertemplate="%{text}<br>score %{y:.4g}<extra></extra>",
                                 legendgroup=name, showlegend=False))
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name, marker=marker,
                                     legendgroup=name, hoverinfo="skip"))
    # The best of every trial shown, with this parameter or not: for a conditional parameter the best
    # trial among those that used it is not the run's best (defect 7).
    best = best_trial([t for t in trials if t.ok], objective)
    if best is not None and param.name in best.hyperparameters:
        x = best.hyperparameters[param.name]
        fig.add_trace(go.Scatter(x=[x if numeric else _cat_label(x)], y=[best.score], mode="markers",
                                 name="best trial", marker=dict(symbol="star", size=16, color="gold",
                                                                line=dict(color="black", width=1))))
    elif best is not None:
        fig.add_annotation(x=0, y=1.0, xref="x domain", yref="y domain", showarrow=False, xanchor="left",
                           yanchor="bottom", text=f"best trial ({fmt(best.score)}) did not use {param.name}",
                           font=dict(size=11))
    if numeric:
        _numeric_bands(fig, before, after, proposed, evidence, log=param.log)  # type: ignore[union-attr]
        xs = [t.hyperparameters[param.name] for t in used] + _bounds(before, after, proposed)
        fig.update_xaxes(**_axis(param.log, xs))  # type: ignore[union-attr]
    else:
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=labels)
        _categorical_bands(fig, before, after, labels)
        fig.update_layout(boxmode="group")
    fig.update_xaxes(title=param.name)
    fig.update_yaxes(title=score_title(objective),
                     **_axis(wants_log([t.score for t in used]), [t.score for t in used]))
    return _layout(fig, f"Score against {param.name}")


def partial_dependence_figure(param: Parameter, surrogate: Mapping[str, Any] | None,
                              decision: Mapping[str, Any] | None = None) -> go.Figure | None:
    """The surrogate's mean prediction ± its predictive std across this parameter (None if not modelled)."""
    if not surrogate or param.name not in (surrogate.get("partial_dependence") or {}):
        return None
    pd_ = surrogate["partial_dependence"][param.name]
    xs, mean, std = pd_["values"], pd_["mean"], pd_["std"]
    if not xs:
        return None
    objective = Objective(surrogate["objective"]["name"], surrogate["objective"]["direction"])
    fig = go.Figure()
    if isinstance(param, (Float, Int)):
        upper = [m + s for m, s in zip(mean, std, strict=True)]
        lower = [m - s for m, s in zip(mean, std, strict=True)]
        fig.add_trace(go.Scatter(x=list(xs) + list(xs)[::-1], y=upper + lower[::-1], fill="toself",
                                 fillcolor="rgba(99, 110, 250, 0.2)", line=dict(width=0), hoverinfo="skip",
                                 name="± 1 std"))
        fig.add_trace(go.Scatter(x=xs, y=mean, mode="lines+markers", name="mean prediction",
                                 line=dict(color="#636EFA")))
        before, after, proposed = _decision_params(decision)
        _numeric_bands(fig, before, after, proposed, decision.get("evidence") if decision else None, log=param.log)
        fig.update_xaxes(**_axis(param.log, list(xs) + _bounds(before, after, proposed)))
    else:
        labels = [_cat_label(v) for v in xs]
        fig.add_trace(go.Bar(x=labels, y=mean, error_y=dict(type="data", array=std, visible=True),
                             marker_color="#636EFA", name="mean prediction"))
        fig.update_xaxes(type="category")
    trusted = "" if surrogate.get("trusted") else " (surrogate not trusted)"
    fig.update_xaxes(title=param.name)
    fig.update_yaxes(title=f"predicted {score_title(objective)}",
                     **_axis(False, [m + k * sd for m, sd in zip(mean, std, strict=True) for k in (-1, 1)]))
    fig.update_layout(showlegend=False)
    return _layout(fig, f"Partial dependence of {param.name}{trusted}")


def parallel_coordinates_figure(trials: Sequence[Trial], space: SearchSpace | None,
                                objective: Objective) -> go.Figure | None:
    """One line per usable trial across every tunable parameter and the score (None if no trials)."""
    used = [t for t in trials if t.ok]
    if not used:
        return None
    params: list[Parameter] = [p for p in space.tunable()] if space is not None else []
    if space is None:
        names = sorted({n for t in used for n in t.hyperparameters})
        params = [Fixed(n, 0) for n in names]  # unknown types: shown as categories below
    dims = []
    for p in params:
        values = [t.hyperparameters.get(p.name) for t in used]
        numeric = isinstance(p, (Float, Int)) and all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values)
        if numeric:
            assert isinstance(p, (Float, Int))
            present = [float(v) for v in values if v is not None]
            lo = min([p.low, *present]) if present else p.low
            hi = max([p.high, *present]) if present else p.high
            if p.log:
                tr = [None if v is None else math.log10(float(v)) for v in values]
                lo_t, hi_t = math.log10(lo), math.log10(hi)
            else:
                tr = [None if v is None else float(v) for v in values]
                lo_t, hi_t = float(lo), float(hi)
            # An inactive (conditional) value sits just below the range, on its own labelled tick.
            gap = (hi_t - lo_t) * 0.08 or 1.0
            inactive = lo_t - gap
            shown = [inactive if v is None else v for v in tr]
            dim: dict[str, Any] = dict(label=p.name + (" (log)" if p.log else ""), values=shown,
                                       range=[inactive if None in tr else lo_t, hi_t])
            if p.log:
                ticks = log_ticks(lo, hi)
                dim["tickvals"] = [math.log10(v) for v in ticks] + ([inactive] if None in tr else [])
                dim["ticktext"] = [fmt(v) for v in ticks] + (["inactive"] if None in tr else [])
            else:
                # Labelled ticks (4 significant digits), not Plotly's raw "0.344908".
                ticks = [lo_t + (hi_t - lo_t) * i / 4 for i in range(5)]
                if isinstance(p, Int):
                    ticks = sorted({round(v) for v in ticks})
                dim["tickvals"] = ([inactive] if None in tr else []) + ticks
                dim["ticktext"] = (["inactive"] if None in tr else []) + [fmt(v) for v in ticks]
            dims.append(dim)
        else:
            labels = [_cat_label(v) for v in discrete_values(p) if not isinstance(p, Fixed)] if space else []
            for v in values:
                label = "inactive" if v is None else _cat_label(v)
                if label not in labels:
                    labels.append(label)
            codes = [labels.index("inactive" if v is None else _cat_label(v)) for v in values]
            dims.append(dict(label=p.name, values=codes, tickvals=list(range(len(labels))), ticktext=labels,
                             range=[-0.2, len(labels) - 0.8] if len(labels) > 1 else [-1, 1]))
    scores = [float(t.score) for t in used]  # type: ignore[arg-type]
    if wants_log(scores):
        ticks = log_ticks(min(scores), max(scores))
        dims.append(dict(label=f"{objective.name} (log)", values=[math.log10(v) for v in scores],
                         tickvals=[math.log10(v) for v in ticks], ticktext=[fmt(v) for v in ticks]))
    else:
        lo_s, hi_s = min(scores), max(scores)
        ticks = [lo_s + (hi_s - lo_s) * i / 4 for i in range(5)] if hi_s > lo_s else [lo_s]
        dims.append(dict(label=objective.name, values=scores, tickvals=ticks, ticktext=[fmt(v) for v in ticks]))
    # Better trials are drawn dark whatever the direction.
    scale = "Viridis_r" if objective.direction == "max" else "Viridis"
    # The score axis itself is the colour key, so no colour bar.
    fig = go.Figure(go.Parcoords(line=dict(color=dims[-1]["values"], colorscale=scale, showscale=False),
                                 dimensions=dims))
    fig = _layout(fig, "One line per trial of the round (darker is better)", height=460)
    # Room above the axes for their names, which Plotly draws above the plot area.
    fig.update_layout(margin=dict(l=60, r=30, t=100, b=30))
    return fig


def _region_bars(fig: go.Figure, k: int, space: SearchSpace, name: str) -> None:
    """A round made of regions: each region's range of ``name`` as its own box, side by side
    inside the round's enclosing box (a region that leaves ``name`` free spans it)."""
    n = len(space.regions)
    for i, region in enumerate(space.regions):
        p = space.region_space(i)[name]
        assert isinstance(p, (Float, Int))
        x0 = k - 0.3 + 0.6 * i / n
        fig.add_shape(type="rect", x0=x0, x1=x0 + 0.6 / n, y0=p.low, y1=p.high, layer="below",
                      line=dict(color=round_color(k), width=2, dash="dash"), fillcolor=_AFTER_FILL)


def _region_boxes(fig: go.Figure, space: SearchSpace, px: Parameter, py: Parameter,
                  scale: Callable[[Parameter, float], float]) -> None:
    """Each region of ``space`` as a dashed box over the two parameters of a 2-D chart."""
    for i in range(len(space.regions)):
        region = space.region_space(i)
        bx, by = region[px.name], region[py.name]
        assert isinstance(bx, (Float, Int)) and isinstance(by, (Float, Int))
        fig.add_shape(type="rect", x0=scale(px, bx.low), x1=scale(px, bx.high), y0=scale(py, by.low),
                      y1=scale(py, by.high), line=dict(color="red", width=2, dash="dash"))
        fig.add_annotation(x=scale(px, bx.low), y=scale(py, by.high), text=f"region {i + 1}", showarrow=False,
                           xanchor="left", yanchor="bottom", font=dict(size=11, color="red"))


def range_history_figure(name: str, rounds: Sequence[RoundView], objective: Objective) -> go.Figure | None:
    """One parameter across all rounds: each round's searched range as a box, its trials as points
    (darker is better), and a round whose next range a person overrode marked."""
    params = [(r, next((p for p in r.space if p.name == name), None)) for r in rounds if r.space is not None]
    if not any(p is not None and not isinstance(p, Fixed) for _, p in params):
        return None
    numeric = all(isinstance(p, (Float, Int)) for _, p in params if p is not None and not isinstance(p, Fixed))
    log = any(getattr(p, "log", False) for _, p in params)
    fig = go.Figure()
    scores = [t.score for r in rounds for t in r.trials if t.ok]
    labels: list[str] = []
    for r, p in params:
        if p is None:
            continue
        if numeric and isinstance(p, (Float, Int)):
            fig.add_shape(type="rect", x0=r.k - 0.35, x1=r.k + 0.35, y0=p.low, y1=p.high, line=dict(color=round_color(r.k)),
                          fillcolor=_BEFORE_FILL, layer="below")
            _region_bars(fig, r.k, r.space, name)  # type: ignore[arg-type]
        else:
            labels += [_cat_label(v) for v in discrete_values(p) if _cat_label(v) not in labels]
    for r, p in params:
        pts = [t for t in r.trials if t.ok and t.hyperparameters.get(name) is not None]
        if not pts:
            continue
        ys = [t.hyperparameters[name] if numeric else _cat_label(t.hyperparameters[name]) for t in pts]
        # Rank colour: 0 best, 1 worst, whatever the direction and however skewed the scores.
        ranked = sorted(scores, reverse=objective.direction == "max")
        rank = {id(t): ranked.index(t.score) / max(1, len(ranked) - 1) for t in pts}
        fig.add_trace(go.Scatter(
            x=[r.k + (((i * 0.618) % 1) - 0.5) * 0.5 for i in range(len(pts))], y=ys, mode="markers",
            name=f"round {r.k} trials", showlegend=False, text=[_hover(t) for t in pts],
            hovertemplate="%{text}<br>score %{customdata}<extra></extra>",
            customdata=[fmt(t.score) for t in pts],
            marker=dict(size=7, color=[rank[id(t)] for t in pts], colorscale="Viridis", cmin=0, cmax=1,
                        line=dict(width=0.5, color="white"),
                        colorbar=dict(title="rank<br>(0 best)", len=0.8) if r.k == params[0][0].k else None,
                        showscale=r.k == params[0][0].k)))
    overridden = [r.k for r in rounds if r.decision(name) and "proposed" in (r.decision(name) or {})]
    for k in overridden:
        fig.add_annotation(x=k + 0.5, y=1.02, yref="paper", text="✎ override", showarrow=False,
                           font=dict(color=_FLAG_COLOR, size=11))
    fig.update_xaxes(title="round", tickmode="array", tickvals=[r.k for r, _ in params],
                     range=[min(r.k for r, _ in params) - 0.6, max(r.k for r, _ in params) + 0.6])
    if numeric:
        fig.update_yaxes(title=name, **_axis(log, [v for _, p in params for v in _bounds(p)]))
    else:
        fig.update_yaxes(title=name, type="category", categoryorder="array", categoryarray=labels)
    return _layout(fig, f"{name}: searched range (box) and trials per round", height=340)


def parallel_all_rounds_figure(trials: Sequence[Trial], space: SearchSpace, objective: Objective) -> go.Figure | None:
    """Every round's usable trials over the declared space, a round axis first, coloured by rank
    (one outlier cannot flatten every other line into one colour) with a colour bar."""
    used = [t for t in trials if t.ok]
    if not used:
        return None
    fig = parallel_coordinates_figure(used, space, objective)
    assert fig is not None
    ranked = sorted((float(t.score) for t in used), reverse=objective.direction == "max")  # type: ignore[arg-type]
    n = max(1, len(ranked) - 1)
    ranks = [ranked.index(float(t.score)) / n for t in used]  # type: ignore[arg-type]
    dims = list(fig.data[0].dimensions)
    rounds = sorted({t.round for t in used})
    round_dim = dict(label="round", values=[t.round for t in used], tickvals=rounds, ticktext=[str(k) for k in rounds],
                     range=[min(rounds) - 0.2, max(rounds) + 0.2] if len(rounds) > 1 else [rounds[0] - 1, rounds[0] + 1])
    fig.data[0].dimensions = [round_dim, *dims]
    fig.data[0].line = dict(color=ranks, colorscale="Viridis", cmin=0, cmax=1, showscale=True,
                            colorbar=dict(title="rank (0 best)", tickvals=[0, 0.5, 1], ticktext=["best", "median", "worst"]))
    fig.update_layout(title="All rounds: one line per trial, coloured by rank (dark is better)")
    return fig
