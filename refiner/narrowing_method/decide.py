"""One decision per parameter: the steps' results turned into a :class:`Decision` with its reason."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from refiner.narrowing_method import reasons
from refiner.narrowing_method.bounds import clean, value_at
from refiner.narrowing_method.constants import MIN_IMPORTANCE, MIN_SHRINK
from refiner.narrowing_method.decision import Decision
from refiner.narrowing_method.evidence import Evidence
from refiner.narrowing_method.steps import (
    bad_values, choice_drops, edge_pressure, new_range, quantile_box, value_stats,
)
from refiner.space import Boolean, Choice, Fixed, Float, Int, Parameter, same_scalar

__all__ = ["decide_numeric", "decide_choice", "keep"]


def keep(p: Parameter, current: Parameter, reason: str, evidence: dict) -> Decision:
    return Decision(p.name, "keep", p.to_dict(), current.to_dict(), reason, evidence)


def _weak_evidence(p: Parameter, ev: Evidence) -> str | None:
    """Why this parameter has too few trials or no effect worth acting on, or None."""
    n_active = int(np.sum(~np.isnan(ev.trial_codes[p.name])))
    if n_active < ev.config.min_trials:
        return reasons.few_active(p, n_active, ev.config)
    importance = ev.model.importances.get(p.name)
    if importance is not None and importance < MIN_IMPORTANCE:
        return reasons.negligible(importance)
    return None


# -- numeric parameters: box, edge pressure, new range ----------------------------------------------
def decide_numeric(p: Float | Int, current: Float | Int, ev: Evidence) -> Decision:
    evidence = ev.base(p)
    evidence.update(region_low=None, region_high=None, n_good=0, shrink=None, n_plausible=ev.good.n_plausible)
    if p.high == p.low:
        return keep(p, current, reasons.single_value(p), evidence)
    weak = _weak_evidence(p, ev)
    if weak is not None:
        return keep(p, current, weak, evidence)

    box = quantile_box(ev, p)
    evidence["n_good"] = box.n_points
    if not box.located:
        return keep(p, current, reasons.no_region(p, box, ev), evidence)
    evidence["region_low"], evidence["region_high"] = clean(value_at(p, box.q_low)), clean(value_at(p, box.q_high))
    where = reasons.region(evidence["region_low"], evidence["region_high"])

    pressure = edge_pressure(ev, p, box)
    evidence["edge_gain_low"], evidence["edge_gain_high"] = pressure.gain_low, pressure.gain_high
    incumbent = evidence["incumbent"]
    rng = new_range(p, box, pressure, incumbent, ev.original, ev.config)
    evidence["beyond_user_bound"] = None if not rng.flagged else (rng.flagged[0] if len(rng.flagged) == 1 else "both")
    new = dataclasses.replace(current, low=rng.low, high=rng.high)
    shrink = new.width / p.width
    evidence["shrink"] = clean(shrink)

    if new.low < p.low or new.high > p.high:
        return Decision(p.name, "expand", p.to_dict(), new.to_dict(), reasons.expanded(p, current, new, rng, where), evidence)
    if shrink > 1.0 - MIN_SHRINK:
        return keep(p, current, reasons.small_shrink(p, current, rng, where, shrink), evidence)
    return Decision(p.name, "narrow", p.to_dict(), new.to_dict(),
                    reasons.narrowed(p, current, new, rng, where, shrink, incumbent, ev), evidence)


# -- choices and booleans: value statistics, bad values, drops --------------------------------------
def decide_choice(p: Choice | Boolean, current: Choice | Boolean, ev: Evidence, children: Sequence[Parameter],
                  dropped: dict[str, list[Any]]) -> Decision:
    """The decision for a choice; records the values it drops in ``dropped`` (for the children's conditions)."""
    stats = value_stats(ev, p)
    evidence = ev.base(p)
    n_good = int(np.sum(~np.isnan(ev.good.codes[p.name])))
    evidence.update(values=[s.to_dict() for s in stats], n_good=n_good, dropped=[])
    if len(p.values) == 1:
        return keep(p, current, reasons.single_choice(p), evidence)
    weak = _weak_evidence(p, ev)
    if weak is not None:
        return keep(p, current, weak, evidence)

    drops = choice_drops(p, bad_values(ev, p, stats, evidence["incumbent"]), children)
    if not drops.dropped:
        return keep(p, current, reasons.kept_all_values(p, stats, drops, ev.n_top), evidence)
    gone = [p.values[i] for i in drops.dropped]
    dropped[p.name] = gone
    evidence["dropped"] = gone
    remaining = tuple(v for v in p.values if not any(same_scalar(v, g) for g in gone))
    if len(remaining) == 1:
        new: Parameter = Fixed(p.name, remaining[0], conditions=current.conditions)
        return Decision(p.name, "fix", p.to_dict(), new.to_dict(),
                        reasons.fixed_after_drops(p, stats, drops, ev.n_top, remaining[0]), evidence)
    new = dataclasses.replace(current, values=remaining)  # type: ignore[arg-type]
    return Decision(p.name, "drop_values", p.to_dict(), new.to_dict(),
                    reasons.dropped_values(p, stats, drops, ev.n_top, len(remaining)), evidence)
