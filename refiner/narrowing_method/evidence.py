"""What the narrowing steps read: the ranked trials, the surrogate's predictions, the good set."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from refiner.encoding import Encoder
from refiner.narrowing_method.constants import MIN_TOP_TRIALS, TOP_TRIAL_SHARE
from refiner.narrowing_method.settings import NarrowingConfig
from refiner.space import Parameter, SearchSpace
from refiner.trial import Objective, Trial

__all__ = ["SurrogateLike", "Model", "model_of", "rank_trials", "n_top_trials", "Predictor", "predictor", "GoodSet", "Evidence", "num"]


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


@dataclass(frozen=True)
class Model:
    """The surrogate's read-outs that decisions cite (all empty without a surrogate)."""

    cv_score: float | None
    name: str | None
    importances: Mapping[str, float]
    note: str | None  # why no model was fitted, when it was not


def model_of(surrogate: SurrogateLike | None) -> Model:
    if surrogate is None:
        return Model(None, None, {}, None)
    return Model(getattr(surrogate, "cv_score", None), getattr(surrogate, "model_name", None),
                 dict(getattr(surrogate, "importances", {}) or {}), getattr(surrogate, "note_", None))


def rank_trials(space: SearchSpace, trials: Sequence[Trial], objective: Objective) -> list[Trial]:
    """Completed trials inside ``space``, best first (the first of equal trials wins, as in best_trial())."""
    sign = 1.0 if objective.direction == "max" else -1.0
    ok = [t for t in trials if t.evidence and space.contains(t.hyperparameters)]
    return sorted(ok, key=lambda t: -sign * float(t.score))  # type: ignore[arg-type]


def n_top_trials(n_ranked: int) -> int:
    """How many of the best trials join the good set."""
    return min(n_ranked, max(MIN_TOP_TRIALS, math.ceil(TOP_TRIAL_SHARE * n_ranked)))


Predictor = Callable[[np.ndarray], "tuple[np.ndarray, np.ndarray]"]


def predictor(surrogate: SurrogateLike, encoder: Encoder) -> Predictor:
    """Predicted (higher-is-better) mean and std for rows of ``encoder``, re-encoded for a surrogate
    fitted on another space."""
    def predict(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        same = surrogate.encoder.space == encoder.space
        mean, std = surrogate.predict(X if same else surrogate.encoder.encode(encoder.decode(X)))
        return np.asarray(mean, dtype=float), np.asarray(std, dtype=float)
    return predict


@dataclass(frozen=True)
class GoodSet:
    """The best-predicted candidates (Perrone et al. 2019's good configurations)."""

    X: np.ndarray  # their rows
    codes: Mapping[str, np.ndarray]  # per parameter (NaN: inactive)
    n_candidates: int  # drawn
    n_plausible: int | None  # candidates that could still hold the optimum; None: no uncertainty given

    @property
    def size(self) -> int:
        return len(self.X)


@dataclass(frozen=True)
class Evidence:
    """Everything the per-parameter steps look at, computed once."""

    space: SearchSpace
    original: SearchSpace
    config: NarrowingConfig
    objective: Objective
    ranked: list[Trial]  # ok trials inside the space, best first
    n_top: int  # the first n_top of ranked are the "top trials"
    trial_codes: Mapping[str, np.ndarray]  # per parameter, aligned with ranked (NaN: inactive)
    good: GoodSet
    predict: Predictor | None
    encoder: Encoder
    model: Model

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
        importance = self.model.importances.get(p.name)
        return {
            "incumbent": inc.hyperparameters.get(p.name) if inc_active else None,  # type: ignore[union-attr]
            "incumbent_trial": inc.trial_id if inc is not None else None,
            "cv_score": num(self.model.cv_score),
            "model": self.model.name,
            "importance": num(importance),
            "n_trials": int(np.sum(~np.isnan(codes))) if codes is not None else len(self.ranked),
            "beyond_user_bound": None,
        }


def num(x: Any) -> float | None:
    """A finite float, or None (for JSON evidence)."""
    return float(x) if x is not None and math.isfinite(float(x)) else None
