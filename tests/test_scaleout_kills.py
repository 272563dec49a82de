"""SIGKILL a worker or the coordinator of a PostgreSQL scale-out run at every phase, resume, check.

One run (a coordinator that also runs trials, and two `refiner worker` processes) lives through a
plan of kill points. The processes are armed while they run (``REFINER_FAILPOINT_FILE`` of
``refiner.failpoints``): the test writes the next point's name into the coordinator's or the
workers' arm file, the first process to reach that checkpoint kills itself with SIGKILL, and the
test arms the next point and starts the dead process again (the same `refiner run` command resumes
the run; a worker is started afresh). So each kill lands in a run already damaged by the ones
before, and each resume is itself exposed to the next point. At the end the run must be whole:
its budget in every round, no configuration twice, no problem for `refiner validate`, every
result stored in the storage recorded in the run folder, no running trial left holding a slot.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from refiner.check import run_problems
from refiner.engines.optuna import shared_study as shared
from refiner.store import RunStore
from test_scaleout import _project

ROUNDS, BUDGET, SLEEP_S = 7, 6, 0.3
MIN_KILLS = 18  # the plan has 28; with one worker a run on this loaded machine landed 23 (with two: 12 to 19)
STEP_TIMEOUT_S = 15  # a point not reached by then is reported as missed (the run may have moved past it)

# (who dies, at which checkpoint), in an order a run reaches them. Names from refiner/engines/optuna
# (optuna_*), refiner/loop.py (trial_*, the analysis), refiner/store.py and jsonio.py (torn_append,
# before_replace) and the objective below (objective_running).
KILL_PLAN = [
    ("coordinator", "optuna_claiming"),    # the coordinator's own trial, inside the claims lock (a PostgreSQL advisory lock)
    ("coordinator", "objective_running"),  # the coordinator mid-evaluation
    ("worker", "optuna_proposed"),         # asked and beating, no slot claimed yet
    ("worker", "optuna_claiming"),         # a worker inside the claims lock
    ("coordinator", "optuna_copying"),     # a worker's result in the storage, not yet in the run folder
    ("coordinator", "optuna_recovering"),  # the resume copying what the killed coordinator left behind
    ("worker", "optuna_claimed"),          # holds a slot, nothing evaluated
    ("coordinator", "trial_evaluated"),    # a result in hand, its trials.jsonl line not written
    ("worker", "objective_running"),       # mid-evaluation
    ("coordinator", "torn_append"),        # halfway through a trials.jsonl or events.jsonl line
    ("worker", "optuna_evaluated"),        # evaluated, the result not stored
    ("coordinator", "optuna_claimed"),
    ("worker", "optuna_record_stored"),    # result stored, Optuna not told (the trial still RUNNING)
    ("worker", "optuna_told"),             # told, before the next trial
    ("coordinator", "optuna_round_closing"),  # the budget recorded, workers still see the round open
    ("coordinator", "optuna_round_closed"),   # between rounds
    ("coordinator", "surrogate_fit"),      # the analysis ...
    ("coordinator", "narrowing"),
    ("coordinator", "before_replace"),     # ... between a temporary file and its rename
    ("coordinator", "decisions_written"),
    ("worker", "worker_idle"),             # a worker between rounds
    ("coordinator", "optuna_round_opened"),
    ("worker", "optuna_claimed"),
    ("coordinator", "optuna_record_stored"),
    ("coordinator", "audit"),              # the audit of earlier cuts (analysis of round 1 on)
    ("worker", "optuna_record_stored"),
    ("coordinator", "optuna_evaluated"),
    ("worker", "optuna_proposed"),
]
# Every phase must see at least one kill (a point can be missed when the run has moved past it).
PHASES = {
    "proposing": {"optuna_proposed"}, "claiming": {"optuna_claiming"}, "claimed": {"optuna_claimed"},
    "evaluating": {"objective_running"}, "evaluated": {"optuna_evaluated", "trial_evaluated"},
    "stored": {"optuna_record_stored"}, "told": {"optuna_told"}, "copying": {"optuna_copying", "torn_append"},
    "recovering": {"optuna_recovering"}, "between rounds": {"optuna_round_closing", "optuna_round_closed", "worker_idle"},
    "analysis": {"surrogate_fit", "narrowing", "before_replace", "decisions_written", "audit"},
    "opening": {"optuna_round_opened"},
}

OBJECTIVE = f"""
import time

from refiner.failpoints import checkpoint


def bowl(p):
    time.sleep({SLEEP_S / 2})
    checkpoint("objective_running")  # a kill point halfway through the evaluation
    time.sleep({SLEEP_S / 2})
    return (p["x"] - 1.0) ** 2 + (p["y"] + 2.0) ** 2
"""


class Cluster:
    """The coordinator and one worker, each restarted when it dies; each armed through its role's file.
    (With two workers a restarted coordinator often found its round already full and never reached
    its in-round points.)"""

    def __init__(self, tmp_path: Path, config: Path, storage: str, name: str):
        self.tmp, self.config, self.storage = tmp_path, config, storage
        self.run_dir = tmp_path / "runs" / name
        self.arm = {"coordinator": tmp_path / "coordinator.arm", "worker": tmp_path / "worker.arm"}
        self.started = 0
        self.coordinator = self._start("coordinator")
        self.workers: list[subprocess.Popen | None] = [None]

    def _start(self, role: str) -> subprocess.Popen:
        self.started += 1
        env = dict(os.environ, REFINER_FAILPOINT_FILE=str(self.arm[role]), PYTHONPATH=os.pathsep.join(
            [str(self.tmp), os.environ.get("PYTHONPATH", "")]))
        args = (["run", str(self.config), "--storage", self.storage, "--heartbeat", "1"] if role == "coordinator"
                else ["worker", str(self.run_dir), "--storage", self.storage, "--wait", "60"])
        out = open(self.tmp / f"{role}-{self.started}.log", "w")
        process = subprocess.Popen([sys.executable, "-m", "refiner.cli", *args], cwd=self.tmp, env=env,
                                   stdout=out, stderr=subprocess.STDOUT, text=True)
        process.log = out.name  # type: ignore[attr-defined]
        return process

    def processes(self) -> list[subprocess.Popen]:
        return [p for p in [self.coordinator, *self.workers] if p is not None]

    def tend(self) -> bool:
        """Restart whatever died; True once the coordinator finished the run."""
        rc = self.coordinator.poll()
        if rc == 0:
            return True
        if rc is not None:
            assert rc == -9, f"the coordinator failed (exit {rc}):\n{_tail(self.coordinator)}"
            self.coordinator = self._start("coordinator")  # the same command resumes the run
        if (self.run_dir / "run.json").exists():  # a worker finds the run's config through run.json
            for i, worker in enumerate(self.workers):
                rc = None if worker is None else worker.poll()
                if worker is None or rc is not None:
                    # 1: it saw the coordinator silent for three heartbeats and stopped, as documented.
                    assert rc in (None, 0, 1, -9), f"a worker failed (exit {rc}):\n{_tail(worker)}"
                    self.workers[i] = self._start("worker")
        return False

    def victim(self, role: str) -> subprocess.Popen | None:
        """The process that took the arm file (renamed it to ``<file>.<pid>``), once it is dead."""
        for path in self.tmp.glob(self.arm[role].name + ".*"):
            pid = int(path.suffix[1:])
            path.unlink()
            [process] = [p for p in self.processes() if p.pid == pid]
            process.wait(timeout=30)
            assert process.returncode == -9, f"pid {pid} took the arm file but did not die by SIGKILL"
            return process
        return None


def _tail(process: subprocess.Popen | None) -> str:
    return "" if process is None else Path(process.log).read_text()[-3000:]  # type: ignore[attr-defined]


def _storage_trials(storage: str, name: str) -> list[optuna.trial.FrozenTrial]:
    rdb = shared.open_storage(storage)
    found = []
    for summary in optuna.study.get_all_study_summaries(rdb):
        if summary.study_name.startswith(f"{name}-round-"):
            found += optuna.load_study(study_name=summary.study_name, storage=rdb).get_trials(deepcopy=False)
    return found


@pytest.mark.slow
def test_sigkill_workers_and_coordinator_at_every_phase_on_postgres_and_resume(tmp_path, postgres_url):
    name = f"kills{os.getpid()}"
    config = _project(tmp_path, name, SLEEP_S, rounds=ROUNDS, budget=BUDGET, objective=OBJECTIVE)
    started_at = time.monotonic()
    cluster = Cluster(tmp_path, config, postgres_url, name)
    killed: list[tuple[str, str]] = []
    missed: list[tuple[str, str]] = []
    finished = False
    for role, point in KILL_PLAN:
        if finished:
            missed.append((role, point))
            continue
        cluster.arm[role].write_text(point)
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while True:
            victim = cluster.victim(role)
            if victim is not None:
                killed.append((role, point))
                print(f"{time.monotonic() - started_at:6.1f} s: killed {role} at {point}")
                break
            finished = cluster.tend()
            if finished or time.monotonic() > deadline:
                cluster.arm[role].unlink(missing_ok=True)
                if cluster.victim(role) is not None:  # taken just before it was withdrawn
                    killed.append((role, point))
                else:
                    missed.append((role, point))
                break
            time.sleep(0.05)
        cluster.tend()  # the dead process starts again at once, exposed to the next point
    # No more kills: let the run finish, restarting what the last kill stopped.
    deadline = time.monotonic() + 180
    while not cluster.tend():
        assert time.monotonic() < deadline, f"the run did not finish:\n{_tail(cluster.coordinator)}"
        time.sleep(0.1)
    for worker in cluster.workers:
        if worker is not None:
            try:
                worker.wait(timeout=30)  # a finished run tells its workers to stop
            except subprocess.TimeoutExpired:
                worker.kill()
                pytest.fail(f"a worker did not stop after the run finished:\n{_tail(worker)}")
    elapsed = time.monotonic() - started_at
    print(f"{len(killed)} kills in {elapsed:.0f} s: {killed}; missed: {missed}; {cluster.started} processes started")


    store = RunStore(cluster.run_dir)
    assert run_problems(store) == []
    assert store.read_run()["state"]["status"] == "finished"
    rows = store.all_trials()
    for k in range(ROUNDS):
        assert len(store.read_trials(k)) == BUDGET, f"round {k} recorded {len(store.read_trials(k))} trials"
    keys = [json.dumps(t.hyperparameters, sort_keys=True) for t in rows]
    assert len(set(keys)) == len(keys) == ROUNDS * BUDGET, "a configuration was recorded twice"
    assert len({t.trial_id for t in rows}) == len(rows)

    trials = _storage_trials(postgres_url, name)
    recorded = {t.trial_id for t in rows}
    stored = {json.loads(t.user_attrs[shared.RECORD])["trial_id"] for t in trials
              if shared.RECORD in t.user_attrs and not t.user_attrs.get(shared.KNOWN)
              and not t.user_attrs.get(shared.SURPLUS)}
    assert stored <= recorded, f"results stored in the storage but never recorded: {sorted(stored - recorded)}"
    zombies = [t.number for t in trials if t.state == optuna.trial.TrialState.RUNNING
               and t.user_attrs.get(shared.CLAIMED) and shared.RECORD not in t.user_attrs]
    assert not zombies, f"running trials still holding a slot: {zombies}"

    # Checked last, so that a run that lands too few kills still reports whether it was left whole.
    # A point can pass while a restarted process is still importing (seconds on a loaded 2-core
    # machine), so the test requires most of the plan and the main phases, and prints the rest.
    hit = {p for _, p in killed}
    print(f"kills: {len(killed)} of {len(KILL_PLAN)} planned; hit {sorted(hit)}; missed {missed}")
    assert len(killed) >= MIN_KILLS, (killed, missed)
    assert {"claiming", "evaluating", "stored", "between rounds", "analysis"} <= {phase for phase, points in PHASES.items() if points & hit}, \
        (killed, missed)
