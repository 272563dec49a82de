"""The surrogate: a scikit-learn regressor from hyperparameters to the objective.

Several regressors are tried (extra trees, a Gaussian process, gradient boosting); the one whose
pooled out-of-fold predictions rank the trials best (Spearman correlation under shuffled K-fold)
wins and is refitted on every trial. Rank correlation is what narrowing needs: it keeps the
*best-predicted* candidates, so the order matters, not the scale.

Cross-validation uses up to 5 folds, and 3 from :data:`FEW_FOLDS_FROM` trials on: the out-of-fold
predictions are pooled over all trials either way, so the Spearman estimate rests on the same
number of points; more folds only make each training set closer to the refit's (80% instead of
67% of the trials), which matters with a few dozen trials and little with hundreds, where it cost
40% of a round's analysis time.

The predicted standard deviation is recalibrated with one factor per fit ("variance scaling",
Levi et al. 2019, "Evaluating and calibrating uncertainty prediction in regression tasks"): the
out-of-fold residuals' RMS over the out-of-fold predicted std's RMS. A tree ensemble's spread or a
GP's posterior std is only proportional to its real error at best; narrowing reads the std as a
confidence interval, so it must be on the scale of the errors the model actually makes.

Scores are oriented so that **higher is better** inside the surrogate (negated for ``"min"``).
Importance is model-agnostic: the variance of each parameter's partial-dependence curve
(Friedman 2001; the "PDP-based importance" of Greenwell et al. 2018), normalised to sum to 1.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.optimize import minimize
from scipy.stats import spearmanr
from sklearn.base import BaseEstimator
from sklearn.ensemble import ExtraTreesRegressor, GradientBoostingRegressor, RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from sklearn.model_selection import KFold
from threadpoolctl import threadpool_limits

from refiner.encoding import Encoder, values_from_unit
from refiner.space import Float, Int, SearchSpace
from refiner.trial import Objective, Trial

__all__ = ["Surrogate", "fit_surrogate", "is_trusted", "MODELS", "DEFAULT_MODELS", "MIN_TRIALS", "FORMAT_VERSION", "FEW_FOLDS_FROM"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MIN_TRIALS = 4
"""Below this many usable trials no model is fitted (cross-validation would be meaningless)."""

FEW_FOLDS_FROM = 100
"""From this many usable trials on, cross-validation uses at most 3 folds (module docstring)."""
FEW_FOLDS = 3

MODELS = ("extra_trees", "random_forest", "gaussian_process", "gradient_boosting")
DEFAULT_MODELS = ("extra_trees", "gaussian_process", "gradient_boosting")


def _make_model(name: str, n_columns: int, seed: int | None, warm: BaseEstimator | None = None) -> BaseEstimator:
    """A fresh, unfitted regressor. Sizes are chosen for ~200 trials on 2 cores in well under 1 s.

    ``warm``, a fitted model of the same kind, lets the GP start its kernel optimisation from the
    previous fit's hyperparameters: far fewer L-BFGS steps, the same local optimum in practice.
    """
    if name == "extra_trees":
        return ExtraTreesRegressor(n_estimators=60, min_samples_leaf=2, max_features=1.0, random_state=seed, n_jobs=1)
    if name == "random_forest":
        return RandomForestRegressor(n_estimators=60, min_samples_leaf=2, max_features=0.5, random_state=seed, n_jobs=1)
    if name == "gaussian_process":
        # Matern 5/2 with one length scale per column (ARD) plus a noise term, as KerasTuner's
        # Bayesian oracle and Snoek et al. 2012 use; normalize_y puts any objective on one scale.
        kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(
            length_scale=np.ones(max(n_columns, 1)), length_scale_bounds=(1e-2, 1e2), nu=2.5
        ) + WhiteKernel(1e-2, (1e-6, 1e1))
        if isinstance(warm, GaussianProcessRegressor):
            kernel = warm.kernel_
        return GaussianProcessRegressor(
            kernel=kernel, normalize_y=True, optimizer=_lbfgs_loose, n_restarts_optimizer=0, random_state=seed
        )
    if name == "gradient_boosting":
        return GradientBoostingRegressor(
            n_estimators=80, max_depth=3, learning_rate=0.1, subsample=0.8, random_state=seed
        )
    raise ValueError(f"unknown surrogate model {name!r}; choose from {list(MODELS)}")


def _lbfgs_loose(obj_func: Any, initial_theta: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, float]:
    """L-BFGS-B on the GP's log marginal likelihood, stopping at a 0.1% relative improvement.

    The kernel gradient dominates the cost of fitting; the default tolerance spends half the
    evaluations on digits that do not change the ranking the surrogate is judged by.
    """
    result = minimize(obj_func, initial_theta, method="L-BFGS-B", jac=True, bounds=bounds, options={"ftol": 1e-3})
    return result.x, float(result.fun)


def _fit_quietly(model: BaseEstimator, X: np.ndarray, y: np.ndarray) -> BaseEstimator:
    with warnings.catch_warnings():
        # The GP optimiser warns when a length scale sits on its bound: expected for a column
        # that does not matter, and not actionable by the user.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


def _mean_std(model: BaseEstimator, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A fitted model's mean and *uncalibrated* std: the trees' spread for forests, the posterior
    std for the GP, and 1 for gradient boosting (no per-point uncertainty: calibration then turns
    it into the out-of-fold RMSE)."""
    if isinstance(model, GaussianProcessRegressor):
        mean, std = model.predict(X, return_std=True)
    elif isinstance(model, (ExtraTreesRegressor, RandomForestRegressor)):
        per_tree = np.stack([tree.predict(X) for tree in model.estimators_])
        mean, std = per_tree.mean(axis=0), per_tree.std(axis=0)
    else:
        mean = model.predict(X)
        std = np.ones(len(X))
    return np.asarray(mean, dtype=float), np.asarray(std, dtype=float)


def _std_scale(residuals: np.ndarray, std: np.ndarray) -> float:
    """The factor that makes the out-of-fold std's RMS equal the out-of-fold residuals' RMS."""
    spread = float(np.mean(std**2))
    if not math.isfinite(spread) or spread <= 1e-24:
        return 1.0  # no spread to rescale (e.g. identical trees): leave it as it is
    return float(np.sqrt(np.mean(residuals**2) / spread))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0  # no ranking to agree with: not evidence of skill
    rho = spearmanr(a, b).statistic
    return float(rho) if math.isfinite(rho) else 0.0


class Surrogate(BaseEstimator):
    """Model-selected regressor of the (oriented) objective over a search space.

    Follows the estimator contract: ``__init__`` stores its arguments, :meth:`fit` returns
    ``self``, fitted state ends in ``_``. Use :func:`fit_surrogate` for the common case.

    Parameters
    ----------
    space, objective:
        What is modelled. ``objective`` is an :class:`Objective` (or a name / dict).
    models:
        Candidate regressors, by name (see :data:`MODELS`).
    min_cv_score:
        ``trusted`` is true when the winner's cross-validated Spearman correlation reaches it.
    n_folds:
        At most this many folds (fewer with fewer trials).
    n_background, n_grid:
        Size of the random background sample and of the numeric grid for partial dependence.
    analyse:
        Compute partial dependence and importances after the fit (about half of a fit's time at
        200 trials); a caller that only predicts, like the audit, turns it off.
    seed:
        Seeds the folds, the models and the background; ``None`` draws fresh randomness.
    """

    def __init__(
        self,
        space: SearchSpace,
        objective: Objective | str | Mapping[str, str] = "score",
        *,
        models: Sequence[str] = DEFAULT_MODELS,
        min_cv_score: float = 0.2,
        n_folds: int = 5,
        n_background: int = 200,
        n_grid: int = 20,
        analyse: bool = True,
        seed: int | None = 0,
    ):
        self.space = space
        self.objective = objective
        self.models = models
        self.min_cv_score = min_cv_score
        self.n_folds = n_folds
        self.n_background = n_background
        self.n_grid = n_grid
        self.analyse = analyse
        self.seed = seed

    # -- fitting --------------------------------------------------------------------------------
    def fit(self, trials: Sequence[Trial]) -> "Surrogate":
        """Select a model by cross-validation on the usable trials and refit it on all of them."""
        # The matrices are small (hundreds of rows): threaded BLAS only adds overhead, and on a
        # busy 2-core machine its spinning threads made one GP fit 20x slower (0.3 s -> 10 s).
        with threadpool_limits(limits=1, user_api="blas"):
            return self._fit(trials)

    def _fit(self, trials: Sequence[Trial]) -> "Surrogate":
        for name in self.models:
            if name not in MODELS:
                raise ValueError(f"unknown surrogate model {name!r}; choose from {list(MODELS)}")
        if not self.models:
            raise ValueError("`models` must name at least one surrogate model")
        if self.n_folds < 2:
            raise ValueError(f"`n_folds` must be at least 2, got {self.n_folds}")
        started = time.perf_counter()
        objective = Objective.coerce(self.objective)
        self.objective_ = objective
        self.encoder_ = Encoder(self.space)
        usable = [t for t in trials if t.evidence]  # stopped trials too, at their last value (refiner.fidelity)
        self.n_trials_ = len(usable)
        self.model_ = None
        self.model_name_: str | None = None
        self.cv_score_: float | None = None
        self.cv_scores_: dict[str, float | None] = {}
        self.n_folds_ = 0
        self.residual_std_ = 0.0
        self.std_scale_ = 1.0
        self.importances_: dict[str, float] = {}
        self.partial_dependence_: dict[str, dict[str, list[Any]]] = {}
        if len(usable) < MIN_TRIALS:
            self.note_ = f"only {len(usable)} usable trials, fewer than the {MIN_TRIALS} needed to fit a surrogate"
            logger.info("surrogate not fitted: %s", self.note_)
            return self

        X = self.encoder_.encode([t.hyperparameters for t in usable])
        sign = 1.0 if objective.direction == "max" else -1.0
        y = sign * np.array([t.score for t in usable], dtype=float)
        self.n_folds_ = min(self.n_folds, len(usable))
        if len(usable) >= FEW_FOLDS_FROM:
            self.n_folds_ = min(self.n_folds_, FEW_FOLDS)
        folds = list(KFold(self.n_folds_, shuffle=True, random_state=self.seed).split(X))
        oof_by_model: dict[str, np.ndarray] = {}
        oof_std_by_model: dict[str, np.ndarray] = {}
        last_fold_model: dict[str, BaseEstimator] = {}
        for name in self.models:
            try:
                oof, oof_std = np.empty_like(y), np.empty_like(y)
                model = None
                for train, test in folds:
                    model = _fit_quietly(_make_model(name, X.shape[1], self.seed, warm=model), X[train], y[train])
                    oof[test], oof_std[test] = _mean_std(model, X[test])
                last_fold_model[name] = model
            except (ValueError, np.linalg.LinAlgError) as exc:  # e.g. a GP whose kernel matrix is singular
                logger.warning("surrogate candidate %s failed in cross-validation: %s", name, exc)
                self.cv_scores_[name] = None
                continue
            self.cv_scores_[name] = _spearman(y, oof)
            oof_by_model[name] = oof
            oof_std_by_model[name] = oof_std
        if not oof_by_model:
            self.note_ = "every surrogate candidate failed to fit"
            return self

        # The highest pooled out-of-fold rank correlation wins; the listed order breaks ties.
        best = max(oof_by_model, key=lambda m: (self.cv_scores_[m], -list(self.models).index(m)))
        self.model_name_ = best
        self.cv_score_ = self.cv_scores_[best]
        self.residual_std_ = float(np.sqrt(np.mean((oof_by_model[best] - y) ** 2)))
        self.std_scale_ = _std_scale(oof_by_model[best] - y, oof_std_by_model[best])
        self.model_ = _fit_quietly(_make_model(best, X.shape[1], self.seed, warm=last_fold_model[best]), X, y)
        self.note_ = (
            f"{best} ranks held-out trials with Spearman {self.cv_score_:.3f} "
            f"({'at least' if self.trusted else 'below'} the {self.min_cv_score} needed to trust it)"
        )
        if self.analyse:
            self._analyse()
        self.fit_seconds_ = time.perf_counter() - started
        logger.debug(
            "surrogate %s fitted on %d trials in %.2fs, CV Spearman %.3f",
            best, len(usable), self.fit_seconds_, self.cv_score_,
        )
        return self

    # -- public read-outs ---------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        return getattr(self, "model_", None) is not None

    @property
    def trusted(self) -> bool:
        return self.fitted and is_trusted(self.cv_score_, self.min_cv_score)

    @property
    def cv_score(self) -> float | None:
        return getattr(self, "cv_score_", None)

    @property
    def model_name(self) -> str | None:
        return getattr(self, "model_name_", None)

    @property
    def encoder(self) -> Encoder:
        return self.encoder_

    @property
    def importances(self) -> dict[str, float]:
        return getattr(self, "importances_", {})

    @property
    def partial_dependence(self) -> dict[str, dict[str, list[Any]]]:
        return getattr(self, "partial_dependence_", {})

    def predict(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted (oriented, higher-is-better) mean and standard deviation per row.

        The std is the spread of the trees for forests, the posterior std for the GP, and the
        out-of-fold RMSE for gradient boosting (which has no per-point uncertainty), each
        recalibrated by ``std_scale_`` so that held-out errors are one std on average.
        """
        if not self.fitted:
            raise RuntimeError(f"the surrogate is not fitted: {getattr(self, 'note_', 'call fit() first')}")
        X = np.asarray(matrix, dtype=float)
        with threadpool_limits(limits=1, user_api="blas"):
            return self._predict(X)

    def _predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, std = _mean_std(self.model_, X)
        return mean, std * self.std_scale_

    def predict_assignments(self, assignments: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict` for configurations given as dicts."""
        return self.predict(self.encoder_.encode(assignments))

    # -- importance and partial dependence --------------------------------------------------------
    def _analyse(self) -> None:
        """Partial dependence per tunable parameter on a shared random background, and importance.

        Each grid value is evaluated on the *same* background rows (common random numbers via an
        equally seeded generator), with the parameter held at the value wherever it is active, so
        children of a conditional parent follow it consistently.
        """
        enc = self.encoder_
        bg_seed = self.seed if self.seed is not None else int(np.random.default_rng().integers(2**31))
        grids: list[tuple[str, list[Any], np.ndarray]] = []
        blocks: list[np.ndarray] = []
        for p in self.space.tunable():
            values = self._grid(p)
            active = None
            for v in values:
                X, codes = enc.sample(self.n_background, np.random.default_rng(bg_seed), fixed={p.name: v})
                active = ~np.isnan(codes[p.name])
                blocks.append(X)
            grids.append((p.name, values, active))
        if not blocks:
            return
        mean, std = self._predict(np.concatenate(blocks))
        sign = 1.0 if self.objective_.direction == "max" else -1.0
        raw_importance: dict[str, float] = {}
        row = 0
        for name, values, active in grids:
            n_vals = len(values)
            m = mean[row : row + n_vals * self.n_background].reshape(n_vals, self.n_background)
            s = std[row : row + n_vals * self.n_background].reshape(n_vals, self.n_background)
            row += n_vals * self.n_background
            share = float(active.mean()) if active is not None else 0.0
            if share == 0.0:
                raw_importance[name] = 0.0
                self.partial_dependence_[name] = {"values": [], "mean": [], "std": []}
                continue
            curve = m[:, active].mean(axis=1)
            # Weighted by how often the parameter is active: a child active in a tenth of the
            # space explains at most that share of the variance.
            raw_importance[name] = float(np.var(curve)) * share
            self.partial_dependence_[name] = {
                "values": list(values),
                # Reported in the objective's own units so a loss reads as a loss.
                "mean": [float(sign * c) for c in curve],
                "std": [float(x) for x in s[:, active].mean(axis=1)],
            }
        total = sum(raw_importance.values())
        self.importances_ = {n: (v / total if total > 0 else 0.0) for n, v in raw_importance.items()}

    def _grid(self, p: Any) -> list[Any]:
        if isinstance(p, (Float, Int)):
            if isinstance(p, Int) and not p.log and len(p.values()) <= self.n_grid:
                return p.values()
            raw = values_from_unit(p, np.linspace(0.0, 1.0, self.n_grid))
            unique: list[Any] = []
            for v in raw:
                v = int(round(v)) if isinstance(p, Int) else float(v)
                if not unique or v != unique[-1]:
                    unique.append(v)
            return unique
        return list(p.values)

    # -- JSON -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The content of ``rounds/<k>/surrogate.json`` (``schemas/surrogate.schema.json``)."""
        objective = getattr(self, "objective_", None) or Objective.coerce(self.objective)
        return {
            "format_version": FORMAT_VERSION,
            "objective": objective.to_dict(),
            "model": self.model_name,
            "fitted": self.fitted,
            "trusted": self.trusted,
            "cv_score": _finite_or_none(self.cv_score),
            "min_cv_score": float(self.min_cv_score),
            "cv_scores": {k: _finite_or_none(v) for k, v in getattr(self, "cv_scores_", {}).items()},
            "n_trials": int(getattr(self, "n_trials_", 0)),
            "n_folds": int(getattr(self, "n_folds_", 0)),
            "seed": self.seed,
            "note": getattr(self, "note_", "not fitted yet"),
            "columns": list(Encoder(self.space).columns),
            "importances": {k: float(v) for k, v in self.importances.items()},
            "partial_dependence": self.partial_dependence,
        }


def is_trusted(cv_score: float | None, min_cv_score: float) -> bool:
    """Whether a surrogate that ranks held-out trials with this cross-validated Spearman
    correlation may be acted on (narrowing's gate and the audit both ask this)."""
    return cv_score is not None and cv_score >= min_cv_score


def _finite_or_none(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def fit_surrogate(
    space: SearchSpace,
    trials: Sequence[Trial],
    objective: Objective | str | Mapping[str, str],
    *,
    seed: int | None = 0,
    min_cv_score: float = 0.2,
    models: Sequence[str] = DEFAULT_MODELS,
    analyse: bool = True,
) -> Surrogate:
    """Fit a :class:`Surrogate` on every usable (``trial.evidence``) trial, encoded against ``space``.

    Trials from earlier, wider rounds are kept: their values encode outside ``[0, 1]`` and tell the
    model what lies beyond the current box. With fewer than :data:`MIN_TRIALS` usable trials no
    model is fitted and ``trusted`` is false.
    """
    return Surrogate(space, objective, models=models, min_cv_score=min_cv_score, analyse=analyse, seed=seed).fit(trials)
