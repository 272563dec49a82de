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

import contextlib
import errno
import logging
import os
import platform
from pathlib import Path
from typing import Any, Callable, Mapping

from refiner import __version__, report
from refiner.errors import DiskWriteError, RefinerError, RoundFailedError, RunFolderError, SettingsChangedError
from refiner.failpoints import checkpoint
from refiner.lock import RunLock, overrides_lock
from refiner.narrowing import NarrowingConfig, decisions_document, refine
from refiner.overrides import decisions_with_overrides, read_overrides, refined_space
from refiner.space import SearchSpace
from refiner.store import RunStore, now_iso
from refiner.surrogate import fit_surrogate
from refiner.trial import Objective, Trial, best_trial

__all__ = ["Refiner", "ENGINES", "INITIAL_SHARE", "split_budget"]

ENGINES = ("keras-tuner", "optuna")

log = logging.getLogger(__name__)

# A full disk, a full quota, a read-only filesystem: the run stops with one line naming the file.
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}

INITIAL_SHARE = 0.2
"""The random round's share of a total budget in :func:`split_budget`. Equal rounds spent a third
of the budget on random search; 20 % gave lower median regret on 6 of the 7 benchmark problems
at 60 trials (README, "Benchmark"), with the optimum kept inside as often."""


def split_budget(total_trials: int, rounds: int = 3) -> tuple[int, int]:
    """``(initial_trials, trials_per_round)`` for a total budget: a random round of about
    :data:`INITIAL_SHARE` of it (at least 2 trials), the rest split equally over the Bayesian
    rounds, any remainder going to the random round."""
    if rounds < 1 or total_trials < rounds + 1:
        raise ValueError(f"a budget of {total_trials} trials cannot fill {rounds} rounds")
    if rounds == 1:
        return total_trials, total_trials
    per_round = max(1, int(round(total_trials * (1 - INITIAL_SHARE) / (rounds - 1))))
    per_round = min(per_round, (total_trials - 2) // (rounds - 1))
    return total_trials - per_round * (rounds - 1), per_round


class Refiner:
    """Multi-round search refinement over a KerasTuner hypermodel or a plain Python function.

    Args:
        hypermodel: ``build_model(hp)`` as for KerasTuner; its space is discovered from it.
        function: ``f(params: dict) -> float`` (or a dict of metrics holding the objective).
            Exactly one of ``hypermodel`` and ``function``.
        space: a :class:`SearchSpace`; required with ``function``, and with ``hypermodel`` it
            overrides the ranges ``build_model`` declares.
        objective: a metric name (``"val_accuracy"``; names with loss/error minimise) or an
            :class:`Objective` with an explicit direction.
        rounds: how many rounds (round 0 random, then Bayesian).
        trials_per_round: new trials per round.
        initial_trials: new trials in round 0, the random round (default: ``trials_per_round``).
        executions_per_trial: models trained per trial (hypermodel only), averaged as in KerasTuner.
        trial_retries: extra tries for a trial that raises or returns NaN/inf before it is
            recorded as failed (default 0: a failed trial is recorded at once and never re-run).
        directory, project_name: the run folder is ``directory/project_name``.
        seed: makes proposals, surrogates and narrowing reproducible; ``None`` for fresh randomness.
        narrowing: a :class:`NarrowingConfig` or a dict of its fields.
        engine: ``"keras-tuner"`` (random search, then Bayesian optimisation) or ``"optuna"``
            (random sampler, then TPE), over the same space and run folder.
        storage: Optuna engine only: a storage URL; default an SQLite file in the run folder.
            Workers (``refiner worker``) that reach the same storage join each round.
        heartbeat_interval: Optuna engine only: seconds between a running trial's heartbeats; a
            trial silent for three intervals (its worker died) is failed and its slot re-run. The
            coordinator beats at the same interval, so workers notice if it dies.
        run_trials: Optuna engine only: ``False`` makes this process only coordinate, leaving
            every trial to workers.
        overwrite: start afresh, deleting an existing run folder of that name.
    """

    def __init__(
        self,
        hypermodel: Callable[[Any], Any] | None = None,
        *,
        function: Callable[[dict[str, Any]], Any] | None = None,
        space: SearchSpace | None = None,
        objective: Objective | str | Mapping[str, str] = "val_accuracy",
        rounds: int = 3,
        trials_per_round: int = 10,
        initial_trials: int | None = None,
        executions_per_trial: int = 1,
        trial_retries: int = 0,
        directory: str | os.PathLike[str] = "runs",
        project_name: str = "refiner",
        seed: int | None = 0,
        narrowing: NarrowingConfig | Mapping[str, Any] | None = None,
        engine: str = "keras-tuner",
        storage: str | None = None,
        heartbeat_interval: int = 10,
        run_trials: bool = True,
        overwrite: bool = False,
        target_name: str | None = None,
        config_path: str | None = None,
    ):
        if (hypermodel is None) == (function is None):
            raise ValueError("give exactly one of `hypermodel` and `function`")
        if function is not None and space is None:
            raise ValueError("`space` is required with `function` (a plain function declares no space)")
        for name, value in (("rounds", rounds), ("trials_per_round", trials_per_round),
                            ("executions_per_trial", executions_per_trial)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
        if initial_trials is not None and (not isinstance(initial_trials, int) or isinstance(initial_trials, bool)
                                           or initial_trials < 1):
            raise ValueError(f"`initial_trials` must be a positive integer or None, got {initial_trials!r}")
        if not isinstance(trial_retries, int) or isinstance(trial_retries, bool) or trial_retries < 0:
            raise ValueError(f"`trial_retries` must be a non-negative integer, got {trial_retries!r}")
        if engine not in ENGINES:
            raise ValueError(f"`engine` must be one of {', '.join(ENGINES)}, got {engine!r}")
        if storage is not None and engine != "optuna":
            raise ValueError("`storage` applies to the optuna engine only")
        if not run_trials and engine != "optuna":
            raise ValueError("`run_trials=False` (coordinate only) needs the optuna engine, where workers can join")
        if not isinstance(heartbeat_interval, int) or isinstance(heartbeat_interval, bool) or heartbeat_interval < 1:
            raise ValueError(f"`heartbeat_interval` must be a positive integer (seconds), got {heartbeat_interval!r}")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**31):
            # numpy and scikit-learn take seeds below 2**32; per-round seeds are derived from this one.
            raise ValueError(f"`seed` must be an integer in [0, 2**31 - 1] or None, got {seed!r}")
        self.hypermodel = hypermodel
        self.function = function
        self.space = space
        self.objective = Objective.coerce(objective)
        self.rounds = rounds
        self.trials_per_round = trials_per_round
        self.initial_trials = initial_trials
        self.executions_per_trial = executions_per_trial
        self.trial_retries = trial_retries
        self.seed = seed
        self.narrowing = narrowing if isinstance(narrowing, NarrowingConfig) else NarrowingConfig.from_dict(dict(narrowing or {}))
        self.overwrite = overwrite
        self.engine = engine
        self.storage = storage
        self.heartbeat_interval = heartbeat_interval
        self.run_trials = run_trials
        self.store = RunStore(Path(directory) / project_name)
        self.project_name = project_name
        target = hypermodel if hypermodel is not None else function
        # Recorded in run.json and compared on resume, so it must not contain a memory address.
        qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
        self.target_name = target_name or f"{getattr(target, '__module__', None) or type(target).__module__}:{qualname}"
        self.config_path = config_path
        self._trials: list[Trial] = []

    # -- results -------------------------------------------------------------------------------
    @property
    def trials(self) -> list[Trial]:
        """Every finished trial of the run, in order."""
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
            hp: kt.HyperParameters = space.to_keras_tuner()
            hp.values = dict(t.hyperparameters)
            out.append(hp)
        return out

    # -- the loop ------------------------------------------------------------------------------
    def search(self, *fit_args: Any, **fit_kwargs: Any) -> "Refiner":
        """Run (or resume) every round. Positional and keyword arguments go to ``model.fit``."""
        if self.storage is not None:
            from refiner.engines.shared_study import open_storage

            open_storage(self.storage)  # an unreachable server is refused before the run folder is touched
        # One writer per run folder for this process's whole life (refiner.lock); a second one is
        # refused here, before it reads or writes anything.
        with RunLock(self.store.root):
            return self._search(fit_args, fit_kwargs)

    def _coordinator_heartbeat(self) -> Any:
        """Optuna engine: beat in the storage for the whole run, so workers notice if this process dies."""
        if self.engine != "optuna":
            return contextlib.nullcontext()
        from refiner.engines.optuna import coordinator_heartbeat

        return coordinator_heartbeat(self._storage_url(), self.project_name, self.heartbeat_interval)

    def _search(self, fit_args: tuple, fit_kwargs: Mapping[str, Any]) -> "Refiner":
        store = self.store
        initial_space = self._initial_space()
        settings = self._settings(initial_space, fit_args, fit_kwargs)
        self._open_run(settings)
        try:
            with self._coordinator_heartbeat():
                for k in range(self.rounds):
                    space = self._round_space(k, initial_space)
                    self._run_round(k, space, fit_args, fit_kwargs)
                    self._analyse_round(k, space, initial_space)
        except RoundFailedError as exc:
            store.update_state(status="failed", message=str(exc))
            store.event("run_failed", message=str(exc))
            self._tell_workers("stopped", str(exc))
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
        store.update_state(status="finished", current_round=self.rounds - 1, message=None, best=_best_dict(best))
        store.event("run_finished", best_score=None if best is None else best.score)
        log.info("run finished: best %s = %s; refined space written to %s",
                 self.objective.name, report.fmt(best.score if best else None), store.refined_space_file)
        return self

    # -- steps ---------------------------------------------------------------------------------
    def _initial_space(self) -> SearchSpace:
        if self.hypermodel is None:
            assert self.space is not None
            return self.space
        from refiner.engines.keras_tuner import discover_space

        self.store.root.mkdir(parents=True, exist_ok=True)
        declared = discover_space(self.hypermodel, self.store.root)
        return declared.override_with(self.space) if self.space is not None else declared

    def _settings(self, space: SearchSpace, fit_args: tuple, fit_kwargs: Mapping[str, Any]) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "mode": "hypermodel" if self.hypermodel is not None else "function",
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
        if self.hypermodel is not None:
            settings["fit"] = _describe_fit(fit_args, fit_kwargs)
        return settings

    def _open_run(self, settings: dict[str, Any]) -> None:
        store = self.store
        if store.exists() and self.overwrite:
            log.info("--overwrite: deleting the earlier run in %s", store.root)
            store.clear()  # the lock files stay: this process holds the writer lock
        if store.exists():
            store.check()  # a damaged run is refused before anything in it is touched
            store.remove_stale_temporaries()
            run = store.read_run()
            changed = _changed_settings(run["settings"], settings)
            if changed:
                raise SettingsChangedError(
                    f"{store.root}: the run was started with other settings ({'; '.join(changed)}); "
                    "use --overwrite (overwrite=True) to start afresh or another run name"
                )
            self._trials = store.all_trials()
            store.update_state(status="running", message=None)
            store.event("run_resumed", trials_so_far=len(self._trials))
            log.info("resuming %s: %d trials recorded so far", store.root, len(self._trials))
            return
        # A folder without run.json (e.g. left by a crash before the first write) is started afresh;
        # anything else in it is kept.
        store.root.mkdir(parents=True, exist_ok=True)
        store.write_run({
            "format_version": 1,
            "name": self.project_name,
            "settings": settings,
            "state": {"status": "running", "current_round": 0, "message": None, "best": None},
            "versions": _versions(),
            "created_at": now_iso(),
            "updated_at": now_iso(),
        })
        store.event("run_started", rounds=self.rounds, trials_per_round=self.trials_per_round)
        self._trials = []

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

    def _run_round(self, k: int, space: SearchSpace, fit_args: tuple, fit_kwargs: Mapping[str, Any]) -> None:
        from refiner.engines.common import RoundSpec

        store = self.store
        done = store.read_trials(k)
        remaining = self._budget(k) - len(done)
        store.update_state(current_round=k)
        if remaining <= 0:
            return
        earlier = [t for t in self._trials if t.round < k and t.ok and space.contains(t.hyperparameters)]
        kind = "random" if k == 0 else "bayesian"
        store.event("round_started", round=k, kind=kind, budget=remaining, warm_trials=len(earlier),
                    resumed_after=len(done))
        log.info("round %d (%s): %d trials%s%s", k, _round_label(self.engine, k, space), remaining,
                 f", warm-started with {len(earlier)} earlier trials" if earlier else "",
                 f", resuming after {len(done)} recorded" if done else "")
        counter = {"n": len(done)}

        def on_trial(trial: Trial) -> None:
            checkpoint("trial_evaluated")  # ran, not yet recorded: a crash here re-runs this trial
            store.append_trial(trial)
            checkpoint("trial_recorded")
            self._trials.append(trial)
            counter["n"] += 1
            store.event("trial_finished", round=k, trial_id=trial.trial_id, status=trial.status.value,
                        score=trial.score)
            log.info("%s", report.trial_line(trial, counter["n"], self._budget(k), self.best_trial, self.objective))

        spec = RoundSpec(
            round_index=k, kind=kind, space=space, objective=self.objective, budget=remaining,
            project_dir=store.kt_dir(k), seed=self.seed, function=self.function, hypermodel=self.hypermodel,
            executions_per_trial=self.executions_per_trial, warm_trials=earlier, done_trials=done,
            fit_args=fit_args, fit_kwargs=fit_kwargs, trial_retries=self.trial_retries,
        )
        if self.engine == "optuna":
            from refiner.engines import optuna as optuna_engine

            optuna_engine.run_round(spec, on_trial, storage=self._storage_url(), study_prefix=self.project_name,
                                    run_id=self._run_id(), target=self.target_name,
                                    heartbeat_interval=self.heartbeat_interval,
                                    run_trials=self.run_trials)
        else:
            from refiner.engines import keras_tuner as keras_tuner_engine

            keras_tuner_engine.run_round(spec, on_trial)
        round_trials = store.read_trials(k)
        if round_trials and not any(t.ok for t in round_trials):
            last = round_trials[-1].message or "no message"
            raise RoundFailedError(
                f"every trial of round {k} failed ({len(round_trials)} trials; last error: {last}); "
                f"the run stopped with all state kept in {store.root}"
            )

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
            if words in text and self.engine == "optuna":
                return DiskWriteError(self._storage_url(), OSError(number, os.strerror(number)))
        return None

    def _budget(self, k: int) -> int:
        """Round ``k``'s trial count."""
        return self.initial_trials if k == 0 and self.initial_trials is not None else self.trials_per_round

    def _storage_url(self) -> str:
        from refiner.engines.optuna import default_storage

        return self.storage or default_storage(self.store.root.resolve())

    def _run_id(self) -> str:
        """Tells this run's studies from those of an earlier run of the same name in a shared storage."""
        return str(self.store.read_run()["created_at"])

    def _tell_workers(self, state: str, message: str | None = None) -> None:
        if self.engine != "optuna" or not self.store.exists():
            return
        from refiner.engines.optuna import close_run

        close_run(self._storage_url(), self.project_name, self._run_id(), state, message)

    def _analyse_round(self, k: int, space: SearchSpace, initial_space: SearchSpace) -> None:
        store = self.store
        if store.read_decisions(k) is not None:
            return  # analysed before an interruption; deterministic, so nothing to redo
        # Only what was known when round k ended: a recomputed analysis must equal the original.
        completed = [t for t in self._trials if t.ok and t.round <= k]
        seed = None if self.seed is None else self.seed + 1000 * (k + 1)
        checkpoint("surrogate_fit")
        surrogate = fit_surrogate(space, completed, self.objective, seed=seed,
                                  min_cv_score=self.narrowing.min_cv_score)
        store.write_surrogate(k, {"round": k, **surrogate.to_dict()})
        checkpoint("narrowing")
        next_space, decisions = refine(space, completed, surrogate, objective=self.objective,
                                       original_space=initial_space, config=self.narrowing, seed=seed)
        document = decisions_document(decisions, round_index=k, n_trials=len(completed),
                                      surrogate_trusted=bool(surrogate.trusted), config=self.narrowing)
        assert document["next_space"] == next_space.to_dict(), "decisions must describe the space refine returned"
        checkpoint("decisions_write")
        store.write_decisions(k, document)
        checkpoint("decisions_written")
        store.event("round_analysed", round=k, model=surrogate.model_name, cv_score=surrogate.cv_score,
                    actions={d.name: d.action for d in decisions})
        round_trials = [t for t in self._trials if t.round == k]
        log.info("%s", report.round_table(k, round_trials, self.best_trial, surrogate, decisions, self.objective))


def _round_label(engine: str, k: int, space: SearchSpace) -> str:
    if engine == "optuna":
        from refiner.engines.optuna import model_sampler_kind

        return "Optuna random sampler" if k == 0 else {"gp": "Optuna GP sampler", "tpe": "Optuna TPE"}[model_sampler_kind(space)]
    return "random search" if k == 0 else "Bayesian search"


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"refiner": __version__, "python": platform.python_version()}
    for dist in ("keras-tuner", "keras", "tensorflow", "optuna", "scikit-learn", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _describe_fit(fit_args: tuple, fit_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-able summary of the fit arguments; arrays by shape and dtype so a changed dataset is noticed."""

    def describe(value: Any) -> Any:
        if isinstance(value, (str, int, float, bool)) or value is None:
            return value
        if hasattr(value, "shape") and hasattr(value, "dtype"):
            return f"array{tuple(int(s) for s in value.shape)} {value.dtype}"
        if isinstance(value, (list, tuple)):
            return [describe(v) for v in value]
        if isinstance(value, Mapping):
            return {str(k): describe(v) for k, v in value.items()}
        return type(value).__name__

    out = {k: describe(v) for k, v in fit_kwargs.items() if k not in ("callbacks", "verbose")}
    if fit_args:
        out["args"] = [describe(v) for v in fit_args]
    return out


def _changed_settings(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    changed = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            before, after = report.short(old.get(key)), report.short(new.get(key))
            changed.append(f"{key}: was {before}, now {after}")
    return changed


def _best_dict(best: Trial | None) -> dict[str, Any] | None:
    if best is None:
        return None
    return {"trial_id": best.trial_id, "round": best.round, "score": best.score,
            "hyperparameters": dict(best.hyperparameters)}
