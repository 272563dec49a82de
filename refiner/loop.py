"""The refinement loop: round -> surrogate -> narrowing -> next round, recorded in the run folder.

::

    agent = refiner.Refiner(hypermodel=build_model, objective="val_accuracy", rounds=3,
                            trials_per_round=10, directory="runs", project_name="mnist_cnn", seed=0)
    agent.search(x_train, y_train, epochs=10, validation_split=0.2)
    agent.get_best_hyperparameters()[0].values
    agent.refined_space.to_json("space.json")

Round 0 is a KerasTuner random search over the full space; every later round is a Bayesian
optimisation over the space the previous round's analysis narrowed, warm-started with the
earlier trials inside it. After every round (the last one too) a surrogate is fitted on all
completed trials and :func:`refiner.narrowing.refine` proposes the next space with one decision
per hyperparameter; the last round's proposal is the refined space.

Calling :meth:`Refiner.search` again on the same folder resumes: finished rounds are skipped,
a half-finished round continues from its last recorded trial, and settings that differ from
the ones the run started with are refused.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from refiner import console, progress
from refiner.check import check_run
from refiner.engines import DEFAULT_ENGINE, engine_names, make_engine
from refiner.engines.base import Engine, RoundSpec, RunContext
from refiner.engines.evaluation import Evaluation, FirstTrialError
from refiner.errors import DiskWriteError, RefinerError, RoundFailedError, RunFolderError, SettingsChangedError
from refiner.failpoints import checkpoint
from refiner.gate import ReviewGate, wait_for_approval
from refiner.lock import RunLock, overrides_lock
from refiner.fidelity import EpochBudget, Fidelity, StoppingRule, trial_epochs
from refiner.narrowing import NarrowingConfig, decisions_document, propose
from refiner.narrowing_method.reasons import regions_dropped
from refiner.run_record import (
    as_recorded_before_defaults, best_record, changed_settings, describe_fit, package_versions, with_defaults,
)
from refiner.settings import DEFAULTS, SearchSettings
from refiner.overrides import decisions_with_overrides, read_overrides, refined_space
from refiner.space import SearchSpace
from refiner.jsonio import now_iso
from refiner.store import RunStore
from refiner.trial import Objective, Trial, best_trial
from refiner.tuner_calls import FunctionHyperModel, KerasTunerCalls

__all__ = ["Refiner"]

log = logging.getLogger(__name__)

# A full disk, a full quota, a read-only filesystem: the run stops with one line naming the file.
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}

class Refiner(KerasTunerCalls):
    """Multi-round search refinement over a KerasTuner hypermodel or a plain Python function.

    A KerasTuner script runs with only its constructor changed: ``search``, ``get_best_models``,
    ``get_best_hyperparameters``, ``get_best_trials``, ``results_summary``, ``search_space_summary``,
    ``oracle.get_best_trials`` and ``hypermodel.build`` behave as on a ``keras_tuner.Tuner``
    (:mod:`refiner.tuner_calls`).

    Args:
        hypermodel: ``build_model(hp)`` as for KerasTuner, or a ``keras_tuner.HyperModel``; its
            space is discovered from it.
        function: ``f(params: dict) -> float`` (or a dict of metrics holding the objective).
            Exactly one of ``hypermodel`` and ``function``.
        space: a :class:`SearchSpace` or the path of a space JSON file (an earlier run's
            ``refined_space.json``); required with ``function``, and with ``hypermodel`` it
            overrides the ranges ``build_model`` declares.
        objective: a metric name (``"val_accuracy"``; names with loss/error minimise), or an
            :class:`Objective` or ``keras_tuner.Objective`` with an explicit direction.
        rounds: how many rounds (round 0 random, then Bayesian).
        max_trials: the total budget over all rounds, split as the benchmark found best
            (:func:`refiner.settings.split_budget`: a fifth for the random round, the rest in equal rounds);
            ``trials_per_round`` or ``initial_trials``, when given too, replace their part.
        trials_per_round: new trials per round (default 10, or from ``max_trials``).
        initial_trials: new trials in round 0, the random round (default: ``trials_per_round``).
        executions_per_trial: models trained per trial (hypermodel only), averaged as in KerasTuner.
        trial_retries: extra tries for a trial that raises or returns NaN/inf before it is
            recorded as failed (default 0: a failed trial is recorded at once and never re-run).
        directory, project_name: the run folder is ``directory/project_name``.
        seed: makes proposals, surrogates and narrowing reproducible; ``None`` for fresh randomness.
        narrowing: a :class:`NarrowingConfig` or a dict of its fields.
        fidelity: pay in epochs (:class:`refiner.Fidelity`, e.g. ``Fidelity("epochs", min=1, max=27,
            eta=3)``): a Keras trial trains at most ``max`` epochs (its ``epochs``), a function is
            called as ``f(params, budget)``, and a trial that lags at a rung is stopped there
            (:mod:`refiner.fidelity`). Stopped trials are evidence, never best.
        engine: a registered engine's name (:mod:`refiner.engines`): ``"keras-tuner"`` (random
            search, then Bayesian optimisation) or ``"optuna"`` (random sampler, then TPE), over
            the same space and run folder; or an :class:`~refiner.engines.base.Engine` instance.
        storage, heartbeat_interval, run_trials: options of the optuna engine
            (:class:`~refiner.engines.optuna.OptunaEngine`): a storage URL that workers
            (``refiner worker``) reach, the seconds between heartbeats (default 10), and
            ``run_trials=False`` to only coordinate. Another engine refuses them.
        overwrite: start afresh, deleting an existing run folder of that name.
        warm_start: an earlier run folder with the same objective and parameters: its trials are
            imported (``imported.jsonl``, each with its source); those completed inside this run's
            space are evidence for its first surrogate and warm-start its rounds (:mod:`refiner.warm_start`).
        verbose: 0 silent, 1 (default) one line per trial and a table per round, as ``refiner run``
            prints them, 2 also Keras's epoch bars. The lines are ``logging`` records of the
            ``refiner`` logger; where no logging is configured, ``search()`` shows them on stderr.
        review: ``"each-round"`` (or ``True``): after each round but the last, wait until a person
            approves its decisions (the review app, ``refiner approve``); see :mod:`refiner.gate`.
        review_timeout: seconds to wait for that approval before going on with refiner's proposals
            (default: wait for ever).
    """

    def __init__(
        self,
        hypermodel: Callable[[Any], Any] | None = None,
        *,
        function: Callable[[dict[str, Any]], Any] | None = None,
        space: SearchSpace | str | os.PathLike[str] | None = None,
        objective: Objective | str | Mapping[str, str] = "val_accuracy",
        rounds: int = DEFAULTS["rounds"],
        max_trials: int | None = None,
        trials_per_round: int | None = None,
        initial_trials: int | None = None,
        executions_per_trial: int = DEFAULTS["executions_per_trial"],
        trial_retries: int = DEFAULTS["trial_retries"],
        directory: str | os.PathLike[str] = "runs",
        project_name: str = "refiner",
        seed: int | None = DEFAULTS["seed"],
        narrowing: NarrowingConfig | Mapping[str, Any] | None = None,
        fidelity: Fidelity | Mapping[str, Any] | None = None,
        engine: str | Engine = DEFAULT_ENGINE,
        storage: str | None = None,
        heartbeat_interval: int | None = None,
        run_trials: bool | None = None,
        overwrite: bool = False,
        target_name: str | None = None,
        config_path: str | None = None,
        verbose: int = 1,
        warm_start: str | os.PathLike[str] | None = None,
        review: str | bool | None = None,
        review_timeout: float | None = None,
    ):
        if (hypermodel is None) == (function is None):
            raise ValueError("give exactly one of `hypermodel` and `function`")
        if function is not None and space is None:
            raise ValueError("`space` is required with `function` (a plain function declares no space)")
        self.settings = SearchSettings.create(
            rounds=rounds, max_trials=max_trials, trials_per_round=trials_per_round, initial_trials=initial_trials,
            executions_per_trial=executions_per_trial, trial_retries=trial_retries, seed=seed, narrowing=narrowing,
            fidelity=fidelity)
        if verbose not in (0, 1, 2) or isinstance(verbose, bool):
            raise ValueError(f"`verbose` must be 0, 1 or 2, got {verbose!r}")
        if isinstance(engine, Engine):
            if (storage, heartbeat_interval, run_trials) != (None, None, None):
                raise ValueError("give engine options to the engine instance, not to Refiner")
            self._engine = engine
        else:
            if engine not in engine_names():
                raise ValueError(f"`engine` must be one of {', '.join(engine_names())}, got {engine!r}")
            self._engine = make_engine(engine, storage=storage, heartbeat_interval=heartbeat_interval,
                                       run_trials=run_trials)
        self._hypermodel = hypermodel  # as given: a function or a keras_tuner.HyperModel
        self.function = function
        self.verbose = verbose
        if isinstance(space, (str, os.PathLike)):
            space = SearchSpace.from_json(Path(space))  # e.g. an earlier run's refined_space.json
        self.space = space
        self.warm_start = None if warm_start is None else Path(warm_start)
        self.review = ReviewGate.coerce(review, review_timeout)  # refiner.gate; None: no waiting
        self.objective = Objective.coerce(objective)
        # The settings, checked once (refiner.settings), under the names KerasTuner users know.
        self.rounds = self.settings.rounds
        self.trials_per_round = self.settings.trials_per_round
        self.initial_trials = self.settings.initial_trials
        self.executions_per_trial = self.settings.executions_per_trial
        self.trial_retries = self.settings.trial_retries
        self.seed = self.settings.seed
        self.narrowing = self.settings.narrowing
        self.fidelity = self.settings.fidelity
        self.overwrite = overwrite
        self.engine = self._engine.name
        self.store = RunStore(Path(directory) / project_name)
        self.project_name = project_name
        target = hypermodel if hypermodel is not None else function
        # Recorded in run.json and compared on resume, so it must not contain a memory address.
        qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
        self.target_name = target_name or f"{getattr(target, '__module__', None) or type(target).__module__}:{qualname}"
        self.config_path = config_path
        self._trials: list[Trial] = []
        self._fit: tuple[tuple, dict[str, Any]] | None = None  # the last search()'s data, for get_best_models
        self._verbose_now = verbose  # this search() call's verbosity (search(verbose=...) may change it)

    @property
    def hypermodel(self) -> Any:
        """The hypermodel, with KerasTuner's ``build(hp)`` (``None`` for a function run)."""
        if self._hypermodel is None or callable(getattr(self._hypermodel, "build", None)):
            return self._hypermodel
        return FunctionHyperModel(self._hypermodel)

    # -- results -------------------------------------------------------------------------------
    @property
    def trials(self) -> list[Trial]:
        """Every finished trial of the run, in order; first, with a warm start, the imported
        trials used as evidence (round -1, ``source`` set)."""
        return list(self._trials)

    @property
    def best_trial(self) -> Trial | None:
        return best_trial(self._trials, self.objective)

    @property
    def refined_space(self) -> SearchSpace:
        """The space proposed after the last round (``refined_space.json``), with a person's
        overrides of the last round's decisions applied, exactly as ``refiner export`` gives it."""
        if not self.store.refined_space_file.exists():
            raise RefinerError("no refined space yet: run search() first")
        return refined_space(self.store)

    def get_best_hyperparameters(self, num_trials: int = 1) -> list[Any]:
        """The best ``num_trials`` configurations as ``keras_tuner.HyperParameters``, best first."""
        import keras_tuner as kt

        ranked = sorted((t for t in self._trials if t.ok), key=lambda t: t.score,  # type: ignore[arg-type, return-value]
                        reverse=self.objective.direction == "max")
        out = []
        for t in ranked[:num_trials]:
            space = self.store.read_space(t.round) if self.store.has_space(t.round) else self.refined_space
            hp: kt.HyperParameters = space.without_regions().to_keras_tuner()  # holds the trial values, no region choice
            hp.values = dict(t.hyperparameters)
            out.append(hp)
        return out

    # -- the loop ------------------------------------------------------------------------------
    def search(self, *fit_args: Any, **fit_kwargs: Any) -> "Refiner":
        """Run (or resume) every round. Positional and keyword arguments go to ``model.fit``
        (``callbacks`` are copied for every model, as in KerasTuner); ``verbose=`` sets this
        call's verbosity as in the constructor."""
        verbose = fit_kwargs.pop("verbose", self.verbose)
        if verbose not in (0, 1, 2) or isinstance(verbose, bool):
            raise ValueError(f"`verbose` must be 0, 1 or 2, got {verbose!r}")
        if self.fidelity is not None and fit_kwargs.get("epochs", self.fidelity.max) != self.fidelity.max:
            raise ValueError(f"`epochs`: with a fidelity a trial trains up to fidelity.max = {self.fidelity.max} "
                             f"epochs; leave `epochs` out of search() (got {fit_kwargs['epochs']!r})")
        self._engine.prepare(self.store.root)  # e.g. an unreachable server, refused before the folder is touched
        # One writer per run folder for this process's whole life (refiner.lock); a second one is
        # refused here, before it reads or writes anything.
        with progress.shown(verbose), RunLock(self.store.root):
            return self._search(fit_args, fit_kwargs, verbose)

    def _search(self, fit_args: tuple, fit_kwargs: dict[str, Any], verbose: int) -> "Refiner":
        store = self.store
        self._fit = (fit_args, fit_kwargs)
        self._verbose_now = verbose
        self._evaluation = Evaluation(
            self.objective, function=self.function, hypermodel=self._hypermodel, fit_args=fit_args,
            fit_kwargs=fit_kwargs, executions_per_trial=self.executions_per_trial, trial_retries=self.trial_retries,
            verbose=verbose, seed=self.seed, fidelity=self.fidelity)
        self._epochs = self._epoch_budget()
        created_here = not store.exists()
        initial_space = self._initial_space()
        imported = None
        if self.warm_start is not None and (self.overwrite or not store.exists()):
            from refiner.warm_start import earlier_trials

            imported = earlier_trials(self.warm_start, self.objective, initial_space)  # checked before any write
        settings = self._settings(initial_space, fit_args, fit_kwargs)
        self._open_run(settings, initial_space, imported)
        try:
            with self._engine.running(self._run_context()):  # e.g. a heartbeat workers watch
                for k in range(self.rounds):
                    space = self._round_space(k, initial_space)
                    self._run_round(k, space, fit_args, fit_kwargs, initial_space)
                    self._analyse_round(k, space, initial_space)
                    if self.review is not None and k < self.rounds - 1:
                        wait_for_approval(store, k, self.review)  # refiner.gate: a person approves first
        except RoundFailedError as exc:
            store.update_state(status="failed", message=str(exc))
            store.event("run_failed", message=str(exc))
            self._tell_workers("stopped", str(exc))
            raise
        except FirstTrialError as exc:
            # The first model showed the settings are wrong. A run this call created holds no trial
            # worth keeping, so it goes and the corrected command starts cleanly; an older run is kept.
            if created_here and not store.all_trials():
                store.clear()
            else:
                store.update_state(status="failed", message=str(exc))
                store.event("run_failed", message=str(exc))
            raise
        except DiskWriteError as exc:
            self._record_stop(exc, best_effort=True)  # the disk may well refuse this too
            raise
        except RefinerError:
            raise  # bad input or a damaged folder: refused as it is, nothing recorded
        except (KeyboardInterrupt, Exception) as exc:
            # Whatever stopped us, the record is intact: say how to carry on.
            trouble = self._disk_trouble(exc)  # KerasTuner's or SQLite's own files on a full disk
            self._record_stop(trouble or exc, best_effort=trouble is not None)
            if trouble is not None:
                raise trouble from exc
            raise
        self._tell_workers("finished")
        with overrides_lock(store.root):
            refined = self._next_space_from_decisions(self.rounds - 1)
            store.write_refined_space(refined)
        best = self.best_trial
        store.update_state(status="finished", current_round=self.rounds - 1, message=None, best=best_record(best))
        store.event("run_finished", best_score=None if best is None else best.score)
        log.info("run finished: best %s = %s; refined space written to %s",
                 self.objective.name, console.fmt(best.score if best else None), store.refined_space_file)
        if self._epochs is not None:
            log.info("epochs: %d spent of fidelity.total = %d", self._epochs_spent(), self._epochs.total)
        return self

    # -- steps ---------------------------------------------------------------------------------
    def _initial_space(self) -> SearchSpace:
        if self._hypermodel is None:
            assert self.space is not None
            return self.space
        from refiner.engines.keras_tuner import discover_space

        self.store.root.mkdir(parents=True, exist_ok=True)
        declared = discover_space(self._hypermodel, self.store.root)
        return declared.override_with(self.space) if self.space is not None else declared

    def _settings(self, space: SearchSpace, fit_args: tuple, fit_kwargs: Mapping[str, Any]) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "mode": "hypermodel" if self._hypermodel is not None else "function",
            "target": self.target_name,
            "objective": self.objective.to_dict(),
            "rounds": self.rounds,
            "trials_per_round": self.trials_per_round,
            "executions_per_trial": self.executions_per_trial,
            "seed": self.seed,
            "initial_space": space.to_dict(),
            "narrowing": self.narrowing.to_dict(),
            "config": self.config_path,
            "engine": self.engine,
        }
        if self.initial_trials is not None:
            settings["initial_trials"] = self.initial_trials  # absent by default, as in runs made before it existed
        if self.trial_retries:
            settings["trial_retries"] = self.trial_retries  # absent when 0, as in runs made before it existed
        if self.review is not None:
            settings["review"] = self.review.mode  # absent without a gate, as in runs made before it existed
        if self.fidelity is not None:
            settings["fidelity"] = self.fidelity.to_dict()  # absent without one, as in runs made before it existed
        if self.warm_start is not None:
            settings["warm_start"] = str(self.warm_start)  # absent without one, as in runs made before it existed
        if self._hypermodel is not None:
            settings["fit"] = describe_fit(fit_args, fit_kwargs)
        return settings

    def _open_run(self, settings: dict[str, Any], initial_space: SearchSpace, imported: list[Trial] | None) -> None:
        from refiner.warm_start import evidence

        store = self.store
        if store.exists() and self.overwrite:
            log.info("--overwrite: deleting the earlier run in %s", store.root)
            store.clear()  # the lock files stay: this process holds the writer lock
        if store.exists():
            check_run(store)  # a damaged run is refused before anything in it is touched
            store.remove_stale_temporaries()
            run = store.read_run()
            changed = changed_settings(with_defaults(run["settings"]),
                                        as_recorded_before_defaults(run["settings"], settings))
            if changed:
                raise SettingsChangedError(
                    f"{store.root}: the run was started with other settings ({'; '.join(changed)}); "
                    "use --overwrite (overwrite=True) to start afresh or another run name"
                )
            self._trials = [*evidence(store.read_imported(), initial_space), *store.all_trials()]
            store.update_state(status="running", message=None)
            store.event("run_resumed", trials_so_far=len(self._trials))
            log.info("resuming %s: %d trials recorded so far", store.root, len(self._trials))
            return
        # A folder without run.json (e.g. left by a crash before the first write) is started afresh;
        # anything else in it is kept.
        store.root.mkdir(parents=True, exist_ok=True)
        if imported is not None:
            # Before run.json: a crash in between leaves a folder that is started afresh, never a
            # warm-started run without its imports.
            store.write_imported(imported)
        store.write_run({
            "format_version": 1,
            "name": self.project_name,
            "settings": settings,
            "state": {"status": "running", "current_round": 0, "message": None, "best": None},
            "versions": package_versions(),
            "created_at": now_iso(),
            "updated_at": now_iso(),
        })
        store.event("run_started", rounds=self.rounds, trials_per_round=self.trials_per_round)
        self._trials = []
        if imported is not None:
            self._trials = evidence(imported, initial_space)
            store.event("warm_started", source=str(self.warm_start), imported=len(imported),
                        evidence=len(self._trials))
            log.info("warm start from %s: %d trials imported, %d completed inside this run's space used as evidence",
                     self.warm_start, len(imported), len(self._trials))

    def _round_space(self, k: int, initial_space: SearchSpace) -> SearchSpace:
        store = self.store
        if store.has_space(k):
            return store.read_space(k)
        if k == 0:
            store.write_space(k, initial_space)
            return initial_space
        # The review app may be saving overrides of round k-1 right now: the save lands before this
        # space is built (and is applied), or after it and is refused (refiner.lock's rule).
        with overrides_lock(store.root):
            space = self._next_space_from_decisions(k - 1)
            store.write_space(k, space)
        return space

    def _next_space_from_decisions(self, k: int) -> SearchSpace:
        """Round ``k``'s proposal, with a person's overrides (``overrides.json``) applied if any."""
        store = self.store
        recorded = store.read_decisions(k)
        if recorded is None:
            raise RunFolderError(f"{store.round_dir(k)}: decisions.json is missing, so round {k + 1} has no space")
        overrides = read_overrides(store, k)
        decisions = decisions_with_overrides(store, k) if overrides is not None else recorded
        assert decisions is not None
        if decisions != recorded:
            # The record keeps what refiner proposed and what the person chose.
            store.write_decisions(k, decisions)
            names = [o["name"] for o in overrides["overrides"]] if overrides else []
            store.event("overrides_applied", round=k, names=names)
            log.info("round %d: applied a person's overrides for %s", k, ", ".join(names))
        try:
            return SearchSpace.from_dict(decisions["next_space"], source=str(self.store.round_dir(k) / "decisions.json"))
        except RefinerError as exc:
            raise RunFolderError(str(exc)) from None

    def _run_round(self, k: int, space: SearchSpace, fit_args: tuple, fit_kwargs: Mapping[str, Any],
                   initial_space: SearchSpace) -> None:
        """Round ``k``'s trials: in ``space``, then the round's exploration reserve in the declared space."""
        store = self.store
        done = store.read_trials(k)
        n_reserve = self._reserve_size(k, space, initial_space)
        store.update_state(current_round=k)
        counter = {"n": len(done)}
        # With an epoch budget the main part may bring the run up to its share of the round's epochs
        # (as of its trials), the reserve up to the round's whole cumulative share.
        self._run_part(k, space, self._budget(k) - n_reserve, [t for t in done if not t.reserve], counter,
                       fit_args, fit_kwargs, reserve=False, part=1.0 - n_reserve / self._budget(k))
        if n_reserve:
            self._run_part(k, initial_space, n_reserve, [t for t in done if t.reserve], counter,
                           fit_args, fit_kwargs, reserve=True, box=space)
        if counter["n"] == len(done):
            return  # nothing ran now: a resumed run carries on from a round it finished before
        round_trials = store.read_trials(k)
        if round_trials and not any(t.evidence for t in round_trials):
            last = round_trials[-1].message or "no message"
            raise RoundFailedError(
                f"every trial of round {k} failed ({len(round_trials)} trials; last error: {last}); "
                f"the run stopped with all state kept in {store.root}"
            )

    def _reserve_size(self, k: int, space: SearchSpace, initial_space: SearchSpace) -> int:
        """How many of round ``k``'s trials explore the declared space: none in round 0 or while
        nothing is narrowed (the round searches the declared space anyway), at least one otherwise."""
        if k == 0 or space == initial_space or self.narrowing.reserve == 0:
            return 0
        budget = self._budget(k)
        return min(budget - 1, max(1, round(self.narrowing.reserve * budget)))

    def _run_part(self, k: int, space: SearchSpace, budget: int, done: list[Trial], counter: dict[str, int],
                  fit_args: tuple, fit_kwargs: Mapping[str, Any], *, reserve: bool,
                  box: SearchSpace | None = None, part: float = 1.0) -> None:
        store = self.store
        remaining = budget - len(done)
        if remaining <= 0:
            return
        epochs = self._epochs
        if epochs is not None:
            limit = epochs.open(k, self._epochs_spent(), part)
            if not epochs.may_start():
                # Spent (or resumed after the part ended on its epochs): the engine is not even asked.
                if not done:
                    log.info("round %d%s: no epochs left of its share (%d of %d spent by the run)", k,
                             " reserve" if reserve else "", epochs.spent, limit)
                return
        # The reserve learns from every trial so far (all lie in the declared space), the box part
        # from the earlier ones inside its box.
        earlier = [t for t in self._trials if t.evidence and space.contains(t.hyperparameters)
                   and (t.round < k or (reserve and not t.reserve))]
        if self.fidelity is not None:
            # Judged against every curve recorded so far, so a resumed round stops what the first did.
            self._evaluation.stopping = StoppingRule(self.fidelity, self.objective.direction)
            for t in self._trials:
                if not t.imported:
                    self._evaluation.stopping.observe(t.curve)
        kind = "random" if k == 0 else "model"
        paid = {} if epochs is None else {"epochs_limit": epochs.limit, "epochs_spent": epochs.spent}
        store.event("round_started", round=k, kind=kind, budget=remaining, warm_trials=len(earlier),
                    resumed_after=len(done), **paid, **({"reserve": True} if reserve else {}))
        log.info("round %d (%s): %s%s%s", k,
                 "exploration reserve over the declared space" if reserve else self._engine.round_label(kind, space),
                 f"{remaining} trials" if epochs is None else
                 f"trials until the run has spent {epochs.limit} of its {epochs.total} epochs ({epochs.spent} so far)",
                 f", warm-started with {len(earlier)} earlier trials" if earlier else "",
                 f", resuming after {len(done)} recorded" if done else "")

        def on_trial(trial: Trial) -> None:
            checkpoint("trial_evaluated")  # ran, not yet recorded: a crash here re-runs this trial
            store.append_trial(trial)
            checkpoint("trial_recorded")
            self._trials.append(trial)
            if epochs is not None:
                epochs.record(trial_epochs(trial))  # before the engine asks whether the next may start
            counter["n"] += 1
            store.event("trial_finished", round=k, trial_id=trial.trial_id, status=trial.status.value,
                        score=trial.score)
            log.info("%s", console.trial_line(trial, counter["n"], self._budget(k), self.best_trial, self.objective,
                                              None if epochs is None else (epochs.spent, epochs.total)))

        spec = RoundSpec(
            run=self._run_context(), round_index=k, kind=kind, space=space, objective=self.objective,
            budget=remaining, evaluation=self._evaluation, workdir=store.kt_dir(k, reserve=reserve), seed=self.seed,
            warm_trials=earlier, done_trials=done, reserve=reserve, exclude=box if reserve else None,
            check_objective=not any(t.evidence for t in self._trials),
            epochs=epochs,
        )
        self._engine.run_round(spec, on_trial)

    def _record_stop(self, exc: BaseException, best_effort: bool) -> None:
        """Mark the run interrupted (and tell workers); with ``best_effort``, a disk that refuses
        this write too only costs the note: the record itself is intact."""
        if not self.store.exists():
            return
        message = (str(exc) if isinstance(exc, DiskWriteError) else f"{type(exc).__name__}: {exc}")[:500]
        try:
            self.store.update_state(status="interrupted", message=message)
            self.store.event("run_interrupted", message=message)
        except DiskWriteError:
            if not best_effort:
                raise
            log.warning("could not record the interruption in %s either", self.store.root)
        try:
            self._tell_workers("stopped", message)
        except Exception:  # the SQLite storage on the same full disk
            if not best_effort:
                raise
            log.warning("could not tell the workers that the run stopped; they stop when their wait runs out")

    def _disk_trouble(self, exc: BaseException) -> DiskWriteError | None:
        """``exc`` as a :class:`DiskWriteError` if it is a full disk or a read-only folder met
        outside the store (KerasTuner's project folder, the SQLite storage)."""
        if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
            return DiskWriteError(exc.filename or str(self.store.root), exc)
        text = str(exc)
        for words, number in (("database or disk is full", errno.ENOSPC), ("readonly database", errno.EROFS)):
            location = self._engine.storage_location(self._run_context()) if self.store.exists() else None
            if words in text and location is not None:
                return DiskWriteError(location, OSError(number, os.strerror(number)))
        return None

    def _budget(self, k: int) -> int:
        return self.settings.budget(k)

    def _epoch_budget(self) -> EpochBudget | None:
        """``fidelity.total`` spread over the rounds as their trials are (:class:`EpochBudget`)."""
        if self.fidelity is None or self.fidelity.total is None:
            return None
        per_trial = self.fidelity.max * (self.executions_per_trial if self._hypermodel is not None else 1)
        return EpochBudget(self.fidelity.total, [self._budget(k) for k in range(self.rounds)],
                           per_trial * (1 + self.trial_retries))

    def _epochs_spent(self) -> int:
        """The epochs this run's recorded trials trained (imported trials cost this run nothing)."""
        return sum(trial_epochs(t) for t in self._trials if not t.imported)

    def _run_context(self) -> RunContext:
        # The start time tells this run's studies from those of an earlier run of the same name.
        return RunContext(name=self.project_name, root=self.store.root, run_id=str(self.store.read_run()["created_at"]),
                          target=self.target_name)

    def _tell_workers(self, state: str, message: str | None = None) -> None:
        if self.store.exists():
            self._engine.close(self._run_context(), state, message)

    def _analyse_round(self, k: int, space: SearchSpace, initial_space: SearchSpace) -> None:
        store = self.store
        if store.read_decisions(k) is not None:
            return  # analysed before an interruption; deterministic, so nothing to redo
        # Only what was known when round k ended: a recomputed analysis must equal the original.
        completed = [t for t in self._trials if t.evidence and t.round <= k]
        seed = None if self.seed is None else self.seed + 1000 * (k + 1)
        # Imported here, not at the top: scikit-learn and SciPy take seconds to import, and a run
        # resumed only to finish its trials (or killed before its first analysis) never needs them.
        from refiner.surrogate import fit_surrogate

        checkpoint("surrogate_fit")
        surrogate = fit_surrogate(space, completed, self.objective, seed=seed,
                                  min_cv_score=self.narrowing.min_cv_score)
        store.write_surrogate(k, {"round": k, **surrogate.to_dict()})
        checkpoint("narrowing")
        proposal = propose(space, completed, surrogate, objective=self.objective,
                           original_space=initial_space, config=self.narrowing, seed=seed)
        decisions = self._audit(k, completed, initial_space, proposal.decisions, seed)
        regions = proposal.regions
        if regions is not None:
            reopened = [d.name for d, a in zip(proposal.decisions, decisions)
                        if d.after != a.after and any(d.name in box for box in regions.boxes)]
            if reopened:  # the audit re-opened a range the regions bound: search the re-opened part
                log.info("round %d: %s", k, regions_dropped(reopened, "the audit"))
                regions = None
        document = decisions_document(decisions, round_index=k, n_trials=len(completed),
                                      surrogate_trusted=bool(surrogate.trusted), config=self.narrowing,
                                      regions=None if regions is None else regions.to_dict())
        checkpoint("decisions_write")
        store.write_decisions(k, document)
        checkpoint("decisions_written")
        store.event("round_analysed", round=k, model=surrogate.model_name, cv_score=surrogate.cv_score,
                    actions={d.name: d.action for d in decisions})
        round_trials = [t for t in self._trials if t.round == k]
        log.info("%s", console.round_table(k, round_trials, self.best_trial, surrogate, decisions, self.objective,
                                           regions=None if regions is None else regions.reason))

    def _audit(self, k: int, completed: list[Trial], initial_space: SearchSpace, decisions: list, seed: int | None) -> list:
        """Judge every earlier cut with all trials so far (``rounds/<k>/audit.json``); undo the strongly wrong ones."""
        from refiner.audit import audit_cuts, audit_document, cuts_of, reopen  # scikit-learn: see _analyse_round

        store = self.store
        cuts = []
        for j in range(k):
            applied = store.read_decisions(j)  # as the next round used them: a person's overrides included
            if applied is not None:
                cuts.extend(cuts_of(j, store.read_space(j), applied))
        if not cuts:
            return decisions
        checkpoint("audit")
        judgements, summary = audit_cuts(cuts, completed, initial_space, self.objective,
                                         seed=None if seed is None else seed + 500,
                                         min_cv_score=self.narrowing.min_cv_score)
        store.write_audit(k, audit_document(k, judgements, summary))
        for j in judgements:
            if j.verdict in ("doubtful", "wrong"):
                log.info("audit: %s", j.reason)
        return reopen(decisions, judgements, initial_space, {(c.round, c.name): c.before for c in cuts})
