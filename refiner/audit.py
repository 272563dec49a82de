"""The audit: every earlier cut judged again with everything learned since.

A narrowing decision is made with the trials of its round. Later rounds add evidence, and a
cut that looked safe may now look like it removed the optimum's basin (the risk of sequential
domain reduction that DESIGN.md section 4 records: bayes_opt left 2 of 12 seeds stuck). After every
round a surrogate fitted on **all** completed trials, encoded against the space the user declared,
judges each earlier cut piece by piece:

* a *piece* is one side of a numeric range that was cut away (``low``: [old low, new low),
  ``high``: (new high, old high]) or the choice values that were dropped (``values``);
* the piece's best predicted value is the best surrogate mean among :data:`CANDIDATES`
  configurations drawn from the round's space with the parameter inside the piece, and among
  the observed trials there; the *kept* part is measured the same way with the parameter inside
  the range that was kept, so both sides are maxima over equally many draws (a comparison of a
  maximum against a single incumbent would favour the piece by chance alone);
* verdicts, with ``m`` the piece's best mean, ``s`` its calibrated std and ``k`` the kept part's best:
  ``safe`` when even ``m + SAFE_Z * s`` falls short of ``k`` (the region-elimination rule of
  GP-UCB, Srinivas et al. 2010, that narrowing itself uses); ``wrong`` when ``m`` beats ``k`` and
  at least :data:`MIN_SUPPORT` trials observed in the piece beat ``k`` too; ``doubtful`` in
  between; ``unjudged`` when the surrogate's cross-validated rank correlation is below
  ``min_cv_score`` (it is not trusted to judge anything).

Real scores are noisy, and a surrogate that nearly interpolates its trials follows one lucky
trial (a test shows it: one trial scoring 10 std better than its region made a forest predict
the region better). So a piece is only called ``wrong`` on evidence from more than one trial,
and a surrogate's extrapolation into a piece nobody tried is at most ``doubtful``. A ``wrong``
piece whose lower bound ``m - REOPEN_Z * s`` still beats ``k`` is strong evidence, and
:func:`reopen` undoes that cut in the next space (a numeric side goes back to the bound it had
before the cut, dropped values return). Pure functions, no I/O; the loop writes the result to
``rounds/<k>/audit.json`` (``schemas/audit.schema.json``).

Regions (a round space that is a union of boxes, :mod:`refiner.narrowing_method.regions`): the
audit judges the enclosing cut, the decisions' before -> after, in each round's enclosing box;
the gaps between regions are not judged as pieces of their own. When the audit re-opens a range
that regions bound, the loop gives the regions up, so the re-opened part is searched.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from refiner.encoding import Encoder
from refiner.narrowing import Decision
from refiner.narrowing_method.bounds import choice_of, clean, merged_values, stretch
from refiner.narrowing_method.evidence import num
from refiner.space import Boolean, Choice, Fixed, Float, Int, Parameter, SearchSpace, same_scalar, parameter_from_dict
from refiner.surrogate import fit_surrogate
from refiner.trial import Objective, Trial

__all__ = ["Judgement", "AuditedCut", "audit_cuts", "audit_document", "reopen", "VERDICTS",
           "CANDIDATES", "SAFE_Z", "REOPEN_Z"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
VERDICTS = ("safe", "doubtful", "wrong", "unjudged")
CANDIDATES = 400  # draws per side of each comparison
SAFE_Z = 2.0  # safe: even mean + 2 calibrated std of the piece falls short of the kept part
REOPEN_Z = 1.0  # re-open: the piece's mean - 1 std still beats the kept part
MIN_SUPPORT = 2  # "wrong" needs this many trials in the piece that beat the kept part's best prediction


@dataclass(frozen=True)
class AuditedCut:
    """One decision to judge: round ``round`` searched ``before`` and the next round searched ``after``."""

    round: int
    name: str
    before: Parameter
    after: Parameter
    space: SearchSpace  # the whole space round ``round`` searched
    overridden: bool = False  # the cut was a person's, not refiner's


@dataclass(frozen=True)
class Judgement:
    """The verdict on one piece of one cut."""

    round: int
    name: str
    piece: str  # "low" | "high" | "values"
    cut: dict  # {"low": a, "high": b} or {"values": [...]}: what was cut away
    verdict: str
    best_cut: float | None  # best predicted value in the piece, in the objective's own units
    best_cut_std: float | None
    best_kept: float | None  # best predicted value in the kept part
    best_cut_config: dict | None
    reopen: bool
    overridden: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Judgement":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})


# -- which cuts -------------------------------------------------------------------------------------
def cuts_of(round_index: int, space: SearchSpace, decisions: Mapping[str, Any]) -> list[AuditedCut]:
    """The cuts among a decisions document's (as applied: a person's overrides included)."""
    out = []
    for d in decisions["decisions"]:
        before, after = parameter_from_dict(d["before"]), parameter_from_dict(d["after"])
        if _pieces(before, after):
            # The enclosing cut, in the round's enclosing box (the module docstring on regions).
            out.append(AuditedCut(round_index, d["name"], before, after, space.without_regions(),
                                  overridden="override" in d))
    return out


def _pieces(before: Parameter, after: Parameter) -> list[tuple[str, Parameter]]:
    """What ``after`` cut away from ``before``, as parameters of ``before``'s kind spanning each piece."""
    if isinstance(before, (Float, Int)):
        if isinstance(after, Fixed) and isinstance(after.value, (int, float)) and not isinstance(after.value, bool):
            low, high = float(after.value), float(after.value)
        elif isinstance(after, type(before)):
            low, high = float(after.low), float(after.high)
        else:
            return []
        out = []
        step = _step(before)
        if low > before.low:
            top = low - step if step else low
            if top >= before.low:
                out.append(("low", dataclasses.replace(before, high=_as(before, top), conditions=())))
        if high < before.high:
            bottom = high + step if step else high
            if bottom <= before.high:
                out.append(("high", _on_grid(before, bottom)))
        return out
    if isinstance(before, (Choice, Boolean)):
        kept = list(after.values) if isinstance(after, (Choice, Boolean)) else (
            [after.value] if isinstance(after, Fixed) else [])
        gone = tuple(v for v in before.values if not any(same_scalar(v, k) for k in kept))
        if not gone or len(gone) == len(before.values):
            return []
        return [("values", Choice(before.name, gone) if len(gone) > 1 else Fixed(before.name, gone[0]))]
    return []


def _step(p: Float | Int) -> float:
    if isinstance(p, Int):
        return 0 if p.log else p.grid_step
    return p.step or 0


def _as(p: Float | Int, value: float) -> Any:
    return int(round(value)) if isinstance(p, Int) else value


def _on_grid(before: Float | Int, bottom: float) -> Parameter:
    """``before``'s range from ``bottom`` up, keeping the grid anchored where it was."""
    step = _step(before)
    if not step:
        return dataclasses.replace(before, low=_as(before, bottom), conditions=())
    # A stepped range is anchored at its low: move low along the grid and keep high on it.
    n = math.floor((before.high - bottom) / step + 1e-9)
    return dataclasses.replace(before, low=_as(before, bottom), high=_as(before, bottom + n * step), conditions=())


def _kept(before: Parameter, after: Parameter) -> Parameter:
    """The part of ``before`` that ``after`` kept, with ``before``'s conditions (for sampling)."""
    if isinstance(after, Fixed):
        return Fixed(before.name, after.value, conditions=before.conditions)
    return dataclasses.replace(after, conditions=before.conditions)


# -- judging ----------------------------------------------------------------------------------------
def audit_cuts(
    cuts: Sequence[AuditedCut],
    trials: Sequence[Trial],
    original_space: SearchSpace,
    objective: Objective | str | Mapping[str, str],
    *,
    seed: int | None = 0,
    min_cv_score: float = 0.2,
) -> tuple[list[Judgement], dict[str, Any]]:
    """Judge every piece of every cut; returns the judgements and a summary of the surrogate used."""
    objective = Objective.coerce(objective)
    ok = [t for t in trials if t.evidence]
    if not cuts:
        return [], {"model": None, "cv_score": None, "trusted": False, "n_trials": len(ok)}
    # The audit only predicts: no partial dependence or importances (half of a fit's time).
    surrogate = fit_surrogate(original_space, ok, objective, seed=seed, min_cv_score=min_cv_score, analyse=False)
    summary = {"model": surrogate.model_name, "cv_score": surrogate.cv_score, "trusted": bool(surrogate.trusted),
               "n_trials": len(ok)}
    sign = 1.0 if objective.direction == "max" else -1.0
    rng = np.random.default_rng(seed)
    out = []
    for cut in cuts:
        kept_space = cut.space.replace(_kept(cut.before, cut.after)) if cut.name in cut.space else None
        for piece, part in _pieces(cut.before, cut.after):
            cut_dict = ({"values": list(part.values) if isinstance(part, Choice) else [part.value]}
                        if piece == "values" else {"low": part.low, "high": part.high})
            if not surrogate.trusted or kept_space is None:
                why = getattr(surrogate, "note_", None) or (
                    f"the surrogate's cross-validated Spearman correlation is {_f(surrogate.cv_score)}, "
                    f"below min_cv_score={min_cv_score}")
                out.append(Judgement(cut.round, cut.name, piece, cut_dict, "unjudged", None, None, None, None, False,
                                     cut.overridden, f"Not judged: {why}."))
                continue
            piece_space = cut.space.replace(dataclasses.replace(part, conditions=cut.before.conditions))
            m, s, config, tried = _best(surrogate, piece_space, ok, cut.name, rng)
            k, _, _, _ = _best(surrogate, kept_space, ok, cut.name, rng)
            support = int(np.sum(sign * tried > k))  # trials in the piece that beat the kept part's best
            out.append(_judge(cut, piece, cut_dict, m, s, k, config, support, sign))
    return out, summary


def _best(surrogate: Any, space: SearchSpace, trials: Sequence[Trial], name: str,
          rng: np.random.Generator) -> tuple[float, float, dict | None, np.ndarray]:
    """Best predicted (oriented) mean in ``space`` where ``name`` is active, its std and configuration,
    and the scores of the trials observed there."""
    encoder = Encoder(space)
    X, codes = encoder.sample(CANDIDATES, rng)
    assignments = [a for a, c in zip(encoder.decode(X), codes[name]) if not np.isnan(c)]
    inside = [t for t in trials if space.contains(t.hyperparameters) and name in space.active_names(t.hyperparameters)]
    assignments += [dict(t.hyperparameters) for t in inside]
    scores = np.array([float(t.score) for t in inside])  # type: ignore[arg-type]
    if not assignments:
        return -math.inf, 0.0, None, scores
    mean, std = surrogate.predict_assignments(assignments)
    i = int(np.argmax(mean))
    return float(mean[i]), float(std[i]), assignments[i], scores


def _judge(cut: AuditedCut, piece: str, cut_dict: dict, m: float, s: float, k: float, config: dict | None,
           support: int, sign: float) -> Judgement:
    where = (f"{cut.name} in {_describe_cut(cut_dict)}")
    who = "a person's override" if cut.overridden else f"round {cut.round}'s decision"
    values = f"best predicted {_f(sign * m)} ± {_f(s)} there against {_f(sign * k)} in the part kept"
    if m == -math.inf:
        return Judgement(cut.round, cut.name, piece, cut_dict, "unjudged", None, None, None, None, False,
                         cut.overridden, f"Not judged: no configuration of {where} is active.")
    trials_note = f"{support} trial{'s' if support != 1 else ''} there beat{'s' if support == 1 else ''} that"
    if m + SAFE_Z * s < k:
        verdict, reopen_it = "safe", False
        reason = f"Safe: the cut of {where} ({who}) removed nothing promising: {values}."
    elif m > k and support >= MIN_SUPPORT:
        reopen_it = m - REOPEN_Z * s > k
        verdict = "wrong"
        reason = (f"Wrong: the cut of {where} ({who}) now looks like it removed something better: {values}, "
                  f"and {trials_note}"
                  + ("; re-opened in the next space." if reopen_it else "; not yet sure enough to re-open it."))
    else:
        verdict, reopen_it = "doubtful", False
        reason = f"Doubtful: the cut of {where} ({who}) may have removed something as good: {values}" + (
            f" ({trials_note}; fewer than {MIN_SUPPORT} is no evidence)." if m > k else ".")
    kept = k if math.isfinite(k) else None
    return Judgement(cut.round, cut.name, piece, cut_dict, verdict, clean(sign * m), clean(s),
                     None if kept is None else clean(sign * kept), config, reopen_it, cut.overridden, reason)


def _describe_cut(cut: Mapping[str, Any]) -> str:
    if "values" in cut:
        return "{" + ", ".join(repr(v) if isinstance(v, str) else str(v) for v in cut["values"]) + "}"
    return f"[{_f(cut['low'])}, {_f(cut['high'])}]"


def _f(x: Any) -> str:
    return "n/a" if x is None else (f"{x:.4g}" if isinstance(x, float) else str(x))


def audit_document(round_index: int, judgements: Sequence[Judgement], summary: Mapping[str, Any]) -> dict[str, Any]:
    """The content of ``rounds/<k>/audit.json``."""
    return {
        "format_version": FORMAT_VERSION,
        "round": int(round_index),
        "surrogate": {"model": summary.get("model"), "cv_score": num(summary.get("cv_score")),
                      "trusted": bool(summary.get("trusted")), "n_trials": int(summary.get("n_trials", 0))},
        "judgements": [j.to_dict() for j in judgements],
    }


# -- re-opening ---------------------------------------------------------------------------------------
def reopen(decisions: Sequence[Decision], judgements: Sequence[Judgement], original_space: SearchSpace,
           cut_before: Mapping[tuple[int, str], Parameter]) -> list[Decision]:
    """``decisions`` with every strongly wrong cut undone in their ``after`` (the next space).

    ``cut_before`` maps (round, name) to the parameter as it was before that cut. A numeric side
    returns to the bound it had then; dropped values come back (in the original order), unless a
    conditional parameter depends on the choice, whose conditions a person must restore.
    """
    by_name: dict[str, list[Judgement]] = {}
    for j in judgements:
        if j.reopen:
            by_name.setdefault(j.name, []).append(j)
    if not by_name:
        return list(decisions)
    parents = {c.parent for p in original_space for c in p.conditions}
    out = []
    for d in decisions:
        found = by_name.get(d.name)
        if not found:
            out.append(d)
            continue
        after = parameter_from_dict(d.after)
        notes = []
        for j in found:
            earlier = cut_before.get((j.round, j.name))
            if earlier is None:
                continue
            widened = _widen(after, earlier, j, original_space, d.name in parents)
            if widened is not None and widened.to_dict() != after.to_dict():
                after = widened
                notes.append(f"{_describe_cut(j.cut)} (cut in round {j.round})")
        if not notes:
            out.append(d)
            continue
        reason = f"{d.reason} Audit: re-opened {d.name} to {after.describe()}, restoring {'; '.join(notes)}."
        evidence = {**d.evidence, "audit_reopened": [j.piece for j in found]}
        out.append(Decision(d.name, "expand", d.before, after.to_dict(), reason, evidence))
    return out


def _widen(after: Parameter, earlier: Parameter, j: Judgement, original: SearchSpace, is_parent: bool) -> Parameter | None:
    """``after`` with judgement ``j``'s piece of the ``earlier`` range put back. A numeric side keeps
    the earlier range's grid (the current one is anchored on it) and its own settings."""
    if j.piece in ("low", "high") and isinstance(earlier, (Float, Int)):
        if not isinstance(after, (type(earlier), Fixed)):
            return None
        return stretch(after, earlier, down_to=earlier.low if j.piece == "low" else None,
                       up_to=earlier.high if j.piece == "high" else None)
    if j.piece == "values" and isinstance(earlier, (Choice, Boolean)) and not is_parent:
        declared = original[j.name] if j.name in original else None
        reference = declared.values if isinstance(declared, (Choice, Boolean)) else earlier.values
        return choice_of(earlier, merged_values(after, j.cut["values"], reference), after.conditions)
    return None
