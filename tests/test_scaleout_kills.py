"""SIGKILL a worker or the coordinator of a PostgreSQL scale-out run at every phase, resume, check.

One run (a coordinator that also runs trials, and a `refiner worker`) lives through a plan of kill
points. The processes are armed while they run (``REFINER_FAILPOINT_FILE`` of
``refiner.failpoints``): the test writes the next point's name into the coordinator's or the
workers' arm file, the first process to reach that checkpoint kills itself with SIGKILL, and the
test arms the next point and starts the dead process again (the same `refiner run` command resumes
the run; a worker is started afresh). So each kill lands in a run already damaged by the ones
before, and each resume is itself exposed to the next point. At the end the run must be whole:
its budget in every round, no configuration twice, no problem for `refiner validate`, every
result stored in the storage recorded in the run folder, no running trial left holding a slot.

The kills must not depend on how busy the machine is (beside a second pytest-xdist worker a
restarted process spends many seconds importing, and the survivor used to race through the round
meanwhile, past the armed point; each process is now forked by :func:`cli_processes.start_cli`
from a server that imported Optuna once, which shortens but does not remove that): evaluations
wait while a role has no process up, the time a
process spends starting does not count against a point, and a point counts as missed only once the
run has gone a whole round past it without reaching it; it is then tried once more at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter, deque
from pathlib import Path

import optuna
import pytest

from cli_processes import CliProcess, start_cli
from refiner.check import run_problems
from refiner.engines.optuna import shared_study as shared
from refiner.store import RunStore
from test_scaleout import _project

ROUNDS, BUDGET, SLEEP_S = 7, 6, 0.3
MIN_KILLS = 22  # of the 28 planned (issue 15 asks for at least 20 kill points)
HOLD_MAX_S = 120  # the longest an evaluation waits for a restarted process to come up
STEP_CAP_S = 90  # a point not reached in this much time of its role's process up and running is missed

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
import os
import time

import optuna  # noqa: F401  (what the process imports next, so that the mark below means "up")
import refiner.engines.optuna.engine  # noqa: F401
from refiner.failpoints import checkpoint

if os.environ["KILLS_ROLE"] == "coordinator":
    import refiner.loop  # noqa: F401  (scikit-learn: seconds)

# Imported at start-up by `refiner run` and `refiner worker` alike (the run's function): the process
# is about to take part. The test holds evaluations until every role has a process this far.
open(os.path.join(os.environ["KILLS_READY"], str(os.getpid())), "w").close()


def bowl(p):
    # While a process of the run is (re)starting (imports take seconds on a loaded machine) the test
    # holds new evaluations, so the run does not race through its rounds meanwhile.
    held = time.monotonic()
    while os.path.exists(os.environ["KILLS_HOLD"]) and time.monotonic() - held < {HOLD_MAX_S}:
        time.sleep(0.05)
    time.sleep({SLEEP_S / 2})
    checkpoint("objective_running")  # a kill point halfway through the evaluation
    time.sleep({SLEEP_S / 2})
    return (p["x"] - 1.0) ** 2 + (p["y"] + 2.0) ** 2
"""


class Cluster:
    """The coordinator and one worker, each restarted when it dies; each armed through its role's file.
    (With two workers a restarted coordinator often found its round already full and never reached
    its in-round points.) Each process lists the checkpoints it passes (``REFINER_FAILPOINT_LOG``),
    which tells the test how far the run has got, and marks when it is up (its imports done: seconds
    on a loaded machine); evaluations wait while a role has no process up."""

    def __init__(self, tmp_path: Path, config: Path, storage: str, name: str):
        self.tmp, self.config, self.storage = tmp_path, config, storage
        self.run_dir = tmp_path / "runs" / name
        self.arm = {"coordinator": tmp_path / "coordinator.arm", "worker": tmp_path / "worker.arm"}
        self.hold = tmp_path / "hold"  # present while a role has no process up: evaluations wait
        self.hold.touch()
        self.ready = tmp_path / "ready"  # holds a file named after each process that is up
        self.ready.mkdir()
        self.started = 0
        self.every: dict[int, CliProcess] = {}  # by pid, the dead too: a victim may be restarted before it is found
        self.passed: dict[str, Counter] = {"coordinator": Counter(), "worker": Counter()}  # checkpoints passed, per role
        self._read: dict[Path, int] = {}  # how far each checkpoint list has been read
        self.coordinator = self._start("coordinator")
        self.workers: list[CliProcess | None] = [None]

    def _start(self, role: str) -> CliProcess:
        self.started += 1
        points = self.tmp / f"{role}-{self.started}.points"
        env = dict(os.environ, REFINER_FAILPOINT_FILE=str(self.arm[role]), REFINER_FAILPOINT_LOG=str(points),
                   KILLS_HOLD=str(self.hold), KILLS_READY=str(self.ready), KILLS_ROLE=role,
                   PYTHONPATH=os.pathsep.join([str(self.tmp), os.environ.get("PYTHONPATH", "")]))
        args = (["run", str(self.config), "--storage", self.storage, "--heartbeat", "1"] if role == "coordinator"
                else ["worker", str(self.run_dir), "--storage", self.storage, "--wait", "60"])
        log = self.tmp / f"{role}-{self.started}.log"
        process = start_cli(args, env=env, cwd=self.tmp, log=log)
        process.log, process.points, process.role = log, points, role  # type: ignore[attr-defined]
        self.every[process.pid] = process
        self._read[points] = 0
        return process

    def processes(self) -> list[CliProcess]:
        return [p for p in [self.coordinator, *self.workers] if p is not None]

    def _catch_up(self) -> None:
        """Read the checkpoints the processes passed since the last look (whole lines only)."""
        for process in self.processes():
            path: Path = process.points  # type: ignore[attr-defined]
            try:
                with open(path, "rb") as fh:
                    fh.seek(self._read[path])
                    data = fh.read()
            except FileNotFoundError:
                continue
            done = data.rfind(b"\n") + 1
            self._read[path] += done
            for line in data[:done].decode().splitlines():
                self.passed[process.role][line.split()[2]] += 1  # type: ignore[attr-defined]

    def count(self, role: str, point: str) -> int:
        """How often the processes of ``role`` have passed ``point`` so far (all of them, the dead too)."""
        self._catch_up()
        return self.passed[role][point]

    def up(self, role: str) -> bool:
        """A process of ``role`` is running and past its imports (it has imported the run's function)."""
        return any(p.poll() is None and (self.ready / str(p.pid)).exists()
                   for p in self.processes() if p.role == role)  # type: ignore[attr-defined]

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
        if self.up("coordinator") and self.up("worker"):
            self.hold.unlink(missing_ok=True)
        else:
            self.hold.touch()
        return False

    def victim(self, role: str) -> CliProcess | None:
        """The process that took the arm file (renamed it to ``<file>.<pid>``), once it is dead."""
        for path in self.tmp.glob(self.arm[role].name + ".*"):
            pid = int(path.suffix[1:])
            path.unlink()
            process = self.every[pid]
            process.wait(timeout=30)
            assert process.returncode == -9, f"pid {pid} took the arm file but did not die by SIGKILL"
            return process
        return None


def _tail(process: CliProcess | None) -> str:
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
    # A point counts as missed only once the run has moved on without reaching it: a whole round closed
    # after the one open when it was armed (every phase but the recovery recurs each round), or, as a
    # backstop, STEP_CAP_S of the victim's role up and running. Time a restarted process spends
    # importing does not count. A missed point is tried once more at the end of the plan.
    plan = deque((role, point, 1) for role, point in KILL_PLAN)
    while plan:
        role, point, attempt = plan.popleft()
        if finished:
            missed.append((role, point))
            continue
        cluster.arm[role].write_text(point)
        closed_at_arm = cluster.count("coordinator", "optuna_round_closed")
        up_s, last = 0.0, time.monotonic()
        while True:
            victim = cluster.victim(role)
            if victim is not None:
                killed.append((role, point))
                print(f"{time.monotonic() - started_at:6.1f} s, {closed_at_arm} rounds closed: killed {role} at {point}"
                      f"{' (second try)' if attempt > 1 else ''}")
                break
            finished = cluster.tend()
            now = time.monotonic()
            up_s += now - last if cluster.up(role) else 0.0
            last = now
            moved_on = cluster.count("coordinator", "optuna_round_closed") >= closed_at_arm + 2
            if finished or moved_on or up_s > STEP_CAP_S:
                cluster.arm[role].unlink(missing_ok=True)
                if cluster.victim(role) is not None:  # taken just before it was withdrawn
                    killed.append((role, point))
                else:
                    print(f"{time.monotonic() - started_at:6.1f} s: missed {role} at {point} "
                          f"({'finished' if finished else 'a round passed' if moved_on else f'{up_s:.0f} s up'})")
                    if attempt == 1 and not finished:
                        plan.append((role, point, 2))
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
    hit = {p for _, p in killed}
    print(f"kills: {len(killed)} of {len(KILL_PLAN)} planned; hit {sorted(hit)}; missed {missed}")
    assert len(killed) >= MIN_KILLS, (killed, missed)
    assert {"claiming", "evaluating", "stored", "between rounds", "analysis"} <= {phase for phase, points in PHASES.items() if points & hit}, \
        (killed, missed)
