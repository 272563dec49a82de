"""The steps of the narrowing method, each a pure function returning data (no wording: that is
:mod:`refiner.narrowing_method.reasons`). In order: the evidence gate, the good set, and per
parameter the numeric box with its edge pressure, or the choice drops."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from refiner.encoding import Encoder
from refiner.narrowing_method.bounds import clean, snap_outward, value_at
from refiner.narrowing_method.conditions import condition_emptied
from refiner.narrowing_method.constants import (
    BOLD_TRIALS_PER_DIM, BOUND_TOLERANCE, CONFIDENCE_Z, EDGE_PROBE, EDGE_TOLERANCE, EXPAND_BY, LEAN, MIN_GOOD_SHARE, MIN_REGION_POINTS,
    MIN_VALUE_TRIALS, QUANTILES, RARE_SHARE,
)
from refiner.narrowing_method.evidence import Evidence, GoodSet, Model, Predictor, num
from refiner.narrowing_method.settings import NarrowingConfig
from refiner.space import Boolean, Choice, Float, Int, Parameter, SearchSpace, same_scalar
from refiner.trial import Trial

__all__ = [
    "Gate", "evidence_gate", "good_set", "good_set_size", "no_good_set",
    "Box", "quantile_box", "EdgePressure", "edge_pressure", "NewRange", "new_range", "at_least_min_width",
    "ValueStats", "value_stats", "bad_values", "Drops", "choice_drops",
]


# -- 1. the evidence gate -------------------------------------------------------------------------
@dataclass(frozen=True)
class Gate:
    """Whether anything may be narrowed this round (the evidence gate of DESIGN.md section 4)."""

    closed_by: str | None  # None: open; "few_trials", "no_surrogate" or "untrusted"
    n_trials: int

    @property
    def open(self) -> bool:
        return self.closed_by is None


def evidence_gate(n_trials: int, surrogate: Any, model: Model, config: NarrowingConfig) -> Gate:
    if n_trials < config.min_trials:
        return Gate("few_trials", n_trials)
    if surrogate is None or model.cv_score is None or model.name is None:
        return Gate("no_surrogate", n_trials)
    # Imported here: refiner.surrogate loads scikit-learn and SciPy (seconds), which `refiner worker`,
    # `refiner validate` and the other commands that read a config never need.
    from refiner.surrogate import is_trusted

    if not is_trusted(model.cv_score, config.min_cv_score):
        return Gate("untrusted", n_trials)
    return Gate(None, n_trials)


# -- 2. the good set ------------------------------------------------------------------------------
def good_set(encoder: Encoder, ranked: Sequence[Trial], predict: Predictor, config: NarrowingConfig,
             seed: int | None) -> GoodSet:
    """The best-predicted of ``n_candidates`` configurations drawn from the space (ties broken by
    draw order), as many as :func:`good_set_size` says."""
    X, codes = encoder.sample(config.n_candidates, np.random.default_rng(seed))
    mean, std = predict(X)
    trial_mean, trial_std = predict(encoder.encode([t.hyperparameters for t in ranked]))
    enough = len(ranked) >= BOLD_TRIALS_PER_DIM * len(encoder.space.tunable())
    n_good, n_plausible = good_set_size(mean, std, trial_mean, trial_std, config, enough=enough)
    good = np.argsort(-mean, kind="stable")[:n_good]
    return GoodSet(X[good], {name: code[good] for name, code in codes.items()}, config.n_candidates, n_plausible)


def no_good_set(encoder: Encoder, config: NarrowingConfig) -> GoodSet:
    """The empty good set of a round the gate closed."""
    return GoodSet(np.empty((0, encoder.n_columns)), {}, config.n_candidates, None)


def good_set_size(mean: np.ndarray, std: np.ndarray, trial_mean: np.ndarray, trial_std: np.ndarray,
                  config: NarrowingConfig, *, enough: bool = True) -> tuple[int, int | None]:
    """How many of the best-predicted candidates form the good set, and how many are plausible optima.

    A candidate is a plausible optimum when its upper confidence bound reaches the best lower
    confidence bound of any candidate or trial (region elimination, Srinivas et al. 2010 and
    Bogunovic et al. 2016): elsewhere the surrogate is confident that something better exists.
    The good set takes as many candidates as are plausible, clipped to [MIN_GOOD_SHARE,
    top_fraction] of them. Without enough trials for the bounds (``enough`` false) or without any
    uncertainty (all std 0) it is top_fraction, the fixed rule.
    """
    n = len(mean)
    n_max = max(1, math.ceil(config.top_fraction * n))
    spread = np.concatenate([std, trial_std])
    if not enough or not np.all(np.isfinite(spread)) or not np.any(spread > 0):
        return n_max, None
    lower = np.concatenate([mean - CONFIDENCE_Z * std, trial_mean - CONFIDENCE_Z * trial_std])
    n_plausible = int(np.sum(mean + CONFIDENCE_Z * std >= lower.max()))
    n_min = min(n_max, max(1, math.ceil(MIN_GOOD_SHARE * n)))
    return min(n_max, max(n_min, n_plausible)), n_plausible


# -- 3. the numeric box ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Box:
    """The central QUANTILES of the good set and the top trials, in unit coordinates."""

    n_good_active: int  # good candidates with the parameter active
    n_points: int  # ... plus top trials with it active
    q_low: float = math.nan
    q_high: float = math.nan

    @property
    def located(self) -> bool:
        return self.n_good_active >= MIN_REGION_POINTS


def quantile_box(ev: Evidence, p: Float | Int) -> Box:
    """Perrone et al. 2019, section 3, in search coordinates (log space for log parameters)."""
    good_u = ev.good.codes[p.name]
    good_u = good_u[~np.isnan(good_u)]
    top_u = ev.trial_codes[p.name][: ev.n_top]
    top_u = top_u[~np.isnan(top_u)]
    points = np.concatenate([good_u, top_u])
    if len(good_u) < MIN_REGION_POINTS:
        return Box(len(good_u), len(points))
    q_lo, q_hi = (float(q) for q in np.quantile(points, QUANTILES))
    return Box(len(good_u), len(points), q_lo, q_hi)


# -- 4. edge pressure -----------------------------------------------------------------------------
@dataclass(frozen=True)
class EdgePressure:
    """Predicted gain of moving the good candidates onto each edge; None where the box does not lean there."""

    gain_low: float | None
    gain_high: float | None

    @property
    def low(self) -> bool:
        return self.gain_low is not None and self.gain_low > 0

    @property
    def high(self) -> bool:
        return self.gain_high is not None and self.gain_high > 0


def edge_pressure(ev: Evidence, p: Float | Int, box: Box) -> EdgePressure:
    """An edge is pressed on only when the box leans towards it (reaches it and leaves a good part
    of the range free at the other end) and the surrogate still predicts better results at the
    edge than a little inside it, i.e. the optimum is not simply near the edge."""
    leans_low = box.q_low <= EDGE_TOLERANCE and box.q_high <= 1.0 - LEAN
    leans_high = box.q_high >= 1.0 - EDGE_TOLERANCE and box.q_low >= LEAN
    return EdgePressure(_edge_gain(ev, p, 0.0, EDGE_PROBE) if leans_low else None,
                        _edge_gain(ev, p, 1.0, 1.0 - EDGE_PROBE) if leans_high else None)


def _edge_gain(ev: Evidence, p: Float | Int, edge: float, inner: float) -> float:
    """Mean predicted gain (higher is better) of moving the good candidates from ``inner`` to ``edge``.

    A one-parameter partial dependence restricted to the good region (Friedman 2001): positive
    when the surrogate expects still better results towards, and so perhaps beyond, the edge.
    """
    col = ev.encoder.column_slice(p.name).start
    rows = ev.good.X[~np.isnan(ev.good.codes[p.name])]
    at_edge, inside = rows.copy(), rows.copy()
    at_edge[:, col], inside[:, col] = edge, inner
    mean = ev.predict(np.concatenate([at_edge, inside]))[0]  # type: ignore[misc]
    return clean(float(mean[: len(rows)].mean() - mean[len(rows):].mean()))


# -- the new range (box + margin + safeguards + re-opened edges) ----------------------------------
@dataclass(frozen=True)
class NewRange:
    low: Any
    high: Any
    reopened: tuple[str, ...]  # "lower"/"upper": edges narrowed earlier and moved back out
    flagged: tuple[str, ...]  # "low"/"high": the user's own bounds the good region presses on
    original: Float | Int  # the declared parameter (``p`` itself if the declared one differs in kind)


def new_range(p: Float | Int, box: Box, pressure: EdgePressure, incumbent: Any, original: SearchSpace,
              config: NarrowingConfig) -> NewRange:
    """The box widened by the margin, holding the incumbent, at least ``min_width`` of the declared
    width, with pressed edges re-opened towards the declared space, snapped outward onto the grid."""
    lo, hi = max(0.0, box.q_low - config.margin), min(1.0, box.q_high + config.margin)
    if incumbent is not None:
        u_inc = p.to_unit(float(incumbent))
        lo, hi = min(lo, u_inc), max(hi, u_inc)
    orig = original[p.name] if p.name in original else None
    if not (isinstance(orig, type(p)) and orig.log == p.log):
        orig = p
    lo, hi = at_least_min_width(lo, hi, min(1.0, config.min_width * orig.width / p.width))

    # Edges the good region presses on: re-open one narrowed earlier, flag the user's own.
    tol_value = BOUND_TOLERANCE * max(1.0, abs(p.low), abs(p.high))
    floor_value, ceil_value = p.low, p.high
    reopened, flagged = [], []
    if pressure.low:
        if p.low > orig.low + tol_value:
            lo, floor_value = max(p.to_unit(orig.low), -EXPAND_BY), orig.low
            reopened.append("lower")
        else:
            flagged.append("low")
    if pressure.high:
        if p.high < orig.high - tol_value:
            hi, ceil_value = min(p.to_unit(orig.high), 1.0 + EXPAND_BY), orig.high
            reopened.append("upper")
        else:
            flagged.append("high")
    low, high = snap_outward(p, value_at(p, lo), value_at(p, hi), floor_value, ceil_value)
    if incumbent is not None:  # exact, after any rounding (safeguard: the incumbent stays inside)
        low, high = min(low, incumbent), max(high, incumbent)
    return NewRange(low, high, tuple(reopened), tuple(flagged), orig)


def at_least_min_width(lo: float, hi: float, min_u: float) -> tuple[float, float]:
    """[lo, hi] widened about its centre (kept inside [0, 1]) to at least ``min_u``."""
    if hi - lo >= min_u:
        return lo, hi
    centre = min(max((lo + hi) / 2, min_u / 2), 1.0 - min_u / 2)
    return min(lo, centre - min_u / 2), max(hi, centre + min_u / 2)


# -- 5. choice drops ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ValueStats:
    """How one value of a choice fared."""

    value: Any
    n_trials: int
    n_top: int  # among the top trials
    good_share: float | None  # share of the good set
    mean_score: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "n_trials": self.n_trials, "n_top": self.n_top,
                "good_share": self.good_share, "mean_score": self.mean_score}


def value_stats(ev: Evidence, p: Choice | Boolean) -> list[ValueStats]:
    trial_idx = ev.trial_codes[p.name]
    scores = np.array([float(t.score) for t in ev.ranked])  # type: ignore[arg-type]
    good = _good_indices(ev, p)
    top = trial_idx[: ev.n_top]
    out = []
    for i, v in enumerate(p.values):
        used = trial_idx == i
        out.append(ValueStats(v, int(used.sum()), int(np.sum(top == i)),
                              num(np.mean(good == i)) if len(good) else None,
                              num(scores[used].mean()) if used.any() else None))
    return out


def _good_indices(ev: Evidence, p: Parameter) -> np.ndarray:
    good = ev.good.codes[p.name]
    return good[~np.isnan(good)]


def bad_values(ev: Evidence, p: Choice | Boolean, stats: Sequence[ValueStats], incumbent: Any) -> list[int]:
    """Indices of the values the evidence speaks against, worst first; an ordered choice loses only
    values at its ends, so that it stays a contiguous run."""
    trial_idx = ev.trial_codes[p.name]
    active = ~np.isnan(trial_idx)
    oriented = ev.oriented(np.array([float(t.score) for t in ev.ranked]))  # type: ignore[arg-type]
    n_good = len(_good_indices(ev, p))
    k = len(p.values)
    inc_index = next((i for i, v in enumerate(p.values) if incumbent is not None and same_scalar(v, incumbent)), None)

    def is_bad(i: int) -> bool:
        # Enough trials used it, none of the best trials did, the good region (nearly) avoids it,
        # and its trials did worse than the others' on average.
        s = stats[i]
        used, others = (trial_idx == i), active & (trial_idx != i)
        return (
            i != inc_index
            and s.n_trials >= MIN_VALUE_TRIALS
            and s.n_top == 0
            and n_good >= MIN_REGION_POINTS
            and s.good_share is not None and s.good_share < RARE_SHARE * (1.0 / k)
            and others.any() and oriented[used].mean() < oriented[others].mean()
        )

    bad = [i for i in range(k) if is_bad(i)]
    if isinstance(p, Choice) and p.ordered:
        bad = _ends(bad, k)
    return sorted(bad, key=lambda i: float(oriented[trial_idx == i].mean()))


def _ends(bad: list[int], k: int) -> list[int]:
    """The bad indices reachable from either end of 0..k-1 without crossing a good one."""
    ends: list[int] = []
    for run in (range(k), range(k - 1, -1, -1)):
        for i in run:
            if i not in bad or i in ends:
                break
            ends.append(i)
    return ends


@dataclass(frozen=True)
class Drops:
    """The values to drop, and the bad ones kept because a conditional child needs them."""

    dropped: tuple[int, ...]
    protected: tuple[tuple[int, str], ...]  # (value index, the child it alone activates)


def choice_drops(p: Choice | Boolean, bad: Sequence[int], children: Sequence[Parameter]) -> Drops:
    """Drop the bad values, worst first, keeping at least one value and every value that alone
    activates a conditional child."""
    values = list(p.values)
    drop: list[int] = []
    protected: list[tuple[int, str]] = []
    for i in bad:
        if len(drop) + 1 >= len(values):
            break  # at least one value stays
        trial_drop = [values[j] for j in drop + [i]]
        orphan = next((c for c in children if condition_emptied(c, p.name, trial_drop)), None)
        if orphan is not None:
            protected.append((i, orphan.name))
            continue
        drop.append(i)
    return Drops(tuple(drop), tuple(protected))
