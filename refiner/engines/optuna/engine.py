"""Run one round on Optuna: ``RandomSampler`` (round 0), then ``TPESampler`` (``GPSampler`` with PyTorch).

The :class:`OptunaEngine` (:mod:`refiner.engines.base`'s contract): a round's space and budget in,
finished trials out through a callback, the run folder untouched. Each round is its own study in one storage
(an SQLite file in the run folder unless told otherwise), and:

* **Warm start.** Earlier completed trials inside the round's space are re-created under the new
  distributions and added to the study, so TPE starts from what is known (Optuna's samplers fall
  back to random for parameters whose distribution changed, which is why a new study per round).
* **No repeats.** A proposal equal to a configuration already evaluated is told as failed (marked
  ``refiner_duplicate``, never recorded by refiner) and replaced by an enqueued random point.
* **Regions.** A round space made of regions (a union of boxes) is suggested as its enclosing
  box; a proposal outside the union is told as failed (marked ``refiner_outside_regions``, never
  recorded by refiner) and replaced by an enqueued point: the proposal moved into the nearest
  region, or a fresh point of the union if that one was tried. The round's space, regions
  included, travels in the study's attributes, so workers keep to the same union.
* **Failures.** An exception or a NaN/inf objective is recorded as a failed trial and told to
  Optuna as FAIL; the round goes on.
* **Determinism.** The sampler is re-created with a seed derived from (seed, trials so far) before
  each proposal, so a resumed round proposes what the uninterrupted one would have. A resumed
  round opens a fresh study (``…-attempt-N``) rebuilt from ``trials.jsonl``, the record, after
  copying any result a worker left in the earlier attempt.
* **Scale-out.** Workers (``refiner worker``, :mod:`refiner.engines.optuna.worker`) on any machine
  that reaches the storage take part in the open round; the rules they and the coordinator follow are in
  :mod:`refiner.engines.optuna.shared_study`. TPE's constant liar keeps them from crowding one point.

A Keras hypermodel runs unchanged: ``build_model(hp)`` receives a ``keras_tuner.HyperParameters``
holding the trial's values, and :mod:`refiner.engines.evaluation` trains and scores it exactly as
the KerasTuner engine does.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any, ContextManager, Iterator, Mapping

import numpy as np

from refiner.engines.base import Engine, RoundSpec, RunContext, TrialCallback
from refiner.engines.evaluation import derive_seed
from refiner.engines.optuna import shared_study as shared
from refiner.failpoints import checkpoint
from refiner.fidelity import EpochAllowance
from refiner.space import Fixed, SearchSpace
from refiner.trial import Trial

__all__ = ["OptunaEngine", "Participant", "close_run", "default_storage", "fail_stale", "run_round"]

log = logging.getLogger(__name__)


def default_storage(run_root: Any) -> str:
    """The SQLite file inside the run folder: nothing to start, one file to copy."""
    return f"sqlite:///{run_root}/optuna.db"


def _key(values: Mapping[str, Any]) -> str:
    return json.dumps(values, sort_keys=True, default=str)


def _suggest(trial: Any, space: SearchSpace, distributions: Mapping[str, Any]) -> dict[str, Any]:
    """Define-by-run: suggest each parameter whose conditions hold, in declaration order."""
    from optuna.distributions import FloatDistribution, IntDistribution

    values: dict[str, Any] = {}
    for p in space:
        if not p.is_active(values):
            continue
        d = distributions[p.name]
        if isinstance(d, FloatDistribution):
            values[p.name] = trial.suggest_float(p.name, d.low, d.high, step=d.step, log=d.log)
        elif isinstance(d, IntDistribution):
            values[p.name] = trial.suggest_int(p.name, d.low, d.high, step=d.step, log=d.log)
        else:
            values[p.name] = trial.suggest_categorical(p.name, list(d.choices))
    return values


def model_sampler_kind(space: SearchSpace) -> str:
    """The sampler of a Bayesian round: Optuna's Gaussian-process sampler where it applies (PyTorch is
    installed and no parameter is conditional, which ``GPSampler`` cannot model), TPE otherwise."""
    import importlib.util

    if importlib.util.find_spec("torch") is not None and not any(p.conditions for p in space):
        return "gp"
    return "tpe"


def _sampler(kind: str, seed: int, budget: int, space: Mapping[str, Any] | None = None) -> Any:
    """The round's sampler. ``space``: the round's Optuna distributions when no parameter is
    conditional, so TPE is told the space instead of inferring it from the study's trials."""
    import optuna

    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "gp":
        # Warm trials count as startup trials, as for TPE below.
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=max(2, min(10, budget // 3)))
    # Warm trials count as startup trials: that is the point of adding them.
    startup = max(2, min(10, budget // 3))
    with warnings.catch_warnings():
        # multivariate TPE with `group` handles conditional parameters; Optuna labels both experimental.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if space is None:
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True, group=True)
        return _tpe_on_known_space()(space, seed=seed, n_startup_trials=startup, multivariate=True)


@functools.cache
def _tpe_on_known_space() -> type:
    """Multivariate TPE told the round's space.

    Optuna's multivariate TPE infers the space before every proposal from the study's completed
    trials: a read of the study and a pass over every trial, which a round re-pays per proposal
    because it makes a fresh seeded sampler each time (see *Determinism*). Without conditional
    parameters every trial of a round has the round's distributions, so the inferred space is the
    round's space, in the same (sorted) order: the proposals are the same, without the read."""
    import optuna

    class KnownSpaceTPESampler(optuna.samplers.TPESampler):
        def __init__(self, space: Mapping[str, Any], **kwargs: Any):
            super().__init__(**kwargs)
            self._known_space = {name: d for name, d in sorted(space.items()) if not d.single()}

        def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
            return dict(self._known_space)

    return KnownSpaceTPESampler


def _study(spec: RoundSpec, storage: Any, study_prefix: str) -> Any:
    import optuna

    attempt = 1
    while True:
        name = _study_base(study_prefix, spec.round_index, spec.reserve) + (f"-attempt-{attempt}" if attempt > 1 else "")
        try:
            return optuna.create_study(storage=storage, study_name=name,
                                       direction="maximize" if spec.objective.direction == "max" else "minimize")
        except optuna.exceptions.DuplicatedStudyError:
            attempt += 1  # an interrupted attempt: keep it for the dashboard, start a fresh one


def _study_base(study_prefix: str, round_index: int, reserve: bool) -> str:
    """A round's study name; its exploration reserve has a study of its own (another space)."""
    return f"{study_prefix}-round-{round_index}" + ("-reserve" if reserve else "")


def _round_study_names(storage: Any, study_prefix: str, round_index: int, reserve: bool = False) -> list[str]:
    base = _study_base(study_prefix, round_index, reserve)
    names = [s.study_name for s in storage.get_all_studies()]
    return [n for n in names if n == base or n.startswith(base + "-attempt-")]


def _add(study: Any, record: Trial, space: SearchSpace, distributions: Mapping[str, Any]) -> None:
    import optuna

    active = [n for n in space.active_names(record.hyperparameters) if n in record.hyperparameters]
    params = {n: record.hyperparameters[n] for n in active}
    frozen = optuna.trial.create_trial(
        params=params, distributions={n: distributions[n] for n in active},
        value=float(record.score) if record.evidence else None,  # type: ignore[arg-type]
        # A stopped trial counts at the value it had when stopped, as for the surrogate (refiner.fidelity).
        state=optuna.trial.TrialState.COMPLETE if record.evidence else optuna.trial.TrialState.FAIL,
        user_attrs={"refiner_trial_id": record.trial_id, shared.KNOWN: True, shared.KEY: _key(record.hyperparameters)},
    )
    study.add_trial(frozen)


def run_round(spec: RoundSpec, on_trial: TrialCallback, *, storage: str, study_prefix: str = "refiner",
              run_id: str | None = None, target: str | None = None, heartbeat_interval: int | None = None,
              run_trials: bool = True, poll_s: float = 0.5) -> int:
    """Coordinate one round: open its study, take part in it (unless ``run_trials`` is off), and
    pass every result, whichever process produced it, to ``on_trial`` until ``spec.budget`` new
    trials are recorded. Workers (:mod:`refiner.engines.optuna.worker`) join through the same storage.
    Returns how many new trials were recorded."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rdb = shared.open_storage(storage, heartbeat_interval)
    space = spec.space
    recovered = _recover(spec, rdb, study_prefix, run_id, heartbeat_interval, poll_s) if run_id is not None else []
    for record in recovered:
        checkpoint("optuna_recovering")  # a result an earlier attempt left, not yet in the run folder
        on_trial(record)
    budget = spec.budget - len(recovered)
    if budget <= 0:
        return len(recovered)
    distributions = space.without_regions().to_optuna()
    study = _study(spec, rdb, study_prefix)
    for record in list(spec.warm_trials) + list(spec.done_trials) + recovered:
        _add(study, record, space, distributions)
    # The epoch allowance as of now (the recovered results recorded): the study holds no result of
    # this attempt yet, so every participant counts its results on top of this (shared_study).
    allowance = None if spec.epochs is None else spec.epochs.allowance()
    study.set_user_attr(shared.ROUND_ATTR, {
        "run_id": run_id, "target": target, "round": spec.round_index, "kind": spec.kind, "budget": budget, "seed": spec.seed,
        "space": space.to_dict(), "objective": spec.objective.to_dict(),
        "sampler": "random" if spec.kind == "random" else model_sampler_kind(space),
        "executions_per_trial": spec.evaluation.executions_per_trial, "heartbeat_interval": heartbeat_interval,
        "trial_retries": spec.evaluation.trial_retries,
        "fidelity": None if spec.evaluation.fidelity is None else spec.evaluation.fidelity.to_dict(),
        "reserve": spec.reserve, "exclude": None if spec.exclude is None else spec.exclude.to_dict(),
        "epochs": None if allowance is None else allowance.to_dict(),
    })
    shared.write_control(rdb, study_prefix, {"run_id": run_id, "state": "open", "round": spec.round_index,
                                             "study": study.study_name})
    checkpoint("optuna_round_opened")
    recorded: set[str] = set()

    def record_own(record: Trial) -> None:
        on_trial(record)  # record first: the run folder is what a resume trusts
        recorded.add(record.trial_id)

    participant = Participant(study, rdb, spec, budget, heartbeat_interval, on_result=record_own, epochs=allowance)
    exhausted = False
    last_note = time.monotonic()
    # A trial is stale after three silent heartbeat intervals, so looking once an interval finds it
    # soon enough; looking on every poll would cost the storage a query twice a second for nothing.
    stale_every, last_stale = float(heartbeat_interval or poll_s), float("-inf")
    while True:
        trials = study.get_trials(deepcopy=False)
        for found in shared.records(trials)[:budget]:
            if found["trial_id"] not in recorded and len(recorded) < budget:
                checkpoint("optuna_copying")  # a worker's result, not yet in the run folder
                on_trial(Trial.from_dict(found))
                recorded.add(found["trial_id"])
        if len(recorded) >= budget:
            checkpoint("optuna_round_closing")  # the budget is recorded; workers still see the round open
            break
        running = shared.running_count(trials)
        if exhausted and running == 0:
            log.info("round space exhausted: every configuration has been tried")
            break
        if running == 0 and not spec.can_start(0):
            # The round's share of the epoch budget is spent (RoundSpec.can_start) with nothing
            # running anywhere: with every result recorded, no participant's claim can pass the
            # same rule any more (shared.take_slot), so the round ends here, whoever runs trials.
            break
        if run_trials and not exhausted and shared.live_count(trials) < budget and spec.can_start(running):
            exhausted = participant.step(trials) == "exhausted"
            continue
        if running == 0:
            exhausted = exhausted or bool(study.user_attrs.get(shared.EXHAUSTED))  # a worker ran out of points
        if time.monotonic() - last_note > 30:
            log.info("round %d: %d of %d trials recorded, %d running; waiting for workers (refiner worker %s)",
                     spec.round_index, len(recorded), budget, running, study_prefix)
            last_note = time.monotonic()
        if time.monotonic() - last_stale >= stale_every:
            fail_stale(study)
            last_stale = time.monotonic()
        time.sleep(poll_s)
    shared.write_control(rdb, study_prefix, {"run_id": run_id, "state": "between_rounds", "round": spec.round_index,
                                             "study": study.study_name})
    checkpoint("optuna_round_closed")
    return len(recorded) + len(recovered)


@contextlib.contextmanager
def coordinator_heartbeat(storage: str, study_prefix: str, interval: float) -> Iterator[None]:
    """Beat in ``storage`` every ``interval`` s while the block runs (see shared_study's rules)."""
    beat = shared.CoordinatorBeat(shared.open_storage(storage), study_prefix, interval,
                                  who=f"{socket.gethostname()}:{os.getpid()}")
    try:
        yield
    finally:
        beat.stop()


def close_run(storage: str, study_prefix: str, run_id: str | None, state: str, message: str | None = None) -> None:
    """Tell workers the run is over (``finished``) or stopped (``stopped``: they wait for a resume)."""
    try:
        rdb = shared.open_storage(storage)
        shared.write_control(rdb, study_prefix, {"run_id": run_id, "state": state, "message": message})
    except Exception as exc:  # the run folder already holds the outcome; workers time out on their own
        log.warning("could not tell workers the run is %s: %s", state, exc)


def _recover(spec: RoundSpec, rdb: Any, study_prefix: str, run_id: str, heartbeat_interval: int | None = None,
             poll_s: float = 0.5) -> list[Trial]:
    """Results that reached this round's earlier studies but not the run folder (the coordinator
    stopped before copying a worker's result): recorded now instead of run again."""
    import optuna

    done = {t.trial_id for t in spec.done_trials}
    keys = {_key(t.hyperparameters) for t in spec.done_trials}
    out: list[Trial] = []
    earlier = [study for study in (optuna.load_study(study_name=name, storage=rdb)
                                   for name in _round_study_names(rdb, study_prefix, spec.round_index, spec.reserve))
               if shared.round_attrs(study).get("run_id") == run_id]  # not another run of the same name
    if earlier:
        _settle(earlier, rdb, study_prefix, run_id, spec.round_index, heartbeat_interval, poll_s)
    for study in earlier:
        for found in shared.records(study.get_trials(deepcopy=False)):
            trial = Trial.from_dict(found)
            key = _key(trial.hyperparameters)
            if trial.trial_id in done or key in keys or not spec.space.contains(trial.hyperparameters):
                continue
            if len(out) >= spec.budget:
                return out
            out.append(trial)
            done.add(trial.trial_id)
            keys.add(key)
    return out


def _settle(studies: list[Any], rdb: Any, project: str, run_id: str, round_index: int,
            heartbeat_interval: int | None, poll_s: float) -> None:
    """Close the earlier attempts of a round before a resumed coordinator reads their results.

    Workers kept the round going while the coordinator was away; a result stored after the reading
    would be lost (its slot run again in the new attempt). So: no new claims there (the control
    says ``resuming``, and :func:`shared.claim` checks it under the claims lock; taking each lock
    once waits out a claim that read the control before it changed), then wait until every claimed
    trial there has stored its result or gone stale (its worker died).
    """
    import optuna

    shared.write_control(rdb, project, {"run_id": run_id, "state": "resuming", "round": round_index})
    for study in studies:
        with shared.claims_lock(rdb, study.study_name):
            pass
    if heartbeat_interval is None:
        return  # without heartbeats a dead worker's trial never ends: read what is there now
    announced = False
    while True:
        running = 0
        for study in studies:
            fail_stale(study)
            running += sum(1 for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
                           if t.user_attrs.get(shared.CLAIMED) and shared.RECORD not in t.user_attrs)
        if not running:
            return
        if not announced:
            log.info("round %d: waiting for %d trial(s) that workers are still running in the interrupted attempt",
                     round_index, running)
            announced = True
        time.sleep(poll_s)


def fail_stale(study: Any) -> None:
    """Fail running trials whose heartbeat stopped (their process died), freeing their slots."""
    import optuna

    with shared.quiet_heartbeat_warnings():
        optuna.storages.fail_stale_trials(study)


class Participant:
    """One process's part in a round: ask, check the claim, evaluate, store the result, tell.

    ``token`` tells participants apart so that two workers with the same seed do not propose the
    same points; the coordinator has none, so a run without workers is reproducible.
    """

    def __init__(self, study: Any, storage: Any, spec: RoundSpec, budget: int, heartbeat_interval: int | None,
                 *, on_result: TrialCallback | None = None, token: str | None = None,
                 epochs: EpochAllowance | None = None):
        self.study = study
        self.epochs = epochs  # the round's epoch allowance, applied with the claim (shared.take_slot)
        self.storage = storage
        self.spec = spec
        self.budget = budget
        self.heartbeat_interval = heartbeat_interval
        self.on_result = on_result
        self.token = token
        self.distributions = spec.space.without_regions().to_optuna()
        self.kind = "random" if spec.kind == "random" else model_sampler_kind(spec.space)
        self.known_space = None if any(p.conditions for p in spec.space) else self.distributions
        self.rng = np.random.default_rng(derive_seed(spec.seed, spec.round_index, "optuna-fallback",
                                                     *(() if token is None else (token,))))
        self.who = f"{socket.gethostname()}:{os.getpid()}"
        self.last_look: list[Any] | None = None  # the study's trials as the last claim saw them

    def step(self, trials: Any = None) -> str:
        """Take one trial: ``"ran"``, ``"duplicate"`` (replaced by a fresh point), ``"outside"`` (outside
        the regions, replaced by the nearest point inside), ``"full"`` (no slot
        left in the budget), ``"spent"`` (the round's epoch allowance lets no trial start now) or
        ``"exhausted"`` (every configuration of the space has been tried).
        ``trials``: the study's trials if the caller has read them (saves reading them again; only
        their number is used, to seed the sampler). After ``"ran"``, :attr:`last_look` holds the
        trials as the claim saw them, before its own claim."""
        import optuna

        study, spec = self.study, self.spec
        self.last_look = None
        n = len(trials if trials is not None else study.get_trials(deepcopy=False))
        seed_parts = (spec.seed, spec.round_index, "proposals", n) + (() if self.token is None else (self.token,))
        study.sampler = _sampler(self.kind, derive_seed(*seed_parts), self.budget, self.known_space)
        with shared.quiet_heartbeat_warnings():
            trial = study.ask()
        storage_id = trial._trial_id  # see shared_study: ids order claims, numbers may repeat
        with shared.Heartbeat(self.storage, storage_id, self.heartbeat_interval):
            values = _suggest(trial, spec.space, self.distributions)
            key = _key(values)  # stored with the claim, in one transaction (shared.take_slot)
            checkpoint("optuna_proposed")  # asked and beating, no slot claimed: the trial goes stale
            inside_box = spec.exclude is not None and spec.exclude.contains(values)
            if spec.space.regions and not spec.space.contains(values):
                # The sampler sees the enclosing box; keep its intent, moved into the nearest region.
                trial.set_user_attr(shared.OUTSIDE_REGIONS, True)
                with shared.quiet_heartbeat_warnings():
                    shared.tell(study, trial, state=optuna.trial.TrialState.FAIL)
                trials = study.get_trials(deepcopy=False)
                seen = {t.user_attrs[shared.KEY] for t in trials if shared.KEY in t.user_attrs}
                nearest = spec.space.nearest_in_regions(values)
                fresh = nearest if _key(nearest) not in seen else _fresh_point(spec.space, seen, self.rng)
                if fresh is None:
                    study.set_user_attr(shared.EXHAUSTED, True)
                    return "exhausted"
                study.enqueue_trial(fresh)
                return "outside"
            # The repeat check and the claim share one look at the study, under the claims lock.
            if inside_box:
                outcome = "duplicate"
            else:
                outcome, look = shared.take_slot(self.storage, study, trial, self.budget, project=spec.run.name, key=key,
                                                 who=self.who, epochs=self.epochs)
                self.last_look = look if outcome == "claimed" else None
            if outcome == "duplicate":
                # The reserve explores outside the round's box; a repeat would waste a slot. Either
                # way the proposal yields to a fresh random point (outside the box for the reserve).
                trial.set_user_attr(shared.INSIDE_BOX if inside_box else shared.DUPLICATE, True)
                with shared.quiet_heartbeat_warnings():
                    shared.tell(study, trial, state=optuna.trial.TrialState.FAIL)
                trials = study.get_trials(deepcopy=False)
                seen = {t.user_attrs[shared.KEY] for t in trials if shared.KEY in t.user_attrs}
                fresh = _fresh_point(spec.space, seen, self.rng, exclude=spec.exclude)
                if fresh is None:
                    study.set_user_attr(shared.EXHAUSTED, True)  # tells a coordinator that runs no trials
                    return "exhausted"
                study.enqueue_trial(fresh)
                return "duplicate"
            if outcome in ("full", "spent"):
                trial.set_user_attr(shared.SURPLUS, True)
                with shared.quiet_heartbeat_warnings():
                    shared.tell(study, trial, state=optuna.trial.TrialState.FAIL)
                return outcome
            checkpoint("optuna_claimed")  # holds a slot, nothing evaluated: the slot frees when it goes stale
            outcome = spec.evaluation.run(values, space=spec.space, key=(spec.round_index, trial.number),
                                          check_objective=spec.check_objective)
            record = spec.evaluation.record(outcome, trial_id=f"{spec.round_index}-{'r' if spec.reserve else ''}o{storage_id:04d}",
                                            round_index=spec.round_index, values=values, reserve=spec.reserve)
            checkpoint("optuna_evaluated")  # a result nobody has: lost with the process, the slot re-run
            if self.on_result is not None:
                self.on_result(record)
            try:
                trial.set_user_attr(shared.RECORD, json.dumps(record.to_dict()))
                checkpoint("optuna_record_stored")  # stored, still RUNNING to Optuna: the result holds its slot
                with shared.quiet_heartbeat_warnings():
                    if record.evidence:  # a stopped trial too, at its last value (refiner.fidelity)
                        shared.tell(study, trial, record.score)
                    else:
                        shared.tell(study, trial, state=optuna.trial.TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                # Another participant found our heartbeat stale and failed the trial; its slot is
                # being re-run elsewhere, so this result is dropped rather than counted twice.
                log.warning("trial %s finished after it was declared stale; its result is dropped", record.trial_id)
        checkpoint("optuna_told")
        return "ran"


def _fresh_point(space: SearchSpace, seen: set[str], rng: np.random.Generator, tries: int = 200,
                 exclude: SearchSpace | None = None) -> dict[str, Any] | None:
    for _ in range(tries):
        values = space.sample(rng)
        values = {k: v for k, v in values.items() if not isinstance(space[k], Fixed) or k in values}
        if _key(values) not in seen and (exclude is None or not exclude.contains(values)):
            return values
    return None


class OptunaEngine(Engine):
    """Rounds as Optuna studies: ``RandomSampler``, then TPE (``GPSampler`` with PyTorch).

    Args:
        storage: an Optuna storage URL; default an SQLite file in the run folder. Workers
            (``refiner worker``) that reach the same storage join each round.
        heartbeat_interval: seconds between a running trial's heartbeats; a trial silent for three
            intervals (its worker died) is failed and its slot re-run. The coordinator beats at
            the same interval, so workers notice if it dies.
        run_trials: ``False`` makes the loop's process only coordinate, leaving every trial to workers.
    """

    name = "optuna"
    supports_workers = True

    def __init__(self, storage: str | None = None, heartbeat_interval: int = 10, run_trials: bool = True):
        if storage is not None and (not isinstance(storage, str) or not storage):
            raise ValueError(f"`storage` must be an Optuna storage URL, got {storage!r}")
        if not isinstance(heartbeat_interval, int) or isinstance(heartbeat_interval, bool) or heartbeat_interval < 1:
            raise ValueError(f"`heartbeat_interval` must be a positive integer (seconds), got {heartbeat_interval!r}")
        self.storage = storage
        self.heartbeat_interval = heartbeat_interval
        self.run_trials = bool(run_trials)

    def storage_url(self, run_root: Path) -> str:
        return self.storage or default_storage(run_root.resolve())

    def prepare(self, run_root: Path) -> None:
        if self.storage is not None:
            shared.open_storage(self.storage)  # an unreachable server is refused before the run folder is touched

    def running(self, run: RunContext) -> ContextManager[None]:
        return coordinator_heartbeat(self.storage_url(run.root), run.name, self.heartbeat_interval)

    def close(self, run: RunContext, state: str, message: str | None = None) -> None:
        close_run(self.storage_url(run.root), run.name, run.run_id, state, message)

    def storage_location(self, run: RunContext) -> str | None:
        return self.storage_url(run.root)

    def round_label(self, kind: str, space: SearchSpace) -> str:
        if kind == "random":
            return "Optuna random sampler"
        return {"gp": "Optuna GP sampler", "tpe": "Optuna TPE"}[model_sampler_kind(space)]

    def run_round(self, spec: RoundSpec, on_trial: TrialCallback) -> int:
        return run_round(spec, on_trial, storage=self.storage_url(spec.run.root), study_prefix=spec.run.name,
                         run_id=spec.run.run_id, target=spec.run.target, heartbeat_interval=self.heartbeat_interval,
                         run_trials=self.run_trials)
