"""The app's Plotly figures: incumbent curve, scores, per-parameter ranges, importances, parallel coordinates.

A round keeps its colour in every figure (:func:`round_color`).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import plotly.graph_objects as go

from refiner.review.runs import RoundView
from refiner.review.tables import incumbent_frame
from refiner.space import Fixed, Float, Int, Parameter, SearchSpace, discrete_values, parameter_from_dict
from refiner.text import fmt
from refiner.trial import Objective, Trial, best_trial

__all__ = [
    "round_color", "incumbent_figure", "score_distribution_figure", "param_scatter_figure",
    "partial_dependence_figure", "importance_figure", "parallel_coordinates_figure", "range_history_figure",
    "parallel_all_rounds_figure",
]


# Plotly's default qualitative palette; a round keeps its colour in every figure.
_PALETTE = ("#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880",
            "#FF97FF", "#FECB52")


_BEFORE_FILL = "rgba(120, 120, 120, 0.16)"


_AFTER_FILL = "rgba(0, 170, 90, 0.13)"


_DROPPED_FILL = "rgba(220, 50, 50, 0.2)"


_FLAG_COLOR = "#d62728"


def round_color(k: int) -> str:
    return _PALETTE[k % len(_PALETTE)]


def _score_title(objective: Objective) -> str:
    return f"{objective.name} ({'lower' if objective.direction == 'min' else 'higher'} is better)"


def _wants_log(values: Iterable[float | None]) -> bool:
    # Losses often span decades (Branin: 0.4 to 300); on a linear axis the gains of the later,
    # narrowed rounds are invisible.
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) >= 100


def _axis(log: bool, values: Iterable[Any] = ()) -> dict[str, Any]:
    """A linear axis, or a log axis labelled 1-2-5 (decades only when wide): Plotly's default
    small "2 3 4 5" labels between decades read like values."""
    if not log:
        return {"type": "linear"}
    finite = [float(v) for v in values
              if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0]
    if not finite:
        return {"type": "log"}
    lo, hi = math.log10(min(finite)), math.log10(max(finite))
    pad = 0.06 * (hi - lo)  # about what Plotly's autorange adds, so the outer decades get labels too
    ticks = _log_ticks(10 ** (lo - pad), 10 ** (hi + pad))
    return {"type": "log", "tickmode": "array", "tickvals": ticks, "ticktext": [fmt(t) for t in ticks]}


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


def incumbent_figure(trials: Sequence[Trial], objective: Objective) -> go.Figure:
    """Every usable trial's score in run order, coloured by round, with the best-so-far line."""
    frame = incumbent_frame(trials, objective)
    fig = go.Figure()
    ok = [(n, t) for n, t in enumerate(trials, start=1) if t.ok]
    for k in sorted({t.round for t in trials}):
        points = [(n, t) for n, t in ok if t.round == k]
        fig.add_trace(go.Scatter(
            x=[n for n, _ in points], y=[t.score for _, t in points], mode="markers", name=f"round {k}",
            marker=dict(color=round_color(k), size=8), text=[_hover(t) for _, t in points],
            hovertemplate="%{text}<br>score %{y:.4g}<extra>round " + str(k) + "</extra>"))
    fig.add_trace(go.Scatter(x=frame["n"], y=frame["best so far"], mode="lines", name="best so far",
                             line=dict(color="black", shape="hv", width=2)))
    fig.update_xaxes(title="trial (in run order)")
    fig.update_yaxes(title=_score_title(objective), **_axis(_wants_log(frame["score"]), frame["score"].dropna()))
    return _layout(fig, "Incumbent curve: did each narrowing help?")


def score_distribution_figure(rounds: Sequence[RoundView], k: int, objective: Objective) -> go.Figure:
    """Scores of round ``k`` against every earlier round (box plus all points)."""
    fig = go.Figure()
    scores: list[float] = []
    for r in rounds:
        if r.k > k:
            continue
        ys = [t.score for t in r.trials if t.ok]
        scores += ys  # type: ignore[arg-type]
        fig.add_trace(go.Box(y=ys, name=f"round {r.k}", boxpoints="all", jitter=0.4, pointpos=0,
                             marker=dict(color=round_color(r.k), opacity=1.0 if r.k == k else 0.5),
                             line=dict(width=2.5 if r.k == k else 1)))
    fig.update_yaxes(title=_score_title(objective), **_axis(_wants_log(scores), scores))
    fig.update_layout(showlegend=False)
    return _layout(fig, f"Round {k} against earlier rounds")


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
        fig.add_annotation(x=at(proposed.low), y=0.1, yref="y domain", text=" refiner proposed", showarrow=False,
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
            fig.add_trace(go.Box(x=xs, y=ys, name=name, boxpoints="all", jitter=0.5, pointpos=0,
                                 fillcolor="rgba(0,0,0,0)", line=dict(width=0), marker=marker, text=text,
                                 hoveron="points", hovertemplate="%{text}<br>score %{y:.4g}<extra></extra>"))
    best = best_trial(list(used), objective)
    if best is not None:
        x = best.hyperparameters[param.name]
        fig.add_trace(go.Scatter(x=[x if numeric else _cat_label(x)], y=[best.score], mode="markers",
                                 name="best trial", marker=dict(symbol="star", size=16, color="gold",
                                                                line=dict(color="black", width=1))))
    if numeric:
        _numeric_bands(fig, before, after, proposed, evidence, log=param.log)  # type: ignore[union-attr]
        xs = [t.hyperparameters[param.name] for t in used] + _bounds(before, after, proposed)
        fig.update_xaxes(**_axis(param.log, xs))  # type: ignore[union-attr]
    else:
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=labels)
        _categorical_bands(fig, before, after, labels)
        fig.update_layout(boxmode="group")
    fig.update_xaxes(title=param.name)
    fig.update_yaxes(title=_score_title(objective),
                     **_axis(_wants_log([t.score for t in used]), [t.score for t in used]))
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
    fig.update_yaxes(title=f"predicted {_score_title(objective)}")
    fig.update_layout(showlegend=False)
    return _layout(fig, f"Partial dependence of {param.name}{trusted}")


def importance_figure(surrogate: Mapping[str, Any] | None) -> go.Figure | None:
    """The surrogate's importances as horizontal bars, largest on top (None if there are none)."""
    importances = (surrogate or {}).get("importances") or {}
    if not importances:
        return None
    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig = go.Figure(go.Bar(x=[v for _, v in items], y=[n for n, _ in items], orientation="h",
                           marker_color="#00CC96", text=[f"{v:.2f}" for _, v in items], textposition="auto"))
    fig.update_xaxes(title="importance (share of partial-dependence variance)", range=[0, 1])
    fig.update_yaxes(type="category")
    assert surrogate is not None
    model = surrogate.get("model") or "none"
    cv = surrogate.get("cv_score")
    cv_text = "-" if cv is None else f"{cv:.2f}"
    trusted = "" if surrogate.get("trusted") else " - NOT TRUSTED: ranges kept"
    if not surrogate.get("trusted"):
        fig.update_traces(marker_color="#bbbbbb")  # grey: these bars decided nothing
    return _layout(fig, f"Importance ({model}, CV Spearman {cv_text}){trusted}", height=max(360, 80 + 36 * len(items)))


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
                ticks = _log_ticks(lo, hi)
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
    if _wants_log(scores):
        ticks = _log_ticks(min(scores), max(scores))
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


def _log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks between ``lo`` and ``hi`` (positive), or the two ends if fewer than two fit."""
    ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
             for m in (1, 2, 5) if lo <= m * 10.0 ** e <= hi]
    if len(ticks) > 8:
        ticks = [t for t in ticks if f"{t:e}".startswith("1")] or ticks
    return ticks if len(ticks) >= 2 else [lo, hi]


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
