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
   int/step grids; per choice, values are dropped only on evidence.

Safeguards (DESIGN.md section 4): an evidence gate (enough trials, a surrogate whose
cross-validated rank correlation can be trusted), the incumbent always stays inside, a minimum
width relative to the original space, negligible parameters and small shrinks are left alone,
edges narrowed earlier re-open when the good region presses against them, and the user's own
bounds are flagged when the optimum may lie beyond them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from refiner.encoding import Encoder
from refiner.errors import ValidationError
from refiner.space import (
    Boolean, Choice, Condition, Fixed, Float, Int, Parameter, SearchSpace, _same_scalar, parameter_from_dict,
)
from refiner.trial import Objective, Trial, best_trial

__all__ = [
    "NarrowingConfig",
    "Decision",
    "ACTIONS",
    "refine",
    "decisions_document",
    "SurrogateLike",
]

logger = logging.getLogger(__name__)

ACTIONS = ("narrow", "keep", "expand", "drop_values", "fix")
FORMAT_VERSION = 1

# Fixed parts of the method; the tunable ones live in NarrowingConfig.
QUANTILES = (0.05, 0.95)  # the box holds the central 90% of the good set (Perrone et al. use the full box)
TOP_TRIAL_SHARE = 0.2  # the best ~20% of completed trials join the good set ...
MIN_TOP_TRIALS = 3  # ... at least 3 of them
MIN_IMPORTANCE = 0.03  # below this share of the explained variance a parameter is left alone
MIN_SHRINK = 0.1  # a new range must be at least 10% narrower to be worth a change
EDGE_TOLERANCE = 0.05  # the good region "touches" an edge within 5% of the current width
LEAN = 0.2  # ... and leaves at least 20% of the width free at the other end ...
EDGE_PROBE = 0.1  # ... and predictions at the edge beat those 10% of the width inside it
EXPAND_BY = 0.5  # a re-opened edge moves out by half the current width (towards the original)
MIN_VALUE_TRIALS = 3  # a choice value is judged only after this many trials used it
RARE_SHARE = 0.25  # "absent from the good region": under a quarter of its fair share 1/k
MIN_REGION_POINTS = 5  # fewer active points in the good set than this is no region at all
CONFIDENCE_Z = 2.0  # confidence bounds are mean +/- 2 calibrated std (about 97.7% one-sided each)
MIN_GOOD_SHARE = 0.02  # the good set keeps at least 2% of the candidates, however sure the surrogate
BOLD_TRIALS_PER_DIM = 10  # ... and goes below top_fraction only from 10 trials per tunable parameter on


# -- configuration ------------------------------------------------------------------------------
_CONFIG_RULES: dict[str, tuple[type, Any, str]] = {
    "min_trials": (int, lambda v: v >= 1, "an integer of at least 1"),
    "min_cv_score": (float, lambda v: -1.0 <= v <= 1.0, "a number in [-1, 1]"),
    "top_fraction": (float, lambda v: 0.0 < v <= 1.0, "a number in (0, 1]"),
    "margin": (float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]"),
    "min_width": (float, lambda v: 0.0 < v <= 1.0, "a number in (0, 1]"),
    "n_candidates": (int, lambda v: 10 <= v <= 10**6, "an integer from 10 to 10**6"),
    "reserve": (float, lambda v: 0.0 <= v <= 0.5, "a number in [0, 0.5]"),
}


@dataclass(frozen=True)
class NarrowingConfig:
    """How boldly to narrow. Widths are shares of a parameter's width in its search units."""

    min_trials: int = 8
    min_cv_score: float = 0.2
    top_fraction: float = 0.2
    margin: float = 0.1
    min_width: float = 0.1
    n_candidates: int = 2000
    # The share of each later round proposed over the declared space outside the narrowed box (the
    # exploration reserve of DESIGN.md section 4; SMAC draws 20 % at random, BOHB a third), so that
    # a basin the box left out can be found and the box follow it. Off by default: at 0.25, on the
    # quick suite's 10 seeds, median regret rose on 10 of 14 problem-budgets (the box's rounds lost a
    # quarter of their trials) and the multimodal wells4 and styblinski5 were not helped (README).
    reserve: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        for name, (kind, ok, rule) in _CONFIG_RULES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append(f"{name}: must be {rule}, got {value!r}")
                continue
            if isinstance(value, int) and abs(value) > 10**9:  # also keeps float() below from overflowing
                problems.append(f"{name}: must be {rule} and at most 10**9, got a {len(str(abs(value)))}-digit number")
                continue
            if kind is int and not float(value).is_integer():
                problems.append(f"{name}: must be {rule}, got {value!r}")
                continue
            if not math.isfinite(value) or not ok(value):
                problems.append(f"{name}: must be {rule}, got {value!r}")
                continue
            object.__setattr__(self, name, kind(value))
        if problems:
            raise ValidationError(problems)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "NarrowingConfig":
        """Build from a (partial) dict; missing fields take their defaults, unknown ones are errors."""
        if d is None:
            return cls()
        if not isinstance(d, Mapping):
            raise ValidationError(f"narrowing settings must be an object, got {d!r}")
        unknown = sorted(set(d) - set(_CONFIG_RULES))
        if unknown:
            raise ValidationError(
                [f"{k}: not a narrowing setting; the settings are {', '.join(_CONFIG_RULES)}" for k in unknown]
            )
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- decisions ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    """What narrowing did to one parameter, and why."""

    name: str
    action: str
    before: dict
    after: dict
    reason: str
    evidence: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"`action` must be one of {list(ACTIONS)}, got {self.action!r}")

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "action": self.action,
            "before": dict(self.before),
            "after": dict(self.after),
            "reason": self.reason,
            "evidence": dict(self.evidence),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Decision":
        return cls(d["name"], d["action"], dict(d["before"]), dict(d["after"]), d["reason"], dict(d.get("evidence", {})))


def decisions_document(
    decisions: Sequence[Decision],
    *,
    round_index: int,
    n_trials: int,
    surrogate_trusted: bool,
    config: NarrowingConfig | None = None,
) -> dict[str, Any]:
    """The content of ``rounds/<k>/decisions.json`` (``schemas/decisions.schema.json``)."""
    out: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "round": int(round_index),
        "n_trials": int(n_trials),
        "surrogate_trusted": bool(surrogate_trusted),
        "decisions": [d.to_dict() for d in decisions],
        # The space the decisions produce: each decision's `after`, in order.
        "next_space": SearchSpace([parameter_from_dict(d.after) for d in decisions]).to_dict(),
    }
    if config is not None:
        out["config"] = config.to_dict()
    return out


class SurrogateLike(Protocol):
    """What narrowing needs from a surrogate (``refiner.surrogate.Surrogate`` provides it)."""

    @property
    def encoder(self) -> Encoder: ...  # the encoding the model was fitted on

    @property
    def cv_score(self) -> float | None: ...

    @property
    def model_name(self) -> str | None: ...

    @property
    def importances(self) -> Mapping[str, float]: ...

    def predict(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...  # higher is better


# -- shared evidence ----------------------------------------------------------------------------
@dataclass
class _Evidence:
    """Everything the per-parameter rules look at, computed once."""

    space: SearchSpace
    original: SearchSpace
    config: NarrowingConfig
    objective: Objective
    ranked: list[Trial]  # ok trials inside the space, best first
    n_top: int  # the first n_top of ranked are the "top trials"
    trial_codes: dict[str, np.ndarray]  # per parameter, aligned with ranked (NaN: inactive)
    good_codes: dict[str, np.ndarray]  # per parameter, the good candidates (NaN: inactive)
    good_X: np.ndarray  # the good candidates' rows
    predict: Any  # rows of `encoder` -> predicted (higher-is-better) means
    encoder: Encoder
    n_candidates: int
    n_good: int
    n_plausible: int | None  # candidates that could still hold the optimum; None: no uncertainty given
    cv_score: float | None
    model_name: str | None
    importances: Mapping[str, float]

    @property
    def incumbent(self) -> Trial | None:
        return self.ranked[0] if self.ranked else None

    def oriented(self, scores: np.ndarray) -> np.ndarray:
        return scores if self.objective.direction == "max" else -scores

    def base(self, p: Parameter) -> dict[str, Any]:
        """Evidence every decision carries."""
        codes = self.trial_codes.get(p.name)
        inc = self.incumbent
        inc_active = inc is not None and codes is not None and len(codes) > 0 and not np.isnan(codes[0])
        importance = self.importances.get(p.name)
        return {
            "incumbent": inc.hyperparameters.get(p.name) if inc_active else None,  # type: ignore[union-attr]
            "incumbent_trial": inc.trial_id if inc is not None else None,
            "cv_score": _num(self.cv_score),
            "model": self.model_name,
            "importance": _num(importance),
            "n_trials": int(np.sum(~np.isnan(codes))) if codes is not None else len(self.ranked),
            "beyond_user_bound": None,
        }


def _num(x: Any) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, str):
        return repr(v)
    return str(v)


# -- the entry point ----------------------------------------------------------------------------
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

    ``trials`` may hold every trial so far; only completed ones inside ``space`` are evidence.
    ``original_space`` is the space the user declared (``space`` itself in the first round): its
    bounds are never crossed, and an edge that equals it is flagged rather than moved.
    """
    objective = Objective.coerce(objective)
    original = space if original_space is None else original_space
    ok = [t for t in trials if t.ok and space.contains(t.hyperparameters)]
    sign = 1.0 if objective.direction == "max" else -1.0
    # Best first; sorted() is stable, so the first of equal trials wins, as in best_trial().
    ranked = sorted(ok, key=lambda t: -sign * float(t.score))  # type: ignore[arg-type]
    n_top = min(len(ranked), max(MIN_TOP_TRIALS, math.ceil(TOP_TRIAL_SHARE * len(ranked))))
    encoder = Encoder(space)
    trial_codes = encoder.codes(encoder.encode([t.hyperparameters for t in ranked]))

    cv_score = getattr(surrogate, "cv_score", None) if surrogate is not None else None
    model_name = getattr(surrogate, "model_name", None) if surrogate is not None else None
    importances = dict(getattr(surrogate, "importances", {}) or {}) if surrogate is not None else {}

    gate = _gate(len(ranked), surrogate, cv_score, model_name, config)
    good_codes: dict[str, np.ndarray] = {}
    good_X = np.empty((0, encoder.n_columns))
    n_good = 0

    def predict_with_std(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert surrogate is not None
        same = surrogate.encoder.space == space
        mean, std = surrogate.predict(X if same else surrogate.encoder.encode(encoder.decode(X)))
        return np.asarray(mean, dtype=float), np.asarray(std, dtype=float)

    def predict(X: np.ndarray) -> np.ndarray:
        return predict_with_std(X)[0]

    n_plausible: int | None = None
    if gate is None:
        X, codes = encoder.sample(config.n_candidates, np.random.default_rng(seed))
        mean, std = predict_with_std(X)
        trial_mean, trial_std = predict_with_std(encoder.encode([t.hyperparameters for t in ranked]))
        n_good, n_plausible = _good_set_size(mean, std, trial_mean, trial_std, config,
                                             enough=len(ranked) >= BOLD_TRIALS_PER_DIM * len(space.tunable()))
        # Perrone et al. 2019: the region is where the good configurations are; here the good
        # configurations are the surrogate's best-predicted candidates (ties broken by draw order).
        good = np.argsort(-mean, kind="stable")[:n_good]
        good_codes = {name: code[good] for name, code in codes.items()}
        good_X = X[good]

    ev = _Evidence(
        space, original, config, objective, ranked, n_top, trial_codes, good_codes, good_X, predict,
        encoder, config.n_candidates, n_good, n_plausible, cv_score, model_name, importances,
    )
    children = _children(space)
    dropped: dict[str, list[Any]] = {}
    decisions: list[Decision] = []
    for p in space:
        conditions = _pruned_conditions(p, dropped)
        current = _with_conditions(p, conditions)
        if gate is not None:
            decision = _keep(p, current, gate, ev.base(p))
        elif isinstance(p, Fixed):
            decision = _keep(p, current, f"Kept: `{p.name}` is fixed at {_fmt(p.value)}; there is nothing to narrow.", ev.base(p))
        elif isinstance(p, (Float, Int)):
            decision = _decide_numeric(p, current, ev)
        else:
            decision = _decide_choice(p, current, ev, children.get(p.name, []), dropped)  # type: ignore[arg-type]
        if conditions != p.conditions:
            lost = "; ".join(
                f"{c.parent} no longer offers {', '.join(_fmt(v) for v in dropped[c.parent])}"
                for c in p.conditions if dropped.get(c.parent)
            )
            decision = dataclasses.replace(decision, reason=f"{decision.reason} Its condition was updated: {lost}.")
        decisions.append(decision)
        logger.debug("%s: %s: %s", p.name, decision.action, decision.reason)
    decisions = _follow_best_outside(decisions, trials, space, original, objective)
    return SearchSpace([parameter_from_dict(d.after) for d in decisions]), decisions


def _follow_best_outside(decisions: list[Decision], trials: Sequence[Trial], space: SearchSpace,
                         original: SearchSpace, objective: Objective) -> list[Decision]:
    """The incumbent safeguard for the whole run: when the best trial so far lies outside ``space``
    (the exploration reserve found a better basin than the box held), every range widens just
    enough to hold it. Widening on one trial costs only width; a lucky noisy trial cannot make a
    cut, and the audit (:mod:`refiner.audit`) decides with more evidence whether to re-open more."""
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
        widened = _widen_to(after, parameter_from_dict(d.before), original[d.name] if d.name in original else None, value)
        if widened is None:
            out.append(d)
            continue
        reason = (f"{d.reason} Widened to {widened.describe()} to hold the best trial so far "
                  f"({best.trial_id}, {d.name}={_fmt(value)}, found outside this round's space).")
        out.append(Decision(d.name, "expand", d.before, widened.to_dict(), reason,
                            {**d.evidence, "follows_trial": best.trial_id}))
    return out


def _widen_to(after: Parameter, before: Parameter, declared: Parameter | None, value: Any) -> Parameter | None:
    """``after`` widened to hold ``value`` (a value of the declared space), or None when it cannot be."""
    if isinstance(after, (Float, Int)) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return dataclasses.replace(after, low=min(after.low, value), high=max(after.high, value))
    if isinstance(after, Fixed) and isinstance(before, (Float, Int)):
        return dataclasses.replace(before, low=min(after.value, value), high=max(after.value, value),
                                   conditions=after.conditions)
    if isinstance(declared, (Choice, Boolean)):
        kept = list(after.values) if isinstance(after, (Choice, Boolean)) else [getattr(after, "value", None)]
        values = tuple(v for v in declared.values if any(_same_scalar(v, x) for x in kept + [value]))
        if isinstance(declared, Boolean) and len(values) == 2:
            return Boolean(declared.name, conditions=after.conditions)
        if len(values) >= 2:
            return Choice(declared.name, values, ordered=getattr(declared, "ordered", False), conditions=after.conditions)
    return None


def _good_set_size(mean: np.ndarray, std: np.ndarray, trial_mean: np.ndarray, trial_std: np.ndarray,
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


def _gate(n_trials: int, surrogate: Any, cv_score: float | None, model_name: str | None, config: NarrowingConfig) -> str | None:
    """Why nothing may be narrowed this round, or None (the evidence gate of DESIGN.md section 4)."""
    if n_trials < config.min_trials:
        return (
            f"Kept: only {n_trials} completed trials lie in this space, fewer than the "
            f"min_trials={config.min_trials} needed before narrowing."
        )
    if surrogate is None or cv_score is None or model_name is None:
        note = getattr(surrogate, "note_", None)
        return "Kept: no surrogate model was fitted" + (f" ({note})." if note else ".")
    if cv_score < config.min_cv_score:
        return (
            f"Kept: the surrogate ({model_name}) ranks held-out trials with a cross-validated Spearman "
            f"correlation of {cv_score:.3f}, below min_cv_score={config.min_cv_score}, so its predictions are not trusted."
        )
    return None


def _weak_evidence(p: Parameter, current: Parameter, n_active: int, ev: "_Evidence", cfg: NarrowingConfig,
                   evidence: dict) -> Decision | None:
    """A "keep" decision when this parameter has too few trials or no effect worth acting on."""
    if n_active < cfg.min_trials:
        return _keep(p, current, (
            f"Kept: only {n_active} completed trials have `{p.name}` active, fewer than min_trials={cfg.min_trials}."
        ), evidence)
    importance = ev.importances.get(p.name)
    if importance is not None and importance < MIN_IMPORTANCE:
        return _keep(p, current, (
            f"Kept: its importance is {importance:.3f}, below {MIN_IMPORTANCE}; the surrogate sees no effect worth narrowing on."
        ), evidence)
    return None


def _keep(p: Parameter, current: Parameter, reason: str, evidence: dict) -> Decision:
    return Decision(p.name, "keep", p.to_dict(), current.to_dict(), reason, evidence)


# -- conditions ---------------------------------------------------------------------------------
def _children(space: SearchSpace) -> dict[str, list[Parameter]]:
    out: dict[str, list[Parameter]] = {}
    for p in space:
        for c in p.conditions:
            out.setdefault(c.parent, []).append(p)
    return out


def _pruned_conditions(p: Parameter, dropped: Mapping[str, list[Any]]) -> tuple[Condition, ...]:
    """``p``'s conditions without the parent values narrowing dropped."""
    out = []
    for c in p.conditions:
        gone = dropped.get(c.parent, [])
        values = tuple(v for v in c.values if not any(_same_scalar(v, g) for g in gone))
        out.append(c if len(values) == len(c.values) else Condition(c.parent, values))
    return tuple(out)


def _with_conditions(p: Parameter, conditions: tuple[Condition, ...]) -> Parameter:
    return p if conditions == p.conditions else dataclasses.replace(p, conditions=conditions)


# -- numeric parameters -------------------------------------------------------------------------
def _value_at(p: Float | Int, u: float) -> float:
    """The raw value at unit position ``u`` (not clipped, not snapped; log space for log)."""
    if p.log:
        return math.exp(math.log(p.low) + u * (math.log(p.high) - math.log(p.low)))
    return p.low + u * (p.high - p.low)


def _decide_numeric(p: Float | Int, current: Float | Int, ev: _Evidence) -> Decision:
    cfg = ev.config
    evidence = ev.base(p)
    evidence.update(region_low=None, region_high=None, n_good=0, shrink=None, n_plausible=ev.n_plausible)
    trial_u = ev.trial_codes[p.name]
    n_active = int(np.sum(~np.isnan(trial_u)))
    if p.high == p.low:
        return _keep(p, current, f"Kept: the range of `{p.name}` is the single value {_fmt(p.low)}.", evidence)
    weak = _weak_evidence(p, current, n_active, ev, cfg, evidence)
    if weak is not None:
        return weak

    good_u = ev.good_codes[p.name]
    good_u = good_u[~np.isnan(good_u)]
    top_u = trial_u[: ev.n_top]
    top_u = top_u[~np.isnan(top_u)]
    points = np.concatenate([good_u, top_u])
    evidence["n_good"] = int(len(points))
    if len(good_u) < MIN_REGION_POINTS:
        return _keep(p, current, (
            f"Kept: only {len(good_u)} of the {ev.n_good} best predicted candidates have `{p.name}` active; "
            "too few to locate a region."
        ), evidence)

    # Quantile box of the good set in search coordinates (Perrone et al. 2019, section 3).
    q_lo, q_hi = (float(q) for q in np.quantile(points, QUANTILES))
    evidence["region_low"] = _clean(_value_at(p, q_lo))
    evidence["region_high"] = _clean(_value_at(p, q_hi))
    region = f"[{_fmt(evidence['region_low'])}, {_fmt(evidence['region_high'])}]"

    # An edge is pressed on only when the region leans towards it (it reaches the edge and leaves
    # a good part of the range free at the other end) and the surrogate still predicts better
    # results at the edge than a little inside it, i.e. the optimum is not simply near the edge.
    gain_low = _edge_gain(ev, p, 0.0, EDGE_PROBE) if q_lo <= EDGE_TOLERANCE and q_hi <= 1.0 - LEAN else None
    gain_high = _edge_gain(ev, p, 1.0, 1.0 - EDGE_PROBE) if q_hi >= 1.0 - EDGE_TOLERANCE and q_lo >= LEAN else None
    evidence["edge_gain_low"], evidence["edge_gain_high"] = gain_low, gain_high
    touch_low = gain_low is not None and gain_low > 0
    touch_high = gain_high is not None and gain_high > 0

    lo, hi = max(0.0, q_lo - cfg.margin), min(1.0, q_hi + cfg.margin)
    incumbent = evidence["incumbent"]
    if incumbent is not None:
        u_inc = p.to_unit(float(incumbent))
        lo, hi = min(lo, u_inc), max(hi, u_inc)

    # Never narrower than min_width of the ORIGINAL width (search units).
    orig = ev.original[p.name] if p.name in ev.original else None
    if not (isinstance(orig, type(p)) and orig.log == p.log):
        orig = p
    min_u = min(1.0, cfg.min_width * orig.width / p.width)
    if hi - lo < min_u:
        centre = min(max((lo + hi) / 2, min_u / 2), 1.0 - min_u / 2)
        lo, hi = min(lo, centre - min_u / 2), max(hi, centre + min_u / 2)

    # Edges the good region presses on: re-open one narrowed earlier, flag the user's own.
    tol_value = 1e-9 * max(1.0, abs(p.low), abs(p.high))
    floor_value, ceil_value = p.low, p.high
    reopen, flagged = [], []
    if touch_low:
        if p.low > orig.low + tol_value:
            lo = max(p.to_unit(orig.low), -EXPAND_BY)
            floor_value = orig.low
            reopen.append("lower")
        else:
            flagged.append("low")
    if touch_high:
        if p.high < orig.high - tol_value:
            hi = min(p.to_unit(orig.high), 1.0 + EXPAND_BY)
            ceil_value = orig.high
            reopen.append("upper")
        else:
            flagged.append("high")
    evidence["beyond_user_bound"] = None if not flagged else (flagged[0] if len(flagged) == 1 else "both")

    low, high = _snap_outward(p, _value_at(p, lo), _value_at(p, hi), floor_value, ceil_value)
    if incumbent is not None:  # exact, after any rounding (safeguard: the incumbent stays inside)
        low, high = min(low, incumbent), max(high, incumbent)
    new = dataclasses.replace(current, low=low, high=high)
    shrink = new.width / p.width
    evidence["shrink"] = _clean(shrink)

    flag_note = ""
    if flagged:
        bounds = " and ".join(
            f"lower bound {_fmt(p.low)}" if f == "low" else f"upper bound {_fmt(p.high)}" for f in flagged
        )
        flag_note = f" The good region reaches the user's {bounds}: the optimum may lie beyond this bound."
    if new.low < p.low or new.high > p.high:
        return Decision(p.name, "expand", p.to_dict(), new.to_dict(), (
            f"Re-opened the {' and '.join(reopen)} edge{'s' if len(reopen) > 1 else ''} from {current.describe()} to "
            f"{new.describe()}: the good region {region} presses on an edge narrowed in an earlier round "
            f"(original {orig.describe()})." + flag_note
        ), evidence)
    if shrink > 1.0 - MIN_SHRINK:
        return _keep(p, current, (
            f"Kept {current.describe()}: the good region {region} plus margin would shrink it only to "
            f"{shrink:.0%} of its width, not worth a change." + flag_note
        ), evidence)
    best = f"; the best trial's {_fmt(incumbent)} stays inside" if incumbent is not None else ""
    return Decision(p.name, "narrow", p.to_dict(), new.to_dict(), (
        f"Narrowed {current.describe()} to {new.describe()} ({shrink:.0%} of the width): 90% of the "
        f"{ev.n_good} best of {ev.n_candidates} candidates predicted by {ev.model_name} "
        f"(CV Spearman {ev.cv_score:.2f}{_plausible_note(ev)}) and of the {ev.n_top} best trials lie in "
        f"{region}{best}." + flag_note
    ), evidence)


def _plausible_note(ev: _Evidence) -> str:
    """Why the good set has the size it has (see :func:`_good_set_size`)."""
    if ev.n_plausible is None:
        return ""
    return (f"; {ev.n_plausible} candidates could still hold the optimum within {CONFIDENCE_Z:g} std, "
            f"so the good set is {ev.n_good}, between {MIN_GOOD_SHARE:.0%} and top_fraction={ev.config.top_fraction:g}")


def _edge_gain(ev: _Evidence, p: Float | Int, edge: float, inner: float) -> float:
    """Mean predicted gain (higher is better) of moving the good candidates from ``inner`` to ``edge``.

    A one-parameter partial dependence restricted to the good region (Friedman 2001): positive
    when the surrogate expects still better results towards, and so perhaps beyond, the edge.
    """
    col = ev.encoder.column_slice(p.name).start
    rows = ev.good_X[~np.isnan(ev.good_codes[p.name])]
    at_edge, inside = rows.copy(), rows.copy()
    at_edge[:, col], inside[:, col] = edge, inner
    mean = ev.predict(np.concatenate([at_edge, inside]))
    return _clean(float(mean[: len(rows)].mean() - mean[len(rows):].mean()))


def _snap_outward(p: Float | Int, raw_lo: float, raw_hi: float, floor_value: float, ceil_value: float) -> tuple[Any, Any]:
    """Bounds containing [raw_lo, raw_hi], on the parameter's grid, inside [floor_value, ceil_value]."""
    raw_lo, raw_hi = max(raw_lo, floor_value), min(raw_hi, ceil_value)
    step = p.grid_step if isinstance(p, Int) else p.step
    if step is not None:
        # Int steps and float steps are kept: the grid stays anchored at the current low.
        k_lo = math.floor((raw_lo - p.low) / step + 1e-9)
        k_hi = math.ceil((raw_hi - p.low) / step - 1e-9)
        k_lo = max(k_lo, math.ceil((floor_value - p.low) / step - 1e-9))
        k_hi = min(k_hi, math.floor((ceil_value - p.low) / step + 1e-9))
        low, high = p.low + k_lo * step, p.low + k_hi * step
        if isinstance(p, Int):
            return int(low), int(high)
        return _clean(low), _clean(high)
    if isinstance(p, Int):  # log ints have no step: whole numbers
        return int(max(math.floor(raw_lo + 1e-9), floor_value)), int(min(math.ceil(raw_hi - 1e-9), ceil_value))
    low, high = _round_outward(raw_lo, raw_hi, p.log)
    return max(low, floor_value), min(high, ceil_value)


def _round_outward(lo: float, hi: float, log: bool) -> tuple[float, float]:
    """Readable bounds, rounded outward: 3 significant digits of the value (log) or of the width."""
    # round(..., 9) first: 1.2e-4 * 1e6 is 119.99999999999999, whose floor would lose a digit.
    def down(v: float, digits: int) -> float:
        return round(math.floor(round(v * 10**digits, 9)) / 10**digits, digits)

    def up(v: float, digits: int) -> float:
        return round(math.ceil(round(v * 10**digits, 9)) / 10**digits, digits)

    if log:
        return down(lo, 2 - math.floor(math.log10(lo))), up(hi, 2 - math.floor(math.log10(hi)))
    width = hi - lo
    if width <= 0:
        return lo, hi
    digits = 2 - math.floor(math.log10(width))
    return down(lo, digits), up(hi, digits)


def _clean(x: float) -> float:
    """Drop float noise such as 0.30000000000000004."""
    return float(f"{x:.12g}")


# -- choices and booleans -----------------------------------------------------------------------
def _decide_choice(
    p: Choice | Boolean,
    current: Choice | Boolean,
    ev: _Evidence,
    children: list[Parameter],
    dropped: dict[str, list[Any]],
) -> Decision:
    cfg = ev.config
    values = list(p.values)
    k = len(values)
    trial_idx = ev.trial_codes[p.name]
    active = ~np.isnan(trial_idx)
    n_active = int(active.sum())
    scores = np.array([float(t.score) for t in ev.ranked])  # type: ignore[arg-type]
    good = ev.good_codes[p.name]
    good = good[~np.isnan(good)]
    top = trial_idx[: ev.n_top]

    per_value = []
    for i, v in enumerate(values):
        used = trial_idx == i
        per_value.append({
            "value": v,
            "n_trials": int(used.sum()),
            "n_top": int(np.sum(top == i)),
            "good_share": _num(np.mean(good == i)) if len(good) else None,
            "mean_score": _num(scores[used].mean()) if used.any() else None,
        })
    evidence = ev.base(p)
    evidence.update(values=per_value, n_good=int(len(good)), dropped=[])

    if k == 1:
        return _keep(p, current, f"Kept: `{p.name}` has a single value.", evidence)
    weak = _weak_evidence(p, current, n_active, ev, cfg, evidence)
    if weak is not None:
        return weak

    oriented = ev.oriented(scores)
    incumbent = evidence["incumbent"]
    inc_index = next((i for i, v in enumerate(values) if incumbent is not None and _same_scalar(v, incumbent)), None)
    fair = 1.0 / k

    def is_bad(i: int) -> bool:
        # Evidence for dropping: enough trials used it, none of the best trials did, the good region
        # (nearly) avoids it, and its trials did worse than the others' on average.
        stats = per_value[i]
        used, others = (trial_idx == i), active & (trial_idx != i)
        return (
            i != inc_index
            and stats["n_trials"] >= MIN_VALUE_TRIALS
            and stats["n_top"] == 0
            and len(good) >= MIN_REGION_POINTS
            and stats["good_share"] is not None and stats["good_share"] < RARE_SHARE * fair
            and others.any() and oriented[used].mean() < oriented[others].mean()
        )

    bad = [i for i in range(k) if is_bad(i)]
    if isinstance(p, Choice) and p.ordered:
        # An ordered choice stays a contiguous run of values: drop from the ends only.
        ends = []
        for run in (range(k), range(k - 1, -1, -1)):
            for i in run:
                if i not in bad or i in ends:
                    break
                ends.append(i)
        bad = ends
    bad.sort(key=lambda i: float(oriented[trial_idx == i].mean()))  # worst first

    drop: list[int] = []
    protected: list[str] = []
    for i in bad:
        if len(drop) + 1 >= k:
            break  # at least one value stays
        trial_drop = [values[j] for j in drop + [i]]
        orphan = next((c for c in children if _condition_emptied(c, p.name, trial_drop)), None)
        if orphan is not None:
            protected.append(f"{_fmt(values[i])} (the only value that activates `{orphan.name}`)")
            continue
        drop.append(i)

    if not drop:
        shares = ", ".join(
            f"{_fmt(s['value'])} {s['good_share']:.0%}" for s in per_value if s["good_share"] is not None
        )
        reason = (
            f"Kept all {k} values: none was both tried enough (at least {MIN_VALUE_TRIALS} trials) and clearly worse "
            f"(absent from the {ev.n_top} best trials, under {RARE_SHARE * fair:.0%} of the good region, worse mean score). "
            f"Shares of the good region: {shares}."
        )
        if protected:
            reason += f" Kept despite the evidence: {', '.join(protected)}."
        return _keep(p, current, reason, evidence)

    gone = [values[i] for i in drop]
    dropped[p.name] = gone
    evidence["dropped"] = gone
    remaining = tuple(v for v in values if not any(_same_scalar(v, g) for g in gone))
    details = "; ".join(
        f"{_fmt(values[i])}: {per_value[i]['n_trials']} trials, mean score {_fmt(per_value[i]['mean_score'])}, "
        f"none among the {ev.n_top} best, {per_value[i]['good_share']:.0%} of the good region (fair share {fair:.0%})"
        for i in drop
    )
    kept_note = f" Kept despite the evidence: {', '.join(protected)}." if protected else ""
    if len(remaining) == 1:
        new: Parameter = Fixed(p.name, remaining[0], conditions=current.conditions)
        return Decision(p.name, "fix", p.to_dict(), new.to_dict(), (
            f"Fixed at {_fmt(remaining[0])}, the only value left after dropping {details}." + kept_note
        ), evidence)
    new = dataclasses.replace(current, values=remaining)  # type: ignore[arg-type]
    return Decision(p.name, "drop_values", p.to_dict(), new.to_dict(), (
        f"Dropped {', '.join(_fmt(g) for g in gone)} ({details}); {len(remaining)} values remain." + kept_note
    ), evidence)


def _condition_emptied(child: Parameter, parent: str, gone: list[Any]) -> bool:
    return any(
        c.parent == parent and all(any(_same_scalar(v, g) for g in gone) for v in c.values)
        for c in child.conditions
    )
