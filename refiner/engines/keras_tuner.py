"""Run one round on KerasTuner: ``RandomSearch`` (round 0) or ``BayesianOptimization`` (later rounds).

What this adds to the stock tuners, and why (facts in DESIGN.md §5):

* **Override space.** The round's space is registered in full on a ``HyperParameters`` passed to
  the oracle with ``tune_new_entries=False``; KerasTuner keeps the first registration of a name,
  so it overrides the ranges ``build_model`` declares.
* **Warm start.** Earlier completed trials that lie inside the round's space are injected into
  ``oracle.trials`` as COMPLETED trials, so Bayesian optimisation's initial random points are
  not spent rediscovering what is known. Trials already finished in this round (a resumed run)
  are injected too, so nothing is run twice.
* **No repeats.** Stock Bayesian optimisation proposes the same configuration again on discrete
  spaces; a repeated proposal is replaced by a fresh random one, and the round stops when the
  space is exhausted.
* **Trials.** Each runs through :mod:`refiner.engines.evaluation`, as on every engine: a trial that
  raises, or whose objective is NaN/inf, is recorded as failed and never ends the round (stock
  KerasTuner would turn +inf into 0, which looks best). KerasTuner keeps each trial's best-epoch
  weights in its project folder, as its own ``run_trial`` does.
* **Regions.** A round space made of regions (a union of boxes) is registered as its enclosing
  box, and every proposal is kept in the union: random points (the random round, the Bayesian
  round's initial points, replacements) are drawn from the union, the acquisition's candidates
  are drawn in the regions and its choice must lie in the union (as the reserve's must lie outside
  its box), and a stock proposal outside the union is replaced by a random point inside it.
* **Epoch budget.** Before each proposal the oracle asks ``spec.can_start()``; once the round's
  share of ``fidelity.total`` is spent it proposes nothing more and the search ends.
* **Determinism.** The oracle's random state is re-seeded from (seed, trials so far) before each
  proposal, so a resumed round proposes what the uninterrupted one would have.

The project folder is a cache: ``trials.jsonl`` is the record. A resumed round moves an old
``kt/`` aside (``kt.interrupted-N``, nothing deleted) and rebuilds the oracle from the record.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from refiner.engines.base import Engine, RoundSpec, TrialCallback
from refiner.engines.evaluation import FirstTrialError, Outcome, build_model, derive_seed
from refiner.errors import ValidationError
from refiner.space import SearchSpace
from refiner.trial import Trial

__all__ = ["KerasTunerEngine", "run_round", "discover_space"]

log = logging.getLogger(__name__)

UCB_BETA = 1.0
"""The Bayesian rounds' upper-confidence-bound weight (KerasTuner's default is 2.6). Narrowing has
already spent the exploration: the round searches a box the surrogate found promising, so it can
exploit more. On the quick benchmark (seeds 0-2, budget 60) median regret fell on 6 of 7 problems
against 2.6 (Branin 0.0039 -> 0.00017, Levy-4 0.53 -> 0.023, Hartmann-6 0.19 -> 0.13), with the
optimum kept inside as often; 0.5 was worse than 1.0 on four problems."""

STOCK_UCB_BETA = 2.6
"""KerasTuner's own weight, for the exploration reserve: it searches the declared space, where
exploring is its whole job."""

def _kt():
    import keras_tuner as kt  # imports TensorFlow: only when a round actually runs

    return kt


def discover_space(hypermodel: Callable[[Any], Any], workdir: Path) -> SearchSpace:
    """The space ``build_model(hp)`` declares, found the way KerasTuner finds it.

    KerasTuner builds the model repeatedly, setting parent values until every conditional scope
    has been active once; a throw-away tuner does exactly that.
    """
    kt = _kt()
    import keras

    built: list[Any] = []

    def probe(hp: Any) -> Any:
        model = build_model(hypermodel, hp)
        built.append(model)
        return model

    tmp = workdir / ".discover"
    try:
        tuner = kt.RandomSearch(probe, objective="loss", max_trials=1, directory=str(tmp),
                                project_name="space", overwrite=True)
        space = SearchSpace.from_keras_tuner(tuner.oracle.get_space())
    except Exception as exc:
        raise ValidationError(f"hypermodel: build_model(hp) failed with the default hyperparameters: "
                              f"{type(exc).__name__}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        _clear_keras_session()
    wrong = [m for m in built if not isinstance(m, keras.Model)]
    if wrong:
        raise ValidationError(f"hypermodel: build_model(hp) must return a keras.Model, got {type(wrong[0]).__name__}")
    return space


def _clear_keras_session() -> None:
    try:
        import keras

        keras.backend.clear_session()
    except Exception:  # pragma: no cover - clearing is a memory nicety only
        pass


def _oracle_mixin(base: type) -> type:
    """Add refiner's re-seeding and no-repeat rule to a KerasTuner oracle class."""

    class Oracle(base):  # type: ignore[misc, valid-type]
        refiner_seed: int = 1

        def populate_space(self, trial_id: str) -> dict[str, Any]:
            kt = _kt()
            gate = getattr(self, "refiner_can_start", None)
            if gate is not None and not gate():
                # The round's share of the epoch budget is spent (RoundSpec.can_start): propose no more.
                return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
            n = len(self.trials)
            seed = derive_seed(self.refiner_seed, n)
            self._seed_state = seed
            if hasattr(self, "_random_state"):
                self._random_state = np.random.RandomState(seed)
            response = super().populate_space(trial_id)
            values = response.get("values")
            if response["status"] == kt.engine.trial.TrialStatus.RUNNING and values is not None:
                probe = self.hyperparameters.copy()
                probe.values = dict(values)
                probe.ensure_active_values()
                exclude = getattr(self, "refiner_exclude", None)
                inside_box = exclude is not None and exclude.contains(probe.values)
                union = getattr(self, "refiner_union", None)
                outside = union is not None and not union.contains(probe.values)
                if inside_box or outside or self._duplicate(probe.values):
                    # Stock Bayesian optimisation repeats itself on discrete spaces, and its random
                    # start knows nothing of an exploration reserve's box or of regions: draw a new point.
                    log.debug("trial %s: proposal repeats an earlier configuration, lies in the reserve's box or "
                              "outside the regions; drawing a random one", trial_id)
                    values = self._random_values_outside(exclude)
                    if values is None:
                        log.info("round space exhausted: every configuration has been tried")
                        return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
                    response = {"status": kt.engine.trial.TrialStatus.RUNNING, "values": values}
            return response

        def _random_values(self) -> dict[str, Any] | None:
            """KerasTuner's random values, drawn from the union when the round space has regions."""
            union = getattr(self, "refiner_union", None)
            if union is None:
                return super()._random_values()
            rng = np.random.default_rng(self._seed_state)
            self._seed_state += 1
            for _ in range(self._max_collisions + 1):
                probe = self.hyperparameters.copy()
                probe.values = union.sample(rng)
                probe.ensure_active_values()
                if not self._duplicate(probe.values):
                    return dict(probe.values)
            return None

        def _random_values_outside(self, exclude: SearchSpace | None, tries: int = 200) -> dict[str, Any] | None:
            """A fresh random configuration (``None`` once the space is exhausted), outside ``exclude``."""
            for _ in range(tries):
                values = self._random_values()
                if values is None or exclude is None:
                    return values
                probe = self.hyperparameters.copy()
                probe.values = dict(values)
                probe.ensure_active_values()
                if not exclude.contains(probe.values):
                    return values
            return None

        def _vectorize_trials(self) -> tuple[np.ndarray, np.ndarray]:
            # Stock Bayesian optimisation drops failed trials, so it keeps proposing the region
            # where they fail. Show them to the GP at the worst observed score instead.
            x, y = super()._vectorize_trials()
            failed = [t for t in self.trials.values() if t.status in ("FAILED", "INVALID")]
            if not failed or len(y) == 0:
                return x, y
            rows = []
            for t in failed:
                hps = t.hyperparameters
                rows.append([hp.value_to_prob(hps.values[hp.name] if hps.is_active(hp) and hp.name in hps.values
                                              else hp.default) for hp in self._nonfixed_space()])
            worst = float(np.max(y))  # KerasTuner frames everything as minimisation here
            return np.vstack([x, np.asarray(rows)]), np.concatenate([y, np.full(len(rows), worst)])

    Oracle.__name__ = f"Refiner{base.__name__}"
    return Oracle


def _fast_acquisition(base: type) -> type:
    """KerasTuner's Bayesian oracle with a cheaper search for the acquisition optimum.

    Stock KerasTuner runs 50 L-BFGS restarts with finite-difference gradients, one GP prediction
    per call: about 2 s per proposal here, longer than many trials. The same GP and the same
    upper-confidence-bound acquisition are instead evaluated on 2,000 uniform candidates plus
    1,000 local perturbations of the most promising ones and of the best observed points, in two
    batched predictions (tens of milliseconds). The GP, its kernel and the acquisition are KerasTuner's
    (the acquisition with refiner's :data:`UCB_BETA`).
    """

    class Oracle(base):  # type: ignore[misc, valid-type]
        n_uniform = 2000
        n_local = 1000

        def populate_space(self, trial_id: str) -> dict[str, Any]:
            kt = _kt()
            completed = [t for t in self.trials.values() if t.status == "COMPLETED"]
            dimensions = len(self.hyperparameters.space)
            num_initial_points = self.num_initial_points or max(3 * dimensions, 3)
            if len(completed) < num_initial_points:
                return self._random_populate_space()
            x, y = self._vectorize_trials()
            if x.shape[1] == 0:  # every parameter fixed: nothing to model
                return self._random_populate_space()
            with warnings.catch_warnings():
                # Length scales at their bounds are routine with few points; not the user's concern.
                warnings.simplefilter("ignore", category=ConvergenceWarning)
                self.gpr.fit(x, y)
            bounds = self._get_hp_bounds()
            low, high = bounds[:, 0], bounds[:, 1]
            rng = self._random_state

            def acquisition(points: np.ndarray) -> np.ndarray:
                mu, sigma = self.gpr.predict(points, return_std=True)
                return mu - self.beta * sigma  # minimised, as in KerasTuner

            boxes = self._region_boxes(low, high)
            uniform = self._uniform_in(boxes, rng)
            scores = acquisition(uniform)
            best_observed = x[np.argsort(y)[:5]]
            centres = np.vstack([uniform[np.argsort(scores)[:10]], best_observed])
            picks = centres[rng.randint(0, len(centres), size=self.n_local)]
            local = self._clip_into(picks + rng.normal(0.0, 0.05, size=picks.shape) * (high - low), boxes)
            local_scores = acquisition(local)
            pool, pool_scores = np.vstack([uniform, local]), np.concatenate([scores, local_scores])
            return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": self._pick(pool, pool_scores)}

        def _region_boxes(self, low: np.ndarray, high: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
            """Each region of the round space as bounds in KerasTuner's [0, 1] coordinates (the
            whole cube without regions). An int's bounds are its end values' bucket centres, so
            every point of a box decodes to a value inside the region."""
            union = getattr(self, "refiner_union", None)
            if union is None:
                return [(low, high)]
            out = []
            for region in union.regions:
                lo, hi = low.astype(float), high.astype(float)
                for j, hp in enumerate(self._nonfixed_space()):
                    bound = region.get(hp.name)
                    if bound is not None:
                        lo[j], hi[j] = hp.value_to_prob(bound[0]), hp.value_to_prob(bound[1])
                out.append((lo, hi))
            return out

        def _uniform_in(self, boxes: list[tuple[np.ndarray, np.ndarray]], rng: np.random.RandomState) -> np.ndarray:
            """``n_uniform`` candidates, uniform in the cube or spread over the regions by their volume."""
            if len(boxes) == 1:
                lo, hi = boxes[0]
                return rng.uniform(lo, hi, size=(self.n_uniform, len(lo)))
            volumes = np.array([np.prod(hi - lo) for lo, hi in boxes])
            weights = volumes / volumes.sum() if volumes.sum() > 0 else np.full(len(boxes), 1.0 / len(boxes))
            which = rng.choice(len(boxes), size=self.n_uniform, p=weights)
            lows, highs = np.array([b[0] for b in boxes])[which], np.array([b[1] for b in boxes])[which]
            return lows + rng.uniform(0.0, 1.0, size=lows.shape) * (highs - lows)

        @staticmethod
        def _clip_into(points: np.ndarray, boxes: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
            """Each point clipped into the nearest box (local perturbations stay in the regions)."""
            clipped = np.array([np.clip(points, lo, hi) for lo, hi in boxes])  # (boxes, points, dims)
            distance = ((clipped - points[None]) ** 2).sum(axis=2)
            return clipped[np.argmin(distance, axis=0), np.arange(len(points))]

        def _pick(self, pool: np.ndarray, pool_scores: np.ndarray) -> dict[str, Any]:
            """The best candidate by the acquisition; for an exploration reserve, the best outside
            its round's box (the round's main part searches the box); with regions, the best
            inside their union."""
            order = np.argsort(pool_scores, kind="stable")
            exclude = getattr(self, "refiner_exclude", None)
            union = getattr(self, "refiner_union", None)
            if exclude is not None or union is not None:
                for i in order:
                    values = self._vector_to_values(pool[i])
                    if (exclude is None or not exclude.contains(values)) and (union is None or union.contains(values)):
                        return values
                if union is not None:  # none inside (cannot happen with the pool drawn in the regions)
                    return self._random_values()  # type: ignore[return-value]
            return self._vector_to_values(pool[order[0]])

    Oracle.__name__ = base.__name__
    return Oracle


def _make_tuner_class(kt: Any) -> type:
    class RefinerTuner(kt.Tuner):
        """A KerasTuner ``Tuner`` whose trials run through the shared :class:`Evaluation` and are
        recorded through a callback. KerasTuner still proposes, keeps its project folder and saves
        each trial's best-epoch weights (``get_best_models`` loads them)."""

        def __init__(self, *args: Any, spec: RoundSpec, on_trial: TrialCallback, **kwargs: Any):
            self._spec = spec
            self._on_trial = on_trial
            self._outcomes: dict[str, Outcome] = {}
            super().__init__(*args, **kwargs)

        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
            spec = self._spec
            extra = None
            if spec.evaluation.hypermodel is not None:
                from keras_tuner.src.engine import tuner_utils  # not re-exported publicly

                # One checkpoint over all executions, as KerasTuner's own run_trial keeps it.
                checkpoint = tuner_utils.SaveBestEpoch(objective=self.oracle.objective,
                                                       filepath=self._get_checkpoint_fname(trial.trial_id))
                extra = lambda execution: [checkpoint]  # noqa: E731
            try:
                outcome = spec.evaluation.run(trial.hyperparameters.values, space=spec.space,
                                              key=(spec.round_index, _tag(spec) + trial.trial_id),
                                              check_objective=spec.check_objective, hp=trial.hyperparameters,
                                              extra_callbacks=extra)
            except FirstTrialError as exc:
                raise _stop_run_class()(exc) from exc  # KerasTuner lets only its FatalError end a search
            self._outcomes[trial.trial_id] = outcome
            if not outcome.ok:
                raise kt.errors.FailedTrialError(outcome.message)
            return outcome.metrics

        def on_trial_end(self, trial: Any) -> None:
            # Record first, then let KerasTuner save: the record is what a resume trusts.
            self._on_trial(self._to_record(trial))
            super().on_trial_end(trial)

        def _to_record(self, trial: Any) -> Trial:
            spec = self._spec
            trial_id = f"{spec.round_index}-{_tag(spec)}{trial.trial_id}"
            outcome = self._outcomes.pop(trial.trial_id, None)
            if outcome is None:  # KerasTuner failed the trial before it ran (e.g. an invalid model)
                if trial.message:
                    log.debug("trial %s failed:\n%s", trial.trial_id, trial.message)
                outcome = Outcome({}, _last_line(trial.message) or "the trial failed", 0.0)
            return spec.evaluation.record(outcome, trial_id=trial_id, round_index=spec.round_index,
                                          values=trial.hyperparameters.values, reserve=spec.reserve)

    return RefinerTuner


def _tag(spec: RoundSpec) -> str:
    """Reserve trials get ids of their own (``1-r05``): KerasTuner numbers each oracle's trials from its size."""
    return "r" if spec.reserve else ""


def _stop_run_class() -> type:
    class StopRun(_kt().errors.FatalError):
        """Carries a refiner error through KerasTuner's search loop, which swallows all others."""

        def __init__(self, error: Exception):
            super().__init__(str(error))
            self.error = error

    return StopRun


def _last_line(message: str | None) -> str | None:
    if not message:
        return None
    lines = [line for line in message.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else None


def run_round(spec: RoundSpec, on_trial: TrialCallback) -> int:
    """Run up to ``spec.budget`` new trials; ``on_trial`` receives each finished one. Returns how many ran."""
    kt = _kt()
    hp = spec.space.without_regions().to_keras_tuner()  # the engine keeps proposals in the regions
    tunable = len(spec.space.tunable())
    if spec.kind == "random":
        oracle_cls = _oracle_mixin(kt.oracles.RandomSearchOracle)
        extra: dict[str, Any] = {}
    else:  # a model of the trials so far: Gaussian-process Bayesian optimisation
        oracle_cls = _oracle_mixin(_fast_acquisition(kt.oracles.BayesianOptimizationOracle))
        # Warm trials count towards the initial random points: they are why the round is warm.
        extra = {"num_initial_points": max(2, min(3 * tunable, spec.budget // 2 + 1)),
                 "beta": STOCK_UCB_BETA if spec.reserve else UCB_BETA}

    injected = list(spec.warm_trials) + list(spec.done_trials)
    oracle = oracle_cls(
        objective=kt.Objective(spec.objective.name, spec.objective.direction),
        max_trials=len(injected) + spec.budget,
        hyperparameters=hp,
        tune_new_entries=False,
        allow_new_entries=True,
        seed=derive_seed(spec.seed, spec.round_index, *(("reserve",) if spec.reserve else ())),
        max_retries_per_trial=0,
        max_consecutive_failed_trials=spec.budget + len(injected) + 1,
        **extra,
    )
    oracle.refiner_seed = derive_seed(spec.seed, spec.round_index, "reserve" if spec.reserve else "proposals")
    oracle.refiner_exclude = spec.exclude
    oracle.refiner_can_start = spec.can_start  # trials run one at a time here: none is running when asked
    oracle.refiner_union = spec.space if spec.space.regions else None

    _move_aside(spec.workdir)
    tuner_cls = _make_tuner_class(kt)
    ran = 0

    def record(trial: Trial) -> None:
        nonlocal ran
        ran += 1
        on_trial(trial)

    tuner = tuner_cls(
        oracle=oracle,
        hypermodel=spec.evaluation.hypermodel,
        executions_per_trial=spec.evaluation.executions_per_trial,
        directory=str(spec.workdir.parent),
        project_name=spec.workdir.name,
        overwrite=True,
        spec=spec,
        on_trial=record,
    )
    oracle.verbose = 0  # the agent reports progress through logging
    _inject(kt, oracle, injected, spec)
    if spec.budget > 0:
        # KerasTuner ships with DEBUG on, printing every failed trial's traceback to stdout;
        # refiner records the error and logs the traceback at debug level instead.
        from keras_tuner.src import config as kt_config

        debug, kt_config.DEBUG = kt_config.DEBUG, False
        try:
            tuner.search()  # the fit arguments travel in spec.evaluation
        except kt.errors.FatalError as exc:
            if isinstance(getattr(exc, "error", None), FirstTrialError):
                raise exc.error from None
            raise
        finally:
            kt_config.DEBUG = debug
    return ran


def _move_aside(project_dir: Path) -> None:
    """Keep an interrupted round's KerasTuner folder (checkpoints) instead of deleting it."""
    if not project_dir.exists():
        return
    n = 1
    while project_dir.with_name(f"{project_dir.name}.interrupted-{n}").exists():
        n += 1
    target = project_dir.with_name(f"{project_dir.name}.interrupted-{n}")
    project_dir.rename(target)
    log.info("kept the interrupted round's KerasTuner folder as %s", target)


def _inject(kt: Any, oracle: Any, trials: Sequence[Trial], spec: RoundSpec) -> None:
    """Put finished trials into the oracle as if it had run them (KerasTuner has no public warm start)."""
    TrialStatus = kt.engine.trial.TrialStatus
    for i, record in enumerate(trials):
        hps = oracle.hyperparameters.copy()
        values = {name: record.hyperparameters[name] for name in spec.space.active_names(record.hyperparameters)
                  if name in record.hyperparameters}
        hps.values = values
        hps.ensure_active_values()
        trial = kt.engine.trial.Trial(hyperparameters=hps, trial_id=f"w{i:04d}",
                                      status=TrialStatus.COMPLETED if record.evidence else TrialStatus.FAILED)
        if record.evidence:  # a stopped trial counts at the value it had when stopped
            trial.metrics.register(spec.objective.name, direction=spec.objective.direction)
            trial.metrics.update(spec.objective.name, float(record.score))  # type: ignore[arg-type]
            trial.score = float(record.score)  # type: ignore[arg-type]
            trial.best_step = 0
        oracle.trials[trial.trial_id] = trial
        oracle.start_order.append(trial.trial_id)
        oracle.end_order.append(trial.trial_id)
        oracle._run_times[trial.trial_id] = 1
        oracle._record_values(trial)
    if trials:
        oracle.save()


class KerasTunerEngine(Engine):
    """Rounds as KerasTuner searches: ``RandomSearch``, then ``BayesianOptimization``. No options."""

    name = "keras-tuner"

    def round_label(self, kind: str, space: SearchSpace) -> str:
        return "random search" if kind == "random" else "Bayesian search"

    def run_round(self, spec: RoundSpec, on_trial: TrialCallback) -> int:
        return run_round(spec, on_trial)
