"""The app's tables and texts: trials, decisions, overrides, evidence, before -> after.

Text from run files is data: :func:`md_escape` makes it inert wherever the page renders Markdown,
and no HTML is ever built from it.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import pandas as pd

from refiner.console import verdict_of
from refiner.review.runs import RoundView
from refiner.space import SearchSpace, parameter_from_dict
from refiner.text import fmt
from refiner.trial import Objective, Trial

__all__ = [
    "md_escape", "md_message", "describe", "trials_frame", "incumbent_frame", "beyond_text", "evidence_text",
    "decision_frame", "overrides_frame", "before_after_frame", "round_label", "action_text", "plain_message",
]


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$=^&\"'])")


def md_escape(text: Any) -> str:
    """``text`` made inert for Streamlit Markdown: every ASCII punctuation mark escaped, one line.

    CommonMark lets a backslash escape any ASCII punctuation, which disarms emphasis, links,
    tables, HTML, Streamlit's ``:color[...]`` directives and ``$`` maths alike.
    """
    flat = " ".join(str(text).split())
    return _MD_SPECIAL.sub(r"\\\1", flat)


def md_message(text: Any) -> str:
    """A refiner message for Streamlit Markdown: inert as :func:`md_escape` makes it, except that a
    name it quotes in backticks (``only 2 trials have `dropout` active``) shows as code rather than
    as literal backticks. A code span's content is never read as Markdown; with an unpaired
    backtick nothing becomes code."""
    parts = " ".join(str(text).split()).split("`")
    if len(parts) % 2 == 0:
        return md_escape(text)
    return "".join(_MD_SPECIAL.sub(r"\\\1", part) if i % 2 == 0 else f"`{part}`" if part.strip() else "\\`\\`"
                   for i, part in enumerate(parts))


def describe(document: Mapping[str, Any] | None) -> str:
    return "-" if not document else parameter_from_dict(document).describe()


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


def before_after_frame(rounds: Sequence[RoundView]) -> pd.DataFrame:
    """Every round's decisions on one table: round, parameter, action (as it stands), before, after."""
    rows = []
    for r in rounds:
        for d in (r.decisions or {}).get("decisions", []):
            rows.append({"round": r.k, "parameter": d["name"], "action": action_text(d),
                         "before": describe(d.get("before")), "after": describe(d.get("after")),
                         "refiner proposed": describe(d["proposed"]) if "proposed" in d else ""})
    return pd.DataFrame(rows, columns=["round", "parameter", "action", "before", "after", "refiner proposed"])
