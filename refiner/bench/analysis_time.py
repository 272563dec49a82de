"""Refiner's per-round analysis time at 200 trials x 8 parameters.

One round's analysis, as the loop runs it after a round whose space an earlier round narrowed, is
``fit_surrogate`` (model selection by cross-validation, refit, partial dependence) in the round's
space, ``refine`` (the narrowing decisions) and ``audit_cuts`` (a second surrogate, in the declared
space, judging the earlier round's cuts). All three are timed on 200 synthetic completed trials over
8 parameters of every kind (floats, a log float, ints, a stepped int, a choice), with a smooth
objective plus noise; the earlier round is the same analysis on the first half of the trials
(untimed), and one untimed warm-up pays for imports and caches.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from refiner.space import Choice, Float, Int, SearchSpace
from refiner.trial import Objective, Trial, TrialState

__all__ = ["analysis_space", "synthetic_trials", "measure_analysis_time"]


def analysis_space() -> SearchSpace:
    return SearchSpace([
        Float("learning_rate", 1e-5, 1e-1, log=True),
        Float("dropout", 0.0, 0.6),
        Float("momentum", 0.5, 0.99),
        Float("weight_decay", 0.0, 0.1),
        Int("layers", 1, 8),
        Int("units", 16, 512, step=16),
        Int("batch_size", 16, 256),
        Choice("activation", ("relu", "tanh", "gelu")),
    ])


def synthetic_trials(n: int = 200, seed: int = 0) -> list[Trial]:
    """``n`` completed trials of :func:`analysis_space` with a smooth objective plus noise."""
    space = analysis_space()
    rng = np.random.default_rng(seed)
    trials = []
    for i in range(n):
        hp: dict[str, Any] = space.sample(rng)
        score = ((math.log10(hp["learning_rate"]) + 3.2) ** 2 + 4 * (hp["dropout"] - 0.2) ** 2
                 + 0.1 * (hp["layers"] - 3) ** 2 + (0.3 if hp["activation"] == "tanh" else 0.0)
                 + 0.05 * rng.normal())
        trials.append(Trial(trial_id=f"0-{i}", round=0, hyperparameters=hp, score=float(score),
                            status=TrialState.COMPLETE))
    return trials


def measure_analysis_time(repeats: int = 3, n_trials: int = 200, seed: int = 0) -> dict[str, Any]:
    """Seconds for ``fit_surrogate``, ``refine`` and ``audit_cuts``, per repeat, after one warm-up."""
    from refiner.audit import audit_cuts, cuts_of
    from refiner.narrowing import decisions_document, refine
    from refiner.surrogate import fit_surrogate

    declared = analysis_space()
    trials = synthetic_trials(n_trials, seed)
    objective = Objective("loss", "min")
    # The earlier round: its cuts are what this round's audit judges.
    earlier = trials[: n_trials // 2]
    first = fit_surrogate(declared, earlier, objective, seed=seed)
    space, decisions = refine(declared, earlier, first, objective=objective, seed=seed)
    cuts = cuts_of(0, declared, decisions_document(decisions, round_index=0, n_trials=len(earlier),
                                                   surrogate_trusted=bool(first.trusted)))
    fit_s, refine_s, audit_s = [], [], []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        surrogate = fit_surrogate(space, trials, objective, seed=seed + i)
        t1 = time.perf_counter()
        refine(space, trials, surrogate, objective=objective, original_space=declared, seed=seed + i)
        t2 = time.perf_counter()
        audit_cuts(cuts, trials, declared, objective, seed=seed + i)
        t3 = time.perf_counter()
        if i > 0:  # the first pass pays for imports and caches
            fit_s.append(t1 - t0)
            refine_s.append(t2 - t1)
            audit_s.append(t3 - t2)
    totals = [a + b + c for a, b, c in zip(fit_s, refine_s, audit_s)]
    return {
        "n_trials": n_trials,
        "n_parameters": len(declared),
        "repeats": repeats,
        "cuts_audited": len(cuts),
        "fit_surrogate_s": fit_s,
        "refine_s": refine_s,
        "audit_s": audit_s,
        "total_s_median": float(np.median(totals)),
        "total_s_max": float(max(totals)),
        "surrogate_model": surrogate.model_name,
    }
