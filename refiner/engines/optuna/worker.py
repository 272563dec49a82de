"""A worker: takes part in the rounds of a run that ``refiner run`` coordinates on Optuna.

::

    refiner run examples/branin.toml --storage postgresql://tuner@db-host/refiner     # machine A
    refiner worker runs/branin --storage postgresql://tuner@db-host/refiner            # machines B, C, ...

The worker needs the storage and the objective (the run config's function or hypermodel and its
data), nothing else: it reads which round is open, and that round's space, budget and seeds,
from the storage (:mod:`refiner.engines.optuna.shared_study`). It keeps going from round to round
without restarting, and stops when the run finishes or when no round has opened for ``wait_s``.
The coordinator alone writes the run folder.

With an epoch budget (``fidelity.total``) the worker starts a trial only while the round's epoch
allowance, which the coordinator writes into the round study, lets it: the same rule and the same
lock as the coordinator's own starts (:mod:`refiner.engines.optuna.shared_study`, *The epoch budget*).

If the coordinator dies (its heartbeat silent for three intervals while the run is open), the
worker finishes the open round's free slots, whose results a resumed coordinator records, and then
stops with one line (:class:`CoordinatorGoneError`, exit code 1) instead of waiting ``wait_s``.
A coordinator that stopped cleanly (Ctrl-C, a failed round) says so and workers wait for a resume.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from refiner.engines.base import RoundSpec, RunContext
from refiner.engines.evaluation import Evaluation
from refiner.engines.optuna import shared_study as shared
from refiner.engines.optuna.engine import Participant, fail_stale
from refiner.errors import CoordinatorGoneError, RefinerError
from refiner.failpoints import checkpoint
from refiner.fidelity import EpochAllowance, Fidelity, StoppingRule
from refiner.space import SearchSpace
from refiner.trial import Objective

__all__ = ["work"]

log = logging.getLogger(__name__)


def work(
    project: str,
    storage: str,
    *,
    target_name: str,
    function: Callable[[dict[str, Any]], Any] | None = None,
    hypermodel: Callable[[Any], Any] | None = None,
    fit_kwargs: Mapping[str, Any] | None = None,
    wait_s: float = 600.0,
    poll_s: float = 0.5,
) -> int:
    """Run trials of ``project``'s open rounds until the run finishes; returns how many this worker ran."""
    import optuna

    if (function is None) == (hypermodel is None):
        raise ValueError("give exactly one of `function` and `hypermodel`")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    plain = shared.open_storage(storage)
    token = f"{socket.gethostname()}:{os.getpid()}"
    ran = 0
    finished_studies: set[str] = set()
    idle_since = time.monotonic()
    announced = False
    watch = shared.CoordinatorWatch()
    while True:
        control = shared.read_control(plain, project)
        state = None if control is None else control.get("state")
        if state == "finished":
            log.info("the run finished; this worker ran %d trials", ran)
            return ran
        if state == "open" and control is not None and control["study"] not in finished_studies:
            study_name = control["study"]
            ran_here = _take_part(storage, study_name, token, target_name, function, hypermodel, fit_kwargs or {},
                                  plain, project, poll_s, watch)
            ran += ran_here
            finished_studies.add(study_name)
            idle_since = time.monotonic()
            continue
        checkpoint("worker_idle")  # between rounds, or waiting for a round to open
        gone = watch.gone(plain, project) if state in ("open", "between_rounds", "resuming") else None
        if gone is not None:
            raise CoordinatorGoneError(
                f"the coordinator of {project} ({gone.get('who')}) has sent no heartbeat for {gone['silent_s']:.0f} s "
                f"(three intervals): it stopped without closing the run. This worker ran {ran} trials, kept in the "
                f"storage; resume the run with the same `refiner run` command, then start the workers again")
        if not announced:
            log.info("waiting for %s to open a round in the storage (up to %.0f s idle)", project, wait_s)
            announced = True
        if time.monotonic() - idle_since > wait_s:
            log.info("no round opened for %.0f s; stopping after %d trials", wait_s, ran)
            return ran
        time.sleep(poll_s)


def _take_part(storage_url: str, study_name: str, token: str, target_name: str,
               function: Callable[..., Any] | None, hypermodel: Callable[..., Any] | None,
               fit_kwargs: Mapping[str, Any], plain: Any, project: str, poll_s: float,
               watch: shared.CoordinatorWatch) -> int:
    import optuna

    probe = optuna.load_study(study_name=study_name, storage=plain)
    attrs = shared.round_attrs(probe)
    if attrs.get("target") not in (None, target_name):
        raise RefinerError(f"worker: this worker runs {target_name}, but the run coordinates {attrs['target']}; "
                           "give the run's config with --config")
    rdb = shared.open_storage(storage_url, attrs.get("heartbeat_interval"))
    study = optuna.load_study(study_name=study_name, storage=rdb)
    objective = Objective.coerce(attrs["objective"])
    fidelity = Fidelity.coerce(attrs.get("fidelity"))
    evaluation = Evaluation(objective, function=function, hypermodel=hypermodel, fit_kwargs=fit_kwargs,
                            executions_per_trial=int(attrs.get("executions_per_trial", 1)),
                            trial_retries=int(attrs.get("trial_retries", 0)), seed=attrs.get("seed"),
                            fidelity=fidelity)
    if fidelity is not None:
        # Judged against the curves already stored in this round's study, as the coordinator judges
        # against the run's record (the earlier rounds' curves stay with the coordinator).
        evaluation.stopping = StoppingRule(fidelity, objective.direction)
        for found in shared.records(study.get_trials(deepcopy=False)):
            evaluation.stopping.observe(found.get("curve"))
    spec = RoundSpec(
        run=RunContext(name=project, root=Path("."), run_id=str(attrs.get("run_id")), target=target_name),
        round_index=int(attrs["round"]),
        kind="random" if attrs["kind"] == "random" else "model",  # "bayesian" in studies of refiner 0.1
        space=SearchSpace.from_dict(attrs["space"], source=f"study {study_name}"),
        objective=objective, budget=int(attrs["budget"]), evaluation=evaluation, workdir=Path("."),
        seed=attrs.get("seed"), reserve=bool(attrs.get("reserve", False)),
        exclude=None if attrs.get("exclude") is None else SearchSpace.from_dict(attrs["exclude"], source=f"study {study_name}"),
    )
    # With fidelity.total, the round's epoch allowance: claims pass it under the claims lock
    # (shared.take_slot), as the coordinator's do; absent (no budget, or an older coordinator): no check.
    epochs = EpochAllowance.from_dict(attrs.get("epochs"))
    participant = Participant(study, rdb, spec, spec.budget, attrs.get("heartbeat_interval"), token=token,
                              epochs=epochs)
    log.info("round %d: joined %s", spec.round_index, study_name)
    ran = 0
    outcome = None
    while True:
        look = participant.last_look
        if outcome == "ran" and look is not None and shared.live_count(look) + 1 < spec.budget:
            # The claim just made saw a free slot beyond its own: propose again straight away. The
            # round was open then, and a round that closed or went to a resumed coordinator since
            # refuses the next claim (shared.take_slot reads the control and counts the slots
            # under the claims lock), so reading the control and the study here first would only
            # cost two storage calls per trial. The last look's length seeds the sampler.
            outcome = participant.step(look)
        else:
            control = shared.read_control(plain, project) or {}
            if control.get("study") != study_name or control.get("state") != "open":
                return ran  # the coordinator has the round's budget and moved on
            trials = study.get_trials(deepcopy=False)
            if shared.result_count(trials) >= spec.budget:
                return ran
            if shared.live_count(trials) >= spec.budget or not shared.may_start(epochs, trials):
                # No slot, or the round's epochs are committed: wait for a slot or epochs to free up
                # (a trial that stops early trains less than its share), or for the coordinator to
                # end the round (it does once nothing runs and the allowance is spent).
                outcome = None
                if watch.gone(plain, project) is not None:
                    return ran  # no free slot left and nobody to record the round: the caller says so
                fail_stale(study)  # a slot held by a dead worker frees up here
                time.sleep(poll_s)
                continue
            outcome = participant.step(trials)
        if outcome == "ran":
            ran += 1
            log.info("round %d: trial done (%d by this worker)", spec.round_index, ran)
        elif outcome == "exhausted":
            return ran
