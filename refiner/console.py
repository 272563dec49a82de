"""Plain-text tables and lines for the terminal: per-trial progress, per-round tables, ``refiner show``.

Pure formatting: every function returns a string, so the library can log it and the CLI can
print it, and neither needs to know how it was laid out.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from refiner.overrides import refined_space
from refiner.space import SearchSpace, parameter_from_dict
from refiner.text import fmt, short
from refiner.trial import Objective, Trial

__all__ = ["fmt", "short", "table", "trial_line", "round_table", "decision_table", "run_summary", "planned_trials",
           "schedule_words", "compute_spent"]


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], wrap: Mapping[int, int] | None = None) -> str:
    """Left-aligned columns separated by two spaces; ``wrap`` maps a column index to a wrap width."""
    wrap = wrap or {}
    cells = [[str(h) for h in headers]]
    for row in rows:
        cells.append([fmt(c) if not isinstance(c, str) else c for c in row])
    # Wrap long cells into several physical lines.
    physical: list[list[str]] = []
    for row in cells:
        parts = [textwrap.wrap(c, wrap[i]) or [""] if i in wrap else [c] for i, c in enumerate(row)]
        height = max(len(p) for p in parts)
        for line in range(height):
            physical.append([p[line] if line < len(p) else "" for p in parts])
    widths = [max(len(r[i]) for r in physical) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(physical):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _params(values: Mapping[str, Any], limit: int = 6) -> str:
    items = [f"{k}={fmt(v)}" for k, v in values.items()]
    if len(items) > limit:
        items = items[:limit] + [f"(+{len(items) - limit})"]
    return " ".join(items)


def trial_line(trial: Trial, n: int, total: int, best: Trial | None, objective: Objective,
               epochs: tuple[int, int] | None = None) -> str:
    """One progress line: ``round 1  trial 3/10  val_accuracy 0.912  best 0.930  1.2s  lr=…``; with an
    epoch budget, ``round 1  trial 3  epochs 41/600  …`` (the run's epochs spent of ``fidelity.total``)."""
    if trial.ok:
        result = f"{objective.name} {fmt(trial.score)}"
        if best is not None and best.trial_id == trial.trial_id:
            result += " (new best)"
    elif trial.evidence:  # stopped at a rung (refiner.fidelity)
        result = f"{objective.name} {fmt(trial.score)} (stopped at {trial.fidelity})"
    else:
        result = f"FAILED: {trial.message or 'no message'}"[:120]
    best_text = f"best {fmt(best.score)}" if best is not None else "best -"
    count = f"trial {n}/{total}" if epochs is None else f"trial {n}  epochs {epochs[0]}/{epochs[1]}"
    return (f"round {trial.round}  {count}  {result}  {best_text}  "
            f"{trial.duration_s:.1f}s  {_params(trial.hyperparameters)}")


def describe_param(document: Mapping[str, Any] | None) -> str:
    if not document:
        return "-"
    return parameter_from_dict(document).describe()


def decision_table(decisions: Sequence[Mapping[str, Any]], width: int = 60,
                   audit: Mapping[str, str] | None = None) -> str:
    """parameter / before / after / action / reason, one row per decision; with ``audit`` (name ->
    latest verdict on that decision's cut, :func:`audit_verdicts`) an audit column too."""
    rows = []
    for d in decisions:
        reason = d.get("reason", "")
        if d.get("override"):
            reason = f"[overridden by a person] {reason}"
        row = [d["name"], describe_param(d.get("before")), describe_param(d.get("after")), d["action"]]
        if audit is not None:
            row.append(audit.get(d["name"], "-"))
        rows.append(row + [reason])
    headers = ["parameter", "before", "after", "action"] + (["audit"] if audit is not None else []) + ["reason"]
    return table(headers, rows, wrap={len(headers) - 1: width})


_VERDICT_ORDER = ("unjudged", "safe", "doubtful", "wrong")


def latest_judgements(store: Any) -> dict[int, dict[str, list[dict[str, Any]]]]:
    """Per round, per parameter: the pieces of that round's cut as the latest audit judged them."""
    out: dict[int, dict[str, list[dict[str, Any]]]] = {}
    for k in store.rounds():  # later audits replace earlier ones: they know more
        audit = store.read_audit(k)
        if not audit:
            continue
        fresh: dict[tuple[int, str], list[dict[str, Any]]] = {}
        for j in audit["judgements"]:
            fresh.setdefault((j["round"], j["name"]), []).append(j)
        for (round_index, name), pieces in fresh.items():
            out.setdefault(round_index, {})[name] = pieces
    return out


def verdict_of(pieces: Sequence[Mapping[str, Any]]) -> str:
    """One word for a cut: the worst verdict among its pieces, and whether the audit re-opened it."""
    worst = max((j["verdict"] for j in pieces), key=_VERDICT_ORDER.index)
    return worst + (" (re-opened)" if any(j["reopen"] for j in pieces) else "")


def audit_verdicts(store: Any) -> dict[int, dict[str, str]]:
    """Per round, per parameter: :func:`verdict_of` the latest audit of that round's cut."""
    return {k: {name: verdict_of(pieces) for name, pieces in by_name.items()}
            for k, by_name in latest_judgements(store).items()}


def audit_table(audit: Mapping[str, Any], width: int = 70) -> str:
    """round / parameter / cut away / verdict / reason, one row per judged piece of an earlier cut."""
    rows = []
    for j in audit["judgements"]:
        cut = j["cut"]
        where = (", ".join(fmt(v) for v in cut["values"]) if "values" in cut
                 else f"[{fmt(cut['low'])}, {fmt(cut['high'])}]")
        verdict = j["verdict"] + (" (re-opened)" if j["reopen"] else "")
        rows.append([j["round"], j["name"], where, verdict, j["reason"]])
    return table(["cut in round", "parameter", "cut away", "verdict", "reason"], rows, wrap={4: width})


def round_table(k: int, trials: Sequence[Trial], best: Trial | None, surrogate: Any,
                decisions: Sequence[Any], objective: Objective, regions: str | None = None) -> str:
    """The end-of-round report the agent logs: scores, surrogate, the decision table and the regions' reason."""
    ok = [t for t in trials if t.ok]
    stopped = [t for t in trials if t.evidence and not t.ok]
    failed = len(trials) - len(ok) - len(stopped)
    round_best = None
    for t in ok:
        if round_best is None or objective.better(t.score, round_best.score):  # type: ignore[arg-type]
            round_best = t
    spent = f", {compute_spent(trials)}" if any(t.fidelity is not None for t in trials) else ""
    head = (f"round {k}: {len(trials)} trials ({failed} failed{f', {len(stopped)} stopped early' if stopped else ''})"
            f"{spent}, best this round {fmt(round_best.score if round_best else None)}, "
            f"best so far {fmt(best.score if best else None)}")
    model = getattr(surrogate, "model_name", None)
    cv = getattr(surrogate, "cv_score", None)
    trusted = getattr(surrogate, "trusted", False)
    surrogate_line = (f"surrogate: {model or 'none'}, cross-validated rank correlation {fmt(cv)}"
                      f" ({'trusted' if trusted else 'not trusted: ranges kept'})")
    docs = [d.to_dict() if hasattr(d, "to_dict") else d for d in decisions]
    lines = [head, surrogate_line, decision_table(docs)]
    if regions is not None:
        lines.append(regions)
    return "\n".join(lines)


def compute_spent(trials: Sequence[Trial]) -> str:
    """``"epochs 41 of 81 (51 %), 12.3 s"``: the budget the trials used against training every one to the end."""
    reached = [t.fidelity for t in trials if t.fidelity is not None]
    spent, whole = sum(reached), max(reached, default=0) * len(reached)  # every trial to the most any reached
    share = f" ({100 * spent / whole:.0f} %)" if whole else ""
    return f"epochs {spent} of {whole}{share}, {sum(t.duration_s for t in trials):.1f} s"


def planned_trials(settings: Mapping[str, Any]) -> int:
    """A run's total trial budget, from its recorded settings (round 0 may have its own size)."""
    rounds, per_round = settings["rounds"], settings["trials_per_round"]
    return settings.get("initial_trials", per_round) + (rounds - 1) * per_round


def schedule_words(settings: Mapping[str, Any]) -> str:
    """``"3 rounds of 10 trials"``, or ``"3 rounds: 6 trials, then 12 per round"``; with an epoch
    budget ``"3 rounds, 600 epochs in all (at most 120 trials, then 240 per round)"``."""
    rounds, per_round = settings["rounds"], settings["trials_per_round"]
    initial = settings.get("initial_trials", per_round)
    total = (settings.get("fidelity") or {}).get("total")
    if total is not None:
        most = f"{initial} trials, then {per_round} per round" if initial != per_round and rounds > 1 else \
            f"{per_round} trials per round"
        return f"{rounds} rounds, {total} epochs in all (at most {most})"
    if initial == per_round or rounds == 1:
        return f"{rounds} rounds of {initial if rounds == 1 else per_round} trials"
    return f"{rounds} rounds: {initial} trials, then {per_round} per round"


@dataclass(frozen=True)
class EpochSpend:
    """A run's epochs against its epoch budget (``fidelity.total``): in all, and per round against
    the round's share of it (:meth:`refiner.fidelity.EpochBudget.share`; an overshoot in one round
    is taken out of the next)."""

    spent: int
    total: int
    rounds: tuple[tuple[int, int, int], ...]  # (round, epochs spent in it, its share)


def epoch_spend(settings: Mapping[str, Any], trials_by_round: Mapping[int, Sequence[Trial]]) -> EpochSpend | None:
    """The epochs spent of a run with an epoch budget (``None`` without one), as the run counts them."""
    from refiner.fidelity import EpochBudget, trial_epochs

    total = (settings.get("fidelity") or {}).get("total")
    if total is None:
        return None
    rounds, per_round = settings["rounds"], settings["trials_per_round"]
    budget = EpochBudget(total, [settings.get("initial_trials", per_round) if k == 0 else per_round
                                 for k in range(rounds)], 0)
    spent = {k: sum(trial_epochs(t) for t in trials) for k, trials in trials_by_round.items() if k >= 0}
    return EpochSpend(sum(spent.values()), total, tuple((k, spent.get(k, 0), budget.share(k)) for k in range(rounds)))


def epoch_budget_line(settings: Mapping[str, Any], trials_by_round: Mapping[int, Sequence[Trial]]) -> str | None:
    """``"epochs: 590 spent of fidelity.total = 600; per round spent/share: 0: 130/120, ..."``, or
    ``None`` for a run without an epoch budget."""
    spend = epoch_spend(settings, trials_by_round)
    if spend is None:
        return None
    rounds_text = ", ".join(f"{k}: {spent}/{share}" for k, spent, share in spend.rounds)
    return f"epochs: {spend.spent} spent of fidelity.total = {spend.total}; per round spent/share: {rounds_text}"


def run_summary(store: Any) -> str:
    """What ``refiner show RUN_DIR`` prints: the run, then per round its space, best, trials, decisions."""
    from refiner.gate import approval_line
    from refiner.liveness import stopped_note
    run = store.read_run()
    settings, state = run["settings"], run["state"]
    objective = Objective(settings["objective"]["name"], settings["objective"]["direction"])
    out = [
        f"run {run['name']}  ({store.root})",
        f"status: {state['status']}" + (f" - {state['message']}" if state.get("message") else ""),
        *([f"liveness: {note}"] if (note := stopped_note(store.root, run)) else []),  # refiner.liveness
        f"target: {settings['target']} ({settings['mode']})",
        f"objective: {objective.name} ({objective.direction}),  {schedule_words(settings)},  "
        f"seed: {settings['seed']}",
    ]
    budget_line = epoch_budget_line(settings, {k: store.read_trials(k) for k in store.rounds()})
    if budget_line is not None:
        out.append(budget_line)
    imported = store.read_imported()
    if imported:
        space = SearchSpace.from_dict(settings["initial_space"])
        inside = sum(1 for t in imported if t.ok and space.contains(t.hyperparameters))
        out.append(f"warm start: {len(imported)} trials imported from {settings.get('warm_start')}, "
                   f"{inside} of them completed inside the space (evidence for the first surrogate)")
    best = state.get("best")
    if best:
        out.append(f"best: {objective.name} {fmt(best['score'])} (trial {best['trial_id']})  {_params(best['hyperparameters'], 99)}")
    verdicts = audit_verdicts(store)
    for k in store.rounds():
        trials = store.read_trials(k)
        ok = [t for t in trials if t.ok]
        scores = [t.score for t in ok]
        round_best = (max if objective.direction == "max" else min)(scores) if scores else None
        out.append("")
        stopped = sum(1 for t in trials if t.evidence and not t.ok)
        spent = f", {compute_spent(trials)}" if any(t.fidelity is not None for t in trials) else ""
        out.append(f"== round {k} ({'random' if k == 0 else 'Bayesian'}): {len(trials)} trials, "
                   f"{len(trials) - len(ok) - stopped} failed{f', {stopped} stopped early' if stopped else ''}{spent}, "
                   f"best {fmt(round_best)}")
        if store.has_space(k):
            space = store.read_space(k)
            out.append("space: " + ", ".join(f"{p.name} {p.describe()}" for p in space))
            out += region_lines(space)
        surrogate = store.read_surrogate(k)
        if surrogate:
            out.append(f"surrogate: {surrogate.get('model_name') or surrogate.get('model') or 'none'}, "
                       f"CV rank correlation {fmt(surrogate.get('cv_score'))}, "
                       f"{'trusted' if surrogate.get('trusted') else 'not trusted'}")
        decisions = store.read_decisions(k)
        if decisions:
            out.append(decision_table(decisions["decisions"], audit=verdicts.get(k) if verdicts else None))
            if decisions.get("regions"):
                out.append(decisions["regions"]["reason"])
        if (approved := approval_line(store, k)) is not None:  # refiner.gate
            out.append(approved)
        audit = store.read_audit(k)
        if audit and audit["judgements"]:
            s = audit["surrogate"]
            out.append(f"audit of earlier cuts after round {k} ({s['model'] or 'no model'}, CV rank correlation "
                       f"{fmt(s['cv_score'])}, {s['n_trials']} trials):")
            out.append(audit_table(audit))
    if store.refined_space_file.exists():
        refined = refined_space(store)  # with a person's edits of the last round, as `export` gives it
        out.append("")
        out.append("refined space: " + ", ".join(f"{p.name} {p.describe()}" for p in refined))
        out += region_lines(refined)
    return "\n".join(out)


def region_lines(space: SearchSpace) -> list[str]:
    """One line per region of a space made of regions (none for a plain box)."""
    if not space.regions:
        return []
    volumes = space.region_volumes()
    return [f"  region {i + 1} of {len(space.regions)}: {r.describe()} ({volumes[i]:.0%} of the box above)"
            for i, r in enumerate(space.regions)]
