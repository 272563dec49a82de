"""Narrowing: the next round's space, with one explained decision per hyperparameter.

Pure functions, no I/O. The method is the bounding box of good configurations of Perrone et al.
(NeurIPS 2019, "Learning search spaces for Bayesian optimization"), with the good configurations
taken from the surrogate rather than from earlier tasks:

1. draw ``n_candidates`` configurations from the current space and predict them;
2. the *good set* is the best-predicted candidates plus the best observed trials. How many
   candidates is set by the evidence: those that could still hold the optimum, i.e. whose upper
   confidence bound (mean + ``CONFIDENCE_Z`` calibrated std) reaches the best lower confidence
   bound among the candidates and the trials (the "potential maximisers" of GP-UCB region
   elimination, Srinivas et al. 2010; Bogunovic et al. 2016, TruVaR), but no more than
   ``top_fraction`` and no fewer than ``MIN_GOOD_SHARE`` of them. An unsure surrogate therefore
   narrows as before, and a sure one narrows further: boldness grows with the evidence. The
   confidence bounds are only read from ``BOLD_TRIALS_PER_DIM`` = 10 trials per tunable parameter
   on (the n = 10d rule for a surrogate's sample size, Loeppky, Sacks & Welch 2009): with fewer,
   a wrong but confident surrogate boxed Hartmann-6's local basin and lost the global optimum.
   Below that, or when the surrogate reports no uncertainty (std 0 everywhere), the good set is
   exactly ``top_fraction``;
3. per numeric parameter the new range is a quantile box of the good set in the search space's
   own coordinates (log space for log parameters), widened by a margin and snapped outward onto
   int/step grids; per choice, values are dropped only on evidence;
4. where the good set forms separate groups (a multimodal objective), the next space is the union
   of one box per group (:mod:`refiner.narrowing_method.regions`); the decisions stay one per
   parameter and give the enclosing box.

Safeguards (DESIGN.md section 4): an evidence gate (enough trials, a surrogate whose
cross-validated rank correlation can be trusted), the incumbent always stays inside, a minimum
width relative to the original space, negligible parameters and small shrinks are left alone,
edges narrowed earlier re-open when the good region presses against them, and the user's own
bounds are flagged when the optimum may lie beyond them.

This module is the method's outline (:func:`refine`); its steps are pure functions in
:mod:`refiner.narrowing_method.steps`, its numbers in :mod:`refiner.narrowing_method.constants`,
and the wording of its reasons in :mod:`refiner.narrowing_method.reasons`.
"""


from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from refiner.encoding import Encoder
from refiner.narrowing_method import reasons
from refiner.narrowing_method.conditions import children, pruned_conditions, with_conditions
from refiner.narrowing_method.decide import decide_choice, decide_numeric, keep
from refiner.narrowing_method.decision import ACTIONS, Decision, decisions_document
from refiner.narrowing_method.evidence import Evidence, SurrogateLike, model_of, n_top_trials, predictor, rank_trials
from refiner.narrowing_method.follow import follow_best_outside
from refiner.narrowing_method.regions import Regions, boxes_of, find_regions, kept_regions
from refiner.narrowing_method.settings import NarrowingConfig
from refiner.narrowing_method.steps import Gate, evidence_gate, good_set, no_good_set
from refiner.space import Fixed, Float, Int, SearchSpace, parameter_from_dict
from refiner.trial import Objective, Trial

__all__ = [
    "NarrowingConfig",
    "Decision",
    "ACTIONS",
    "refine",
    "propose",
    "Proposal",
    "Regions",
    "decisions_document",
    "SurrogateLike",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Proposal:
    """The next round's space (with its regions, if any), one decision per parameter, and the regions' record."""

    space: SearchSpace
    decisions: list[Decision]
    regions: Regions | None


def refine(
    space: SearchSpace,
    trials: Sequence[Trial],
    surrogate: SurrogateLike | None,
    *,
    objective: Objective | str | Mapping[str, str],
    original_space: SearchSpace | None = None,
    config: NarrowingConfig = NarrowingConfig(),
    seed: int | None = 0,
) -> tuple[SearchSpace, list[Decision]]:
    """The next round's space and one :class:`Decision` per parameter of ``space``, in order.

    ``trials`` may hold every trial so far; only completed ones inside ``space`` (its enclosing
    box, when it is made of regions) are evidence.
    ``original_space`` is the space the user declared (``space`` itself in the first round): its
    bounds are never crossed, and an edge that equals it is flagged rather than moved. The space
    holds regions when :func:`propose` finds them (its ``regions`` say why).
    """
    proposal = propose(space, trials, surrogate, objective=objective, original_space=original_space,
                       config=config, seed=seed)
    return proposal.space, proposal.decisions


def propose(
    space: SearchSpace,
    trials: Sequence[Trial],
    surrogate: SurrogateLike | None,
    *,
    objective: Objective | str | Mapping[str, str],
    original_space: SearchSpace | None = None,
    config: NarrowingConfig = NarrowingConfig(),
    seed: int | None = 0,
) -> Proposal:
    """:func:`refine`, with the record of the regions (None when the next space is one box)."""
    objective = Objective.coerce(objective)
    original = space if original_space is None else original_space
    encoder, model = Encoder(space), model_of(surrogate)
    # The evidence: completed trials inside the space's (enclosing) box, best first; candidates are
    # drawn from that box too, so the regions of the next round follow the evidence, not this round's.
    ranked = rank_trials(space.without_regions(), trials, objective)
    gate = evidence_gate(len(ranked), surrogate, model, config)  # 1. enough trials and a trusted surrogate?
    predict = predictor(surrogate, encoder) if gate.open else None  # type: ignore[arg-type]
    good = good_set(encoder, ranked, predict, config, seed) if predict else no_good_set(encoder, config)  # 2. good set
    ev = Evidence(space, original, config, objective, ranked, n_top_trials(len(ranked)),
                  encoder.codes(encoder.encode([t.hyperparameters for t in ranked])), good, predict, encoder, model)
    decisions = _decide_each(space, ev, gate)  # 3-5. numeric box and edge pressure, or choice drops
    decisions = follow_best_outside(decisions, trials, space, original, objective)  # 6. the incumbent safeguard
    enclosing = SearchSpace([parameter_from_dict(d.after) for d in decisions])
    followed = any("follows_trial" in d.evidence for d in decisions)  # the incumbent lies outside the good set's space
    if not gate.open:  # nothing may change: the space keeps its regions too
        kept = kept_regions(space)
        return Proposal(enclosing.with_regions(boxes_of(kept)), decisions, kept)
    regions = find_regions(ev, enclosing) if not followed else None  # 7. a union of boxes?
    if regions is not None:
        logger.debug("regions: %s", regions.reason)
    return Proposal(enclosing.with_regions(boxes_of(regions)), decisions, regions)


def _decide_each(space: SearchSpace, ev: Evidence, gate: Gate) -> list[Decision]:
    """One decision per parameter, in order; a choice's dropped values leave its children's conditions."""
    child_params = children(space)
    dropped: dict[str, list[Any]] = {}
    decisions: list[Decision] = []
    for p in space:
        conditions = pruned_conditions(p, dropped)
        current = with_conditions(p, conditions)
        if not gate.open:
            decision = keep(p, current, reasons.gate(gate, ev.config, ev.model), ev.base(p))
        elif isinstance(p, Fixed):
            decision = keep(p, current, reasons.fixed(p), ev.base(p))
        elif isinstance(p, (Float, Int)):
            decision = decide_numeric(p, current, ev)  # type: ignore[arg-type]
        else:
            decision = decide_choice(p, current, ev, child_params.get(p.name, []), dropped)  # type: ignore[arg-type]
        if conditions != p.conditions:
            decision = dataclasses.replace(decision, reason=reasons.conditions_updated(decision.reason, p, dropped))
        decisions.append(decision)
        logger.debug("%s: %s: %s", p.name, decision.action, decision.reason)
    return decisions
