"""What the review app shows, as pure functions: run listing, loading, tables, figures, exports.

The Streamlit page (:mod:`refiner.review_app`) only lays these out, so everything it shows can be
tested without a browser. Three rules hold here for the app's safety:

* a run is picked by *name* from the listing of the runs folder (:func:`list_runs`,
  :func:`resolve_run`); a name from the URL is checked against that listing and never joined
  to a path before it has been found there;
* a run that cannot be read raises :class:`RunFolderError` with one line, so the app can say
  what is wrong with that run and keep the others usable;
* text from run files is data: :func:`md_escape` makes it inert wherever the page renders
  Markdown, and no HTML is ever built from it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go

from refiner.check import run_problems
from refiner.errors import RefinerError, RunFolderError, ValidationError
from refiner.export import FORMATS, SUFFIXES, render
from refiner.overrides import decisions_with_overrides, read_overrides, refined_space
from refiner.console import fmt, latest_judgements, verdict_of
from refiner.space import (
    Fixed,
    Float,
    Int,
    Parameter,
    SearchSpace,
    discrete_values,
    parameter_from_dict,
)
from refiner.store import RunStore
from refiner.trial import Objective, Trial, best_trial

__all__ = [
    "RunNameError", "RunView", "RoundView",
    "list_runs", "latest_run", "check_run_name", "resolve_run", "run_signature", "load_run",
    "md_escape", "fmt", "describe", "round_color",
    "trials_frame", "incumbent_frame", "decision_frame", "beyond_text", "evidence_text", "overrides_frame",
    "incumbent_figure", "score_distribution_figure", "param_scatter_figure", "partial_dependence_figure",
    "importance_figure", "parallel_coordinates_figure",
    "build_override", "merge_overrides",
    "export_bytes", "export_filename", "safe_stem", "EXPORT_FORMATS",
]

EXPORT_FORMATS = {"json": "JSON", "keras-tuner": "KerasTuner code", "optuna": "Optuna code"}
assert set(EXPORT_FORMATS) == set(FORMATS)

# Plotly's default qualitative palette; a round keeps its colour in every figure.
_PALETTE = ("#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880",
            "#FF97FF", "#FECB52")
_BEFORE_FILL = "rgba(120, 120, 120, 0.16)"
_AFTER_FILL = "rgba(0, 170, 90, 0.13)"
_DROPPED_FILL = "rgba(220, 50, 50, 0.2)"
_FLAG_COLOR = "#d62728"


# -- run listing: names only ------------------------------------------------------------------
class RunNameError(RefinerError):
    """A run name that is unsafe or is not in the runs folder's listing."""


_NAME_RULE = re.compile(r"^[^/\\\x00-\x1f]{1,255}$")


def _safe_name(name: str) -> bool:
    # One path component, not hidden, not "." or "..": nothing that could step out of the folder.
    return (isinstance(name, str) and bool(_NAME_RULE.match(name)) and not name.startswith(".")
            and name.strip() == name)


def list_runs(runs_dir: str | Path) -> list[str]:
    """Names of the run folders (sub-folders holding ``run.json``) in ``runs_dir``, sorted."""
    base = Path(runs_dir)
    if not base.is_dir():
        return []
    inside = base.resolve()
    names = []
    for entry in base.iterdir():
        # A symlink may point anywhere: only real folders that lie inside the runs folder count.
        if _safe_name(entry.name) and not entry.is_symlink() and entry.is_dir() \
                and (entry / "run.json").is_file() and entry.resolve().parent == inside:
            names.append(entry.name)
    return sorted(names)


def latest_run(runs_dir: str | Path, names: Sequence[str] | None = None) -> str | None:
    """The listed run whose ``run.json`` changed last (the one a user most likely wants to see)."""
    names = list_runs(runs_dir) if names is None else list(names)
    if not names:
        return None

    def mtime(name: str) -> float:
        try:
            return (Path(runs_dir) / name / "run.json").stat().st_mtime
        except OSError:
            return 0.0

    return max(names, key=lambda n: (mtime(n), n))


def check_run_name(runs_dir: str | Path, name: str) -> str:
    """``name`` if it is one of :func:`list_runs`; else :class:`RunNameError` saying why not."""
    if not _safe_name(name):
        raise RunNameError(f"run name {name!r} is not allowed: a run is picked by its folder name "
                           f"(no '/', '\\', leading '.' or control characters)")
    if name not in list_runs(runs_dir):
        raise RunNameError(f"no run named {name!r} in {runs_dir}")
    return name


def resolve_run(runs_dir: str | Path, name: str) -> Path:
    """The folder of run ``name``, checked against the listing first."""
    return Path(runs_dir) / check_run_name(runs_dir, name)


def run_signature(root: str | Path) -> tuple[tuple[str, int, int], ...]:
    """(file, mtime_ns, size) of every file the app reads: a cache key that changes when the run does.

    The store replaces JSON files atomically and the app ignores torn JSON-lines tails, so keying
    the cache on this never shows a half-written document; it only decides when to read again.
    """
    root = Path(root)
    files = [root / "run.json", root / "refined_space.json", root / "events.jsonl"]
    base = root / "rounds"
    if base.is_dir():
        for d in sorted(base.iterdir(), key=lambda p: p.name):
            if d.name.isdigit():
                files += [d / f for f in ("space.json", "trials.jsonl", "surrogate.json", "decisions.json",
                                          "overrides.json")]
    out = []
    for f in files:
        try:
            st = f.stat()
        except OSError:
            continue
        out.append((str(f.relative_to(root)), st.st_mtime_ns, st.st_size))
    return tuple(out)


# -- loading ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RoundView:
    """Everything recorded for round ``k``; later parts are None while the round is running."""

    k: int
    space: SearchSpace | None
    trials: tuple[Trial, ...]
    surrogate: dict[str, Any] | None
    decisions: dict[str, Any] | None  # refiner's proposal with any overrides applied
    overrides: dict[str, Any] | None
    next_started: bool  # round k+1 has its space, so an override of round k can no longer reach it
    audit: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)  # name -> latest judgements of its cut

    @property
    def kind(self) -> str:
        return "random" if self.k == 0 else "Bayesian"

    def decision(self, name: str) -> dict[str, Any] | None:
        if self.decisions is None:
            return None
        return next((d for d in self.decisions["decisions"] if d["name"] == name), None)


@dataclass(frozen=True)
class RunView:
    """One run as the app shows it (read once per change of :func:`run_signature`)."""

    name: str
    root: Path
    run: dict[str, Any]
    rounds: tuple[RoundView, ...]
    has_refined_space: bool
    events: tuple[dict[str, Any], ...] = field(default=())
    imported: tuple[Trial, ...] = field(default=())  # a warm start's trials, each with its source
    problems: tuple[str, ...] = field(default=())  # refiner.check.run_problems(): files that disagree, missing, stray

    @property
    def store(self) -> RunStore:
        return RunStore(self.root)

    @property
    def objective(self) -> Objective:
        o = self.run["settings"]["objective"]
        return Objective(o["name"], o["direction"])

    @property
    def status(self) -> str:
        return self.run["state"]["status"]

    @property
    def trials(self) -> list[Trial]:
        return [t for r in self.rounds for t in r.trials]

    @property
    def best(self) -> Trial | None:
        return best_trial(self.trials, self.objective)

    def round(self, k: int) -> RoundView:
        return next(r for r in self.rounds if r.k == k)


def load_run(runs_dir: str | Path, name: str, events: int = 50) -> RunView:
    """Read and validate run ``name`` of ``runs_dir``.

    Raises:
        RunNameError: ``name`` is not a run of the listing.
        RunFolderError: a file of the run is missing, unparsable or breaks its schema (one line).
    """
    root = resolve_run(runs_dir, name)
    store = RunStore(root)
    try:
        run = store.read_run()
        numbers = store.rounds()
        judged = latest_judgements(store)
        rounds = []
        for k in numbers:
            overrides_path = store.round_dir(k) / "overrides.json"
            try:
                decisions = decisions_with_overrides(store, k)
            except ValidationError as exc:
                raise RunFolderError(f"{overrides_path}: {'; '.join(exc.problems)}") from None
            rounds.append(RoundView(
                k=k,
                space=store.read_space(k) if store.has_space(k) else None,
                trials=tuple(store.read_trials(k)),
                surrogate=store.read_surrogate(k),
                decisions=decisions,
                overrides=read_overrides(store, k),
                next_started=store.has_space(k + 1),
                audit=judged.get(k, {}),
            ))
        has_refined = store.refined_space_file.exists()
        if has_refined:
            store.read_refined_space()  # validate now, so a broken result shows as this run's problem
        recent = tuple(store.read_events()[-events:]) if events else ()
        imported = tuple(store.read_imported())
        # Every file passed its own check; now whether they agree (a trial recorded twice, ...).
        problems = tuple(str(p) for p in run_problems(store))
    except RunFolderError:
        raise
    except ValidationError as exc:
        raise RunFolderError(str(exc)) from None
    except (ValueError, KeyError, TypeError) as exc:  # a record that passed its schema but not its type
        raise RunFolderError(f"{root}: cannot be read ({type(exc).__name__}: {exc})") from None
    return RunView(name=name, root=root, run=run, rounds=tuple(rounds), has_refined_space=has_refined,
                   events=recent, imported=imported, problems=problems)


# -- text -------------------------------------------------------------------------------------
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$=^&\"'])")


def md_escape(text: Any) -> str:
    """``text`` made inert for Streamlit Markdown: every ASCII punctuation mark escaped, one line.

    CommonMark lets a backslash escape any ASCII punctuation, which disarms emphasis, links,
    tables, HTML, Streamlit's ``:color[...]`` directives and ``$`` maths alike.
    """
    flat = " ".join(str(text).split())
    return _MD_SPECIAL.sub(r"\\\1", flat)




def round_color(k: int) -> str:
    return _PALETTE[k % len(_PALETTE)]


def describe(document: Mapping[str, Any] | None) -> str:
    return "-" if not document else parameter_from_dict(document).describe()


# -- tables -----------------------------------------------------------------------------------
def trials_frame(trials: Sequence[Trial], space: SearchSpace | None = None) -> pd.DataFrame:
    """One row per trial: id, round, status, score, duration, every hyperparameter and metric.

    Metric columns are named ``metric: <name>`` so a metric never collides with a hyperparameter.
    """
    names: list[str] = list(space.names) if space is not None else []
    metrics: list[str] = []
    for t in trials:
        names += [n for n in t.hyperparameters if n not in names]
        metrics += [m for m in t.metrics if m not in metrics]
    rows = []
    for t in trials:
        row: dict[str, Any] = {"trial": t.trial_id, "round": t.round, "status": t.status.value,
                               "score": t.score, "duration (s)": t.duration_s}
        for n in names:
            row[n] = t.hyperparameters.get(n)
        for m in metrics:
            row[f"metric: {m}"] = t.metrics.get(m)
        row["message"] = t.message or ""
        if t.source is not None:
            row["source"] = f"imported from {t.source['run']} (trial {t.source['trial_id']}, round {t.source['round']})"
        rows.append(row)
    columns = ["trial", "round", "status", "score", "duration (s)", *names, *(f"metric: {m}" for m in metrics),
               "message"]
    if any(t.source is not None for t in trials):
        columns.append("source")
    frame = pd.DataFrame(rows, columns=columns)
    for n in names:  # keep a column of one type so Arrow can show it; inactive values stay empty
        values = [v for v in frame[n] if v is not None]
        if values and any(isinstance(v, bool) for v in values) and not all(isinstance(v, bool) for v in values):
            frame[n] = frame[n].map(lambda v: None if v is None else str(v))
    return frame


def incumbent_frame(trials: Sequence[Trial], objective: Objective) -> pd.DataFrame:
    """Trials in run order with their number, score and the best score so far (usable trials only)."""
    rows, best = [], None
    for n, t in enumerate(trials, start=1):
        if t.ok and (best is None or objective.better(t.score, best)):  # type: ignore[arg-type]
            best = t.score
        rows.append({"n": n, "trial": t.trial_id, "round": t.round, "score": t.score if t.ok else None,
                     "best so far": best, "ok": t.ok})
    return pd.DataFrame(rows, columns=["n", "trial", "round", "score", "best so far", "ok"])


def beyond_text(evidence: Mapping[str, Any] | None) -> str:
    """The warning for a decision whose good region reaches a bound the user set ('' if none)."""
    side = (evidence or {}).get("beyond_user_bound")
    return {"low": "⚠ optimum may lie below the lower bound",
            "high": "⚠ optimum may lie above the upper bound",
            "both": "⚠ optimum may lie beyond both bounds"}.get(side or "", "")


def evidence_text(evidence: Mapping[str, Any] | None) -> str:
    """The evidence of one decision as one readable line."""
    e = evidence or {}
    parts = []
    if e.get("incumbent") is not None:
        trial = f" (trial {e['incumbent_trial']})" if e.get("incumbent_trial") else ""
        parts.append(f"best trial's value {fmt(e['incumbent'])}{trial}")
    if e.get("importance") is not None:
        parts.append(f"importance {fmt(e['importance'])}")
    if e.get("cv_score") is not None:
        model = f" ({e['model']})" if e.get("model") else ""
        parts.append(f"surrogate CV Spearman {e['cv_score']:.2f}{model}")
    if e.get("n_trials") is not None:
        parts.append(f"{e['n_trials']} trials")
    if e.get("region_low") is not None and e.get("region_high") is not None:
        parts.append(f"good region [{fmt(e['region_low'])}, {fmt(e['region_high'])}]")
    if e.get("shrink") is not None:
        parts.append(f"new width {e['shrink']:.0%} of old")
    if e.get("dropped"):
        parts.append("dropped " + ", ".join(fmt(v) for v in e["dropped"]))
    for v in e.get("values") or []:
        share = "-" if v.get("good_share") is None else f"{v['good_share']:.0%}"
        parts.append(f"{fmt(v['value'])}: {v['n_trials']} tried, {v['n_top']} among the best, {share} of good region")
    return "; ".join(parts)


def decision_frame(decisions: Mapping[str, Any] | None,
                   audit: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> pd.DataFrame:
    """The decision table: flag, parameter, action, before, after (chosen), proposed, audit (the latest
    audit's verdict on the cut, :mod:`refiner.audit`), reason, evidence."""
    audit = audit or {}
    columns = ["flag", "parameter", "action", "before", "after", "refiner proposed", "override", "audit", "reason",
               "evidence"]
    rows = []
    for d in (decisions or {}).get("decisions", []):
        override = d.get("override")
        override_text = ""
        if override:
            override_text = "rejected by a person" if override.get("action") == "reject" else "edited by a person"
            if override.get("note"):
                override_text += f": {override['note']}"
        rows.append({
            "flag": beyond_text(d.get("evidence")),
            "parameter": d["name"],
            "action": action_text(d),  # a person's override, not refiner's superseded action
            "before": describe(d.get("before")),
            "after": describe(d.get("after")),
            "refiner proposed": describe(d["proposed"]) if "proposed" in d else "",
            "override": override_text,
            "audit": verdict_of(audit[d["name"]]) if audit.get(d["name"]) else "",
            "reason": d["reason"],
            "evidence": evidence_text(d.get("evidence")),
        })
    return pd.DataFrame(rows, columns=columns)


def overrides_frame(overrides: Mapping[str, Any] | None) -> pd.DataFrame:
    rows = [{"parameter": o["name"], "action": o["action"],
             "after": describe(o.get("after")) if o["action"] == "edit" else "the range round searched",
             "note": o.get("note", ""), "when": o.get("timestamp", "")}
            for o in (overrides or {}).get("overrides", [])]
    return pd.DataFrame(rows, columns=["parameter", "action", "after", "note", "when"])


# -- figures ----------------------------------------------------------------------------------
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


# -- overrides --------------------------------------------------------------------------------
def build_override(name: str, action: str, after: Mapping[str, Any] | None = None, note: str = "") -> dict[str, Any]:
    """One override entry as :func:`refiner.overrides.write_overrides` takes it."""
    entry: dict[str, Any] = {"name": name, "action": action}
    if action == "edit":
        entry["after"] = dict(after or {})
    if note.strip():
        entry["note"] = note.strip()
    return entry


def merge_overrides(existing: Mapping[str, Any] | None, entry: Mapping[str, Any] | None,
                    name: str) -> list[dict[str, Any]]:
    """The round's overrides with ``name``'s replaced by ``entry`` (or removed when ``entry`` is None)."""
    kept = [dict(o) for o in (existing or {}).get("overrides", []) if o["name"] != name]
    if entry is not None:
        kept.append(dict(entry))
    return kept


# -- export -----------------------------------------------------------------------------------
def export_bytes(store: RunStore, fmt_name: str) -> bytes:
    """Exactly what ``refiner export RUN --format fmt_name`` prints, as UTF-8 bytes.

    Raises:
        RunFolderError: the run has not finished (no ``refined_space.json``).
        ValidationError: the format is unknown, or KerasTuner cannot express the space's conditions.
    """
    if not store.refined_space_file.exists():
        raise RunFolderError(f"{store.refined_space_file}: missing - the run has not finished, "
                             f"so there is no refined space to export yet")
    return render(refined_space(store), fmt_name).encode("utf-8")


def safe_stem(run_name: str) -> str:
    """A file-name stem from a run name (anything unusual becomes '_')."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_name).strip("._") or "run"


def export_filename(run_name: str, fmt_name: str) -> str:
    safe = safe_stem(run_name)
    kind = {"json": "space", "keras-tuner": "space_keras_tuner", "optuna": "space_optuna"}[fmt_name]
    return f"{safe}_{kind}{SUFFIXES[fmt_name]}"


# -- review gate, edits, messages (issue 14) -------------------------------------------------------
def round_label(engine: str | None, k: int) -> str:
    """What searched round ``k``, engine included (an Optuna run is not KerasTuner's Bayesian search)."""
    if engine == "optuna":
        return "Optuna random sampler" if k == 0 else "Optuna model-based sampler (TPE or GP)"
    return "KerasTuner random search" if k == 0 else "KerasTuner Bayesian search"


def action_text(d: Mapping[str, Any]) -> str:
    """A decision's action as it stands: a person's override wins over refiner's action."""
    o = d.get("override")
    if not o:
        return str(d["action"])
    return "rejected by a person (range kept)" if o.get("action") == "reject" else "edited by a person"


_OVERRIDE_INDEX = re.compile(r"overrides\[(\d+)\](\.after)?(\.|: )?")


def plain_message(text: str, names: Sequence[str] = ()) -> str:
    """A validation line as a person reads it: ``overrides[2].after`` becomes the parameter's name
    (an index into a file they never saw) and Markdown backticks become quotes."""
    def name(m: re.Match) -> str:
        i = int(m.group(1))
        label = names[i] if i < len(names) else f"override {i + 1}"
        return f"{label}: " if m.group(3) else label
    return _OVERRIDE_INDEX.sub(name, str(text)).replace("`", "'")


def _number(text: str, integer: bool) -> float | int:
    value = float(text)  # ValueError for anything but a number
    if not math.isfinite(value):
        raise ValueError
    if integer:
        if not re.fullmatch(r"\s*[+-]?\d+\s*", text):
            raise ValueError
        return int(text)
    return value


def check_edit(declared: Parameter | None, base: Parameter, low_text: str, high_text: str,
               beyond: bool = False) -> tuple[dict[str, Any] | None, list[str]]:
    """An edited numeric range from the page's two text fields: the parameter document, or why not.

    Rules: numbers (whole numbers for an int), low below high (a zero-width range searches one
    value: fix it with the JSON editor instead), positive for a log scale, and inside the range
    the run declared unless ``beyond`` says widening past it is meant.
    """
    assert isinstance(base, (Float, Int))
    integer = isinstance(base, Int)
    kind = "a whole number (int parameter)" if integer else "a number"
    values: dict[str, float | int] = {}
    problems = []
    for field_name, text in (("low", low_text), ("high", high_text)):
        try:
            values[field_name] = _number(str(text).strip(), integer)
        except ValueError:
            problems.append(f"{base.name}: {field_name} must be {kind}, got {str(text).strip()!r}")
    if problems:
        return None, problems
    low, high = values["low"], values["high"]
    if low >= high:
        problems.append(f"{base.name}: low must be below high, got low={fmt(low)}, high={fmt(high)}"
                        + (" (a zero-width range; to fix one value, edit the parameter as JSON)" if low == high else ""))
    if base.log and low <= 0:
        problems.append(f"{base.name}: low must be above 0 on a log scale, got {fmt(low)}")
    if declared is not None and isinstance(declared, (Float, Int)) and not beyond and not problems \
            and (low < declared.low or high > declared.high):
        problems.append(f"{base.name}: [{fmt(low)}, {fmt(high)}] reaches outside the declared range "
                        f"[{fmt(declared.low)}, {fmt(declared.high)}]; tick 'go beyond the declared range' "
                        f"to widen it on purpose")
    if problems:
        return None, problems
    doc = base.to_dict()
    doc.update(low=low, high=high)
    return doc, []


def check_json_edit(declared: Parameter | None, doc: Any, beyond: bool = False) -> list[str]:
    """The same range rules for a parameter edited as JSON (its own schema is checked on save)."""
    if not isinstance(doc, dict) or doc.get("type") not in ("int", "float") or declared is None:
        return []
    low, high = doc.get("low"), doc.get("high")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        return []
    name = doc.get("name", declared.name)
    if doc["type"] == "int" and not all(float(v).is_integer() for v in (low, high)):
        return [f"{name}: low and high must be whole numbers (int parameter), got {low}, {high}"]
    if low == high:
        return [f"{name}: low equals high (a zero-width range); use type \"fixed\" to fix one value"]
    if isinstance(declared, (Float, Int)) and not beyond and (low < declared.low or high > declared.high):
        return [f"{name}: [{fmt(low)}, {fmt(high)}] reaches outside the declared range "
                f"[{fmt(declared.low)}, {fmt(declared.high)}]; tick 'go beyond the declared range' to widen it on purpose"]
    return []


# -- views across rounds -----------------------------------------------------------------------
def runs_overview_frame(runs_dir: str | Path, names: Sequence[str]) -> pd.DataFrame:
    """One row per run: status (a killed writer said so), engine, best, trials, dates; unreadable runs say why."""
    from refiner.liveness import stopped_note

    rows = []
    for name in names:
        store = RunStore(Path(runs_dir) / name)
        try:
            run = store.read_run()
            settings, state = run["settings"], run["state"]
            status = state["status"]
            if stopped_note(store.root, run):
                status = "stopped (writer gone)"
            best = (state.get("best") or {}).get("score")
            n = sum(len(store._complete_lines(store.round_dir(k) / "trials.jsonl")) for k in store.rounds())
            rows.append({"run": name, "status": status, "engine": settings.get("engine", "keras-tuner"),
                         "objective": f"{settings['objective']['name']} ({settings['objective']['direction']})",
                         "best": fmt(best), "trials": n, "rounds": f"{len(store.rounds())} of {settings['rounds']}",
                         "review": settings.get("review", "off"), "started": run["created_at"],
                         "last change": run["updated_at"]})
        except (RefinerError, KeyError, TypeError, ValueError) as exc:
            rows.append({"run": name, "status": f"unreadable: {str(exc)[:120]}"})
    return pd.DataFrame(rows, columns=["run", "status", "engine", "objective", "best", "trials", "rounds", "review",
                                       "started", "last change"]).fillna("")


def before_after_frame(rounds: Sequence[RoundView]) -> pd.DataFrame:
    """Every round's decisions on one table: round, parameter, action (as it stands), before, after."""
    rows = []
    for r in rounds:
        for d in (r.decisions or {}).get("decisions", []):
            rows.append({"round": r.k, "parameter": d["name"], "action": action_text(d),
                         "before": describe(d.get("before")), "after": describe(d.get("after")),
                         "refiner proposed": describe(d["proposed"]) if "proposed" in d else ""})
    return pd.DataFrame(rows, columns=["round", "parameter", "action", "before", "after", "refiner proposed"])


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
