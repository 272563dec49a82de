"""The wording of every narrowing decision: step results in, human-readable reasons out."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from refiner.narrowing_method.constants import CONFIDENCE_Z, MIN_GOOD_SHARE, MIN_IMPORTANCE, MIN_VALUE_TRIALS, QUANTILES, RARE_SHARE
from refiner.narrowing_method.evidence import Evidence, Model
from refiner.narrowing_method.settings import NarrowingConfig
from refiner.narrowing_method.steps import Box, Drops, Gate, NewRange, ValueStats
from refiner.space import Parameter
from refiner.trial import Trial

__all__ = [
    "fmt", "gate", "fixed", "single_value", "single_choice", "few_active", "negligible", "no_region", "region",
    "expanded", "small_shrink", "narrowed", "kept_all_values", "fixed_after_drops", "dropped_values",
    "conditions_updated", "follows_best", "regions", "regions_kept", "regions_dropped",
]


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, str):
        return repr(v)
    return str(v)


# -- the gate and the "nothing to do" cases ----------------------------------------------------------
def gate(g: Gate, config: NarrowingConfig, model: Model) -> str:
    if g.closed_by == "few_trials":
        return (
            f"Kept: only {g.n_trials} completed trials lie in this space, fewer than the "
            f"min_trials={config.min_trials} needed before narrowing."
        )
    if g.closed_by == "no_surrogate":
        return "Kept: no surrogate model was fitted" + (f" ({model.note})." if model.note else ".")
    return (
        f"Kept: the surrogate ({model.name}) ranks held-out trials with a cross-validated Spearman "
        f"correlation of {model.cv_score:.3f}, below min_cv_score={config.min_cv_score}, so its predictions are not trusted."
    )


def fixed(p: Parameter) -> str:
    return f"Kept: `{p.name}` is fixed at {fmt(p.value)}; there is nothing to narrow."  # type: ignore[attr-defined]


def single_value(p: Parameter) -> str:
    return f"Kept: the range of `{p.name}` is the single value {fmt(p.low)}."  # type: ignore[attr-defined]


def single_choice(p: Parameter) -> str:
    return f"Kept: `{p.name}` has a single value."


def few_active(p: Parameter, n_active: int, config: NarrowingConfig) -> str:
    return f"Kept: only {n_active} completed trials have `{p.name}` active, fewer than min_trials={config.min_trials}."


def negligible(importance: float) -> str:
    return f"Kept: its importance is {importance:.3f}, below {MIN_IMPORTANCE}; the surrogate sees no effect worth narrowing on."


# -- numeric parameters -----------------------------------------------------------------------------
def no_region(p: Parameter, box: Box, ev: Evidence) -> str:
    return (
        f"Kept: only {box.n_good_active} of the {ev.good.size} best predicted candidates have `{p.name}` active; "
        "too few to locate a region."
    )


def region(low: Any, high: Any) -> str:
    return f"[{fmt(low)}, {fmt(high)}]"


def _flag_note(p: Parameter, flagged: Sequence[str]) -> str:
    if not flagged:
        return ""
    bounds = " and ".join(
        f"lower bound {fmt(p.low)}" if f == "low" else f"upper bound {fmt(p.high)}" for f in flagged  # type: ignore[attr-defined]
    )
    return f" The good region reaches the user's {bounds}: the optimum may lie beyond this bound."


def expanded(p: Parameter, current: Parameter, new: Parameter, rng: NewRange, where: str) -> str:
    edges = f"{' and '.join(rng.reopened)} edge{'s' if len(rng.reopened) > 1 else ''}"
    return (
        f"Re-opened the {edges} from {current.describe()} to "
        f"{new.describe()}: the good region {where} presses on an edge narrowed in an earlier round "
        f"(original {rng.original.describe()})." + _flag_note(p, rng.flagged)
    )


def small_shrink(p: Parameter, current: Parameter, rng: NewRange, where: str, shrink: float) -> str:
    return (
        f"Kept {current.describe()}: the good region {where} plus margin would shrink it only to "
        f"{shrink:.0%} of its width, not worth a change." + _flag_note(p, rng.flagged)
    )


def narrowed(p: Parameter, current: Parameter, new: Parameter, rng: NewRange, where: str, shrink: float,
             incumbent: Any, ev: Evidence) -> str:
    best = f"; the best trial's {fmt(incumbent)} stays inside" if incumbent is not None else ""
    return (
        f"Narrowed {current.describe()} to {new.describe()} ({shrink:.0%} of the width): "
        f"{QUANTILES[1] - QUANTILES[0]:.0%} of the "
        f"{ev.good.size} best of {ev.good.n_candidates} candidates predicted by {ev.model.name} "
        f"(CV Spearman {ev.model.cv_score:.2f}{_plausible_note(ev)}) and of the {ev.n_top} best trials lie in "
        f"{where}{best}." + _flag_note(p, rng.flagged)
    )


def _plausible_note(ev: Evidence) -> str:
    """Why the good set has the size it has (see :func:`refiner.narrowing_method.steps.good_set_size`)."""
    if ev.good.n_plausible is None:
        return ""
    return (f"; {ev.good.n_plausible} candidates could still hold the optimum within {CONFIDENCE_Z:g} std, "
            f"so the good set is {ev.good.size}, between {MIN_GOOD_SHARE:.0%} and top_fraction={ev.config.top_fraction:g}")


# -- choices ----------------------------------------------------------------------------------------
def _protected_note(p: Parameter, drops: Drops) -> str:
    if not drops.protected:
        return ""
    items = ", ".join(f"{fmt(p.values[i])} (the only value that activates `{child}`)"  # type: ignore[attr-defined]
                      for i, child in drops.protected)
    return f" Kept despite the evidence: {items}."


def kept_all_values(p: Parameter, stats: Sequence[ValueStats], drops: Drops, n_top: int) -> str:
    k = len(stats)
    shares = ", ".join(f"{fmt(s.value)} {s.good_share:.0%}" for s in stats if s.good_share is not None)
    return (
        f"Kept all {k} values: none was both tried enough (at least {MIN_VALUE_TRIALS} trials) and clearly worse "
        f"(absent from the {n_top} best trials, under {RARE_SHARE * (1.0 / k):.0%} of the good region, worse mean score). "
        f"Shares of the good region: {shares}." + _protected_note(p, drops)
    )


def _drop_details(stats: Sequence[ValueStats], drops: Drops, n_top: int) -> str:
    fair = 1.0 / len(stats)
    return "; ".join(
        f"{fmt(stats[i].value)}: {stats[i].n_trials} trials, mean score {fmt(stats[i].mean_score)}, "
        f"none among the {n_top} best, {stats[i].good_share:.0%} of the good region (fair share {fair:.0%})"
        for i in drops.dropped
    )


def fixed_after_drops(p: Parameter, stats: Sequence[ValueStats], drops: Drops, n_top: int, value: Any) -> str:
    return (f"Fixed at {fmt(value)}, the only value left after dropping {_drop_details(stats, drops, n_top)}."
            + _protected_note(p, drops))


def dropped_values(p: Parameter, stats: Sequence[ValueStats], drops: Drops, n_top: int, n_remaining: int) -> str:
    gone = ", ".join(fmt(stats[i].value) for i in drops.dropped)
    return (f"Dropped {gone} ({_drop_details(stats, drops, n_top)}); {n_remaining} values remain."
            + _protected_note(p, drops))


# -- whole-space passes -----------------------------------------------------------------------------
def conditions_updated(reason: str, p: Parameter, dropped: Mapping[str, list[Any]]) -> str:
    lost = "; ".join(
        f"{c.parent} no longer offers {', '.join(fmt(v) for v in dropped[c.parent])}"
        for c in p.conditions if dropped.get(c.parent)
    )
    return f"{reason} Its condition was updated: {lost}."


def follows_best(reason: str, widened: Parameter, best: Trial, name: str, value: Any) -> str:
    return (f"{reason} Widened to {widened.describe()} to hold the best trial so far "
            f"({best.trial_id}, {name}={fmt(value)}, found outside this round's space).")


# -- regions (a union of boxes) ---------------------------------------------------------------------
def regions(boxes: Sequence[str], names: Sequence[str], sizes: Sequence[int], silhouette: float, share: float,
            incumbent_region: int, incumbent_id: str) -> str:
    k = len(boxes)
    listed = "; ".join(
        f"region {i + 1}: {box} ({n} good configurations{', holds the best trial ' + incumbent_id if i == incumbent_region else ''})"
        for i, (box, n) in enumerate(zip(boxes, sizes)))
    return (f"{k} regions: the good configurations form {k} separate groups in {', '.join(names)} "
            f"(mean silhouette {silhouette:.2f}), so the next round searches their union, "
            f"{share:.0%} of the enclosing box the decisions give. {listed}.")


def regions_dropped(names: Sequence[str], why: str) -> str:
    return f"Regions given up: {why} changed the range of {', '.join(names)}; the next round searches the enclosing box."


def regions_kept(k: int) -> str:
    return f"Kept the {k} regions of this round's space: the evidence gate is closed, so nothing changes."
