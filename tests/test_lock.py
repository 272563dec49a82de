"""One writer per run folder (refiner.lock): real `refiner run` processes, real lock files.

A second writer is refused with exit code 2 and one line naming the holder; a holder killed with
SIGKILL leaves a marker the next run takes over; a holder on another host is waited out only when
its heartbeat has stopped; the review app's override save works while a run holds the folder.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections import Counter
from pathlib import Path

import pytest

from cli_processes import CliProcess, start_cli
import refiner.lock as lock
from refiner.check import check_run
from refiner import Refiner
from refiner.errors import RefinerError
from refiner.lock import RunLock, RunLockedError, holder
from refiner.overrides import write_overrides
from refiner.space import SearchSpace
from refiner.store import WRITER_LOCK, RunStore

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PER_ROUND = 8

SLOW_BRANIN = '''
import math, os, time

CALLS = [0]

def branin(params):
    # From the third trial on, wait while the test holds the gate: the run is then surely going
    # when a second process starts, however slowly that one imports.
    CALLS[0] += 1
    while CALLS[0] >= 3 and os.path.exists(os.environ["GATE"]):
        time.sleep(0.05)
    x1, x2 = params["x1"], params["x2"]
    return ((x2 - 5.1 / (4 * math.pi ** 2) * x1 ** 2 + 5 / math.pi * x1 - 6) ** 2
            + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10)
'''


def _project(tmp_path: Path) -> Path:
    (tmp_path / "slow.py").write_text(SLOW_BRANIN)
    (tmp_path / "branin_space.json").write_text((EXAMPLES / "branin_space.json").read_text())
    config = (EXAMPLES / "branin.toml").read_text().replace('function = "branin:branin"', 'function = "slow:branin"')
    config = config.replace("rounds = 3", "rounds = 2").replace("trials_per_round = 10", f"trials_per_round = {PER_ROUND}")
    (tmp_path / "run.toml").write_text(config)
    return tmp_path / "run.toml"


def _start(config: Path, run_dir: Path) -> CliProcess:
    """`refiner run` as its own process (forked with TensorFlow already imported: cli_processes)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", GATE=str(config.parent / "gate"))
    return start_cli(["run", config, "--run-dir", run_dir, "--quiet"], env=env, cwd=config.parent)


def _wait_for(predicate, what: str, process: CliProcess | None = None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"process ended before {what}: {process.communicate()}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _trial_count(run_dir: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in run_dir.glob("rounds/*/trials.jsonl"))


def _assert_intact(run_dir: Path) -> None:
    store = RunStore(run_dir)
    check_run(store)
    for k in store.rounds():
        ids = [t.trial_id for t in store.read_trials(k)]
        assert len(ids) == PER_ROUND and len(set(ids)) == PER_ROUND, (k, Counter(ids))
    assert store.read_run()["state"]["status"] == "finished"


@pytest.mark.slow
def test_a_second_refiner_run_on_the_same_folder_exits_2_naming_the_holder_and_leaves_the_run_intact(tmp_path):
    config = _project(tmp_path)
    run_dir = tmp_path / "runs" / "branin"
    (tmp_path / "gate").touch()
    first = _start(config, run_dir)
    try:
        _wait_for(lambda: _trial_count(run_dir) >= 2, "the first run to record trials", first)
        started = time.monotonic()
        second = _start(config, run_dir)
        out, err = second.communicate(timeout=120)
        assert first.poll() is None, "the first run should still be running when the second is refused"
        (tmp_path / "gate").unlink()
        assert second.returncode == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"refiner: error: {run_dir}: another refiner process is writing this run folder")
        assert f"pid {first.pid} on host {socket.gethostname()}" in lines[0]
        assert f"kill {first.pid}" in lines[0] and "run.toml" in lines[0]
        assert time.monotonic() - started < 60
        out, err = first.communicate(timeout=300)
    finally:
        first.kill()  # a failure above leaves it waiting on the gate file
    assert first.returncode == 0, err
    _assert_intact(run_dir)
    # Released on exit: nothing of the lock is left, and the next writer gets it at once.
    assert not (run_dir / WRITER_LOCK).exists() and holder(run_dir) is None
    with RunLock(run_dir).acquire(wait_s=0):
        pass


@pytest.mark.slow
def test_a_lock_left_by_a_sigkilled_run_is_taken_over_and_the_run_completes(tmp_path):
    config = _project(tmp_path)
    run_dir = tmp_path / "runs" / "branin"
    (tmp_path / "gate").touch()
    first = _start(config, run_dir)
    try:
        _wait_for(lambda: _trial_count(run_dir) >= 2, "the first run to record trials", first)
    finally:
        first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    stale = holder(run_dir)
    assert stale is not None and stale.pid == first.pid  # the dead holder's marker is still there
    (tmp_path / "gate").unlink()
    resumed = _start(config, run_dir)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    _assert_intact(run_dir)


def test_a_second_writer_in_python_is_refused_and_the_first_keeps_the_lock(tmp_path):
    with RunLock(tmp_path / "run", command="first writer") as first:
        with pytest.raises(RunLockedError) as refused:
            RunLock(tmp_path / "run").acquire(wait_s=0.2)
        assert refused.value.holder is not None and refused.value.holder.pid == os.getpid()
        assert "`first writer` (pid" in str(refused.value) and "\n" not in str(refused.value)
        assert first.held
    # Released: the next writer gets it at once, and a folder nothing was written to is removed.
    with RunLock(tmp_path / "run"):
        pass
    assert not (tmp_path / "run").exists()


def _foreign_marker(root: Path, age_s: float) -> None:
    """The marker a live or dead `refiner run` on another machine leaves on a shared filesystem."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / WRITER_LOCK
    path.write_text(f"filelock/2\npid=4242\nhost=elsewhere-{os.getpid()}\nmode=lease\ntoken={'ab' * 16}\n"
                    f"duration={lock.LEASE_S!r}\n")
    then = time.time() - age_s
    os.utime(path, (then, then))


def test_a_lock_held_on_another_host_is_refused_while_its_heartbeat_is_fresh(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "LEASE_S", 1.0)
    _foreign_marker(tmp_path / "run", age_s=0.0)
    with pytest.raises(RunLockedError, match=rf"pid 4242 on host elsewhere-{os.getpid()}.*`kill 4242` on host elsewhere"):
        RunLock(tmp_path / "run").acquire(wait_s=0.2)
    assert (tmp_path / "run" / WRITER_LOCK).exists()  # another host's lock is never broken early


def test_a_lock_from_another_host_whose_heartbeat_stopped_is_taken_over_after_the_lease(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "LEASE_S", 1.0)
    _foreign_marker(tmp_path / "run", age_s=60.0)
    started = time.monotonic()
    with RunLock(tmp_path / "run") as taken:
        assert taken.held and holder(tmp_path / "run").pid == os.getpid()
    assert time.monotonic() - started >= 1.0  # filelock watched the marker unchanged for a lease first


SPACE = SearchSpace.from_dict({"format_version": 1, "parameters": [
    {"name": "x", "type": "float", "low": -5.0, "high": 5.0}, {"name": "y", "type": "float", "low": -5.0, "high": 5.0}]})


def _bowl(params):
    return (params["x"] - 1.0) ** 2 + (params["y"] + 2.0) ** 2


def test_overrides_are_saved_while_a_run_holds_the_folder_and_refused_once_the_next_round_started(tmp_path):
    agent = Refiner(function=_bowl, space=SPACE, objective={"name": "loss", "direction": "min"}, rounds=1, engine="optuna",
                    trials_per_round=8, directory=tmp_path, project_name="run", seed=0,
                    narrowing={"min_trials": 6, "min_cv_score": 0.0})
    agent.search()
    store = RunStore(tmp_path / "run")
    edit = [{"name": "x", "action": "reject"}]
    with RunLock(store.root, command="refiner run (between rounds)"):
        write_overrides(store, 0, edit)  # the app's main use while a run goes on
        assert (store.round_dir(0) / "overrides.json").exists()
        # events.jsonl has one writer: the running run, which records `overrides_applied` itself.
        assert "overrides_written" not in [e["event"] for e in store.read_events()]
    write_overrides(store, 0, edit)  # no run going: the save holds the writer lock for a moment
    assert [e["event"] for e in store.read_events()].count("overrides_written") == 1
    assert not (store.root / WRITER_LOCK).exists()

    store.write_space(1, SPACE)  # round 1 started with round 0's decisions
    with pytest.raises(RefinerError, match="round 1 has already started with round 0's decisions"):
        write_overrides(store, 0, [])
    assert json.loads((store.round_dir(0) / "overrides.json").read_text())["overrides"][0]["name"] == "x"
