"""Following the best trial outside the space: the incumbent safeguard for the whole run."""

from __future__ import annotations

from typing import Any, Sequence

from refiner.narrowing_method import reasons
from refiner.narrowing_method.bounds import choice_of, merged_values, stretch
from refiner.narrowing_method.decision import Decision
from refiner.space import Boolean, Choice, Fixed, Float, Int, Parameter, SearchSpace, parameter_from_dict
from refiner.trial import Objective, Trial, best_trial

__all__ = ["follow_best_outside", "widen_to"]


def follow_best_outside(decisions: list[Decision], trials: Sequence[Trial], space: SearchSpace,
                        original: SearchSpace, objective: Objective) -> list[Decision]:
    """When the best trial so far lies outside ``space`` (the exploration reserve found a better
    basin than the box held), every range widens just enough to hold it. Widening on one trial
    costs only width; a lucky noisy trial cannot make a cut, and the audit (:mod:`refiner.audit`)
    decides with more evidence whether to re-open more."""
    best = best_trial([t for t in trials if t.ok and original.contains(t.hyperparameters)], objective)
    if best is None or space.contains(best.hyperparameters):
        return decisions
    active = set(original.active_names(best.hyperparameters))
    out = []
    for d in decisions:
        after = parameter_from_dict(d.after)
        value = best.hyperparameters.get(d.name)
        if d.name not in active or value is None or after.contains(value):
            out.append(d)
            continue
        widened = widen_to(after, parameter_from_dict(d.before), original[d.name] if d.name in original else None, value)
        if widened is None:
            out.append(d)
            continue
        out.append(Decision(d.name, "expand", d.before, widened.to_dict(),
                            reasons.follows_best(d.reason, widened, best, d.name, value),
                            {**d.evidence, "follows_trial": best.trial_id}))
    return out


def widen_to(after: Parameter, before: Parameter, declared: Parameter | None, value: Any) -> Parameter | None:
    """``after`` widened to hold ``value`` (a value of the declared space), or None when it cannot be."""
    if isinstance(after, (Float, Int)) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return stretch(after, after, down_to=value, up_to=value)
    if isinstance(after, Fixed) and isinstance(before, (Float, Int)):
        return stretch(after, before, down_to=value, up_to=value)
    if isinstance(declared, (Choice, Boolean)):
        values = merged_values(after, [value], declared.values)
        return choice_of(declared, values, after.conditions) if len(values) >= 2 else None
    return None
