"""Disk trouble: a full disk or a read-only run folder ends the run with one line naming the file,
nothing recorded before is lost, and the same command resumes it once the disk is fixed.

The faults are injected at every write the store makes (``refiner.failpoints``: the N-th write
raises ENOSPC or EROFS, an append first writing half its line); a real small tmpfs is filled up
where this machine lets the test mount one.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from cli_processes import CliProcess, start_cli
from refiner.check import run_problems
from refiner import Refiner, failpoints
from refiner.errors import DiskWriteError
from refiner.space import SearchSpace
from refiner.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SPACE = SearchSpace.from_dict({"format_version": 1, "parameters": [
    {"name": "x", "type": "float", "low": -5.0, "high": 5.0}, {"name": "y", "type": "float", "low": -5.0, "high": 5.0}]})
BUDGETS = [2, 1]  # three trials in all: below the surrogate's minimum, so each run takes a second, not ten


def bowl(params):
    return (params["x"] - 1.0) ** 2 + (params["y"] + 2.0) ** 2


def _agent(directory: Path, name: str) -> Refiner:
    return Refiner(function=bowl, space=SPACE, objective={"name": "loss", "direction": "min"}, rounds=2,
                   initial_trials=BUDGETS[0], trials_per_round=BUDGETS[1], directory=directory, project_name=name,
                   seed=0)


@pytest.fixture()
def writes(tmp_path, monkeypatch):
    """Every write an uninterrupted run makes, in order (the paths relative to its folder)."""
    log = tmp_path / "writes.log"
    monkeypatch.setattr(failpoints, "_fault_log", str(log))
    failpoints.arm_disk_fault(0, 0)
    _agent(tmp_path, "reference").search()
    monkeypatch.setattr(failpoints, "_fault_log", None)
    root = tmp_path / "reference"
    return [str(Path(line.split(" ", 2)[2]).relative_to(root)) for line in log.read_text().splitlines()]


def _assert_complete(store: RunStore) -> None:
    assert run_problems(store) == []
    assert store.read_run()["state"]["status"] == "finished"
    for k, budget in enumerate(BUDGETS):
        ids = [t.trial_id for t in store.read_trials(k)]
        assert len(ids) == budget and len(set(ids)) == budget, Counter(ids)


def _fault_then_resume(tmp_path: Path, writes: list[str], at: int, error: int) -> None:
    name = f"fault{at}-{errno.errorcode[error]}"
    store = RunStore(tmp_path / name)
    failpoints.arm_disk_fault(error, at)
    try:
        with pytest.raises(DiskWriteError) as stopped:
            _agent(tmp_path, name).search()
    finally:
        failpoints.arm_disk_fault(0, 0)
    message = str(stopped.value)
    assert "\n" not in message
    assert message.startswith(f"{store.root / writes[at - 1]}: cannot write ({os.strerror(error)}); everything "
                              f"recorded before is kept"), (at, message)
    # Nothing recorded before is lost: every trial line written before the fault is there.
    if store.exists():
        assert not [p for p in run_problems(store) if p.blocks_resume], [str(p) for p in run_problems(store)]
        recorded = sum(len(store.read_trials(k)) for k in store.rounds())
        assert recorded == sum(1 for w in writes[: at - 1] if w.endswith("trials.jsonl")), at
    else:
        # Only the lock's note was written before: nothing was recorded, and no empty folder is left.
        assert set(writes[: at - 1]) <= {".writer.json"} and not store.root.exists(), (at, writes[:at])
    _agent(tmp_path, name).search()  # the disk is fixed: the same call resumes
    _assert_complete(store)


def test_a_full_disk_or_a_read_only_folder_at_every_write_loses_nothing_and_resumes(tmp_path, writes):
    assert len(writes) > 20 and {"run.json", "events.jsonl", "rounds/0/trials.jsonl", "rounds/0/decisions.json",
                                 "rounds/1/space.json", "refined_space.json", ".writer.json"} <= set(writes)
    for at in range(1, len(writes) + 1):
        _fault_then_resume(tmp_path, writes, at, errno.ENOSPC if at % 2 else errno.EROFS)


def _project(tmp_path: Path, gated: bool = False) -> Path:
    gate = '''
    while os.path.exists(os.environ.get("GATE", "")) and CALLS[0] >= 3:
        time.sleep(0.05)''' if gated else ""
    (tmp_path / "gated.py").write_text(f'''
import math, os, time

CALLS = [0]

def branin(params):
    CALLS[0] += 1{gate}
    x1, x2 = params["x1"], params["x2"]
    return ((x2 - 5.1 / (4 * math.pi ** 2) * x1 ** 2 + 5 / math.pi * x1 - 6) ** 2
            + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10)
''')
    (tmp_path / "branin_space.json").write_text((EXAMPLES / "branin_space.json").read_text())
    config = (EXAMPLES / "branin.toml").read_text().replace('function = "branin:branin"', 'function = "gated:branin"')
    config = config.replace("rounds = 3", "rounds = 2").replace("trials_per_round = 10", "trials_per_round = 6")
    (tmp_path / "run.toml").write_text(config)
    return tmp_path / "run.toml"


def _cli(config: Path, run_dir: Path, **env: str) -> CliProcess:
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", GATE=str(config.parent / "gate"),
                       PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **env)
    return start_cli(["run", config, "--run-dir", run_dir, "--quiet"], env=environment, cwd=config.parent)


@pytest.mark.slow
def test_refiner_run_on_a_full_disk_exits_2_with_one_line_and_the_same_command_resumes(tmp_path):
    config = _project(tmp_path)
    run_dir = tmp_path / "run"
    # The 12th write of this run is a trial line of round 0 (run.json, events, space, then trials).
    stopped = _cli(config, run_dir, REFINER_DISK_FAULT="ENOSPC:12")
    out, err = stopped.communicate(timeout=300)
    assert stopped.returncode == 2, err
    lines = _refiner_lines(err)
    assert len(lines) == 1 and lines[0].startswith(f"refiner: error: {run_dir}/"), lines
    assert "cannot write (No space left on device); everything recorded before is kept" in lines[0]
    assert not [p for p in run_problems(RunStore(run_dir)) if p.blocks_resume]
    resumed = _cli(config, run_dir)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    store = RunStore(run_dir)
    assert run_problems(store) == [] and [len(store.read_trials(k)) for k in range(2)] == [6, 6]


def _refiner_lines(stderr: str) -> list[str]:
    """refiner's own lines (TensorFlow's C++ start-up chatter on stderr is not ours to count)."""
    return [line for line in stderr.splitlines() if line.startswith("refiner")]


def _mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"this machine does not let the test mount a tmpfs: {done.stderr.strip()}")


def _fill(where: Path) -> Path:
    """Fill the filesystem ``where`` lies on to the last byte."""
    filler = where / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


@pytest.mark.slow
def test_a_real_full_tmpfs_mid_run_exits_2_naming_the_file_and_a_read_only_one_refuses_writers_not_readers(tmp_path):
    config = _project(tmp_path, gated=True)
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "4m")
    try:
        run_dir = disk / "run"
        (tmp_path / "gate").touch()
        run = _cli(config, run_dir)
        deadline = time.monotonic() + 120
        while not (run_dir / "rounds/0/trials.jsonl").exists() or \
                len((run_dir / "rounds/0/trials.jsonl").read_text().splitlines()) < 2:
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()
            time.sleep(0.05)
        before = (run_dir / "rounds/0/trials.jsonl").read_text()
        filler = _fill(disk)
        (tmp_path / "gate").unlink()
        out, err = run.communicate(timeout=300)
        assert run.returncode == 2, err
        lines = _refiner_lines(err)
        assert len(lines) == 1 and lines[0].startswith(f"refiner: error: {disk}/"), lines
        assert "No space left on device" in lines[0] or "disk is full" in lines[0], lines
        print(f"the full tmpfs stopped the run with: {lines[0]}")
        # The trials recorded before the disk filled up are all there, and a resume is not refused.
        assert (run_dir / "rounds/0/trials.jsonl").read_text().startswith(before.rstrip("\n"))
        assert not [p for p in run_problems(RunStore(run_dir)) if p.blocks_resume]
        filler.unlink()
        resumed = _cli(config, run_dir)
        out, err = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, err
        store = RunStore(run_dir)
        assert run_problems(store) == [] and [len(store.read_trials(k)) for k in range(2)] == [6, 6]

        # Read-only (the kernel refuses to remount a filesystem read-only while a run has files open
        # for writing, so mid-run EROFS is the failpoint test's): a writer is refused at its first
        # write, the lock, in one line; readers need no lock and still work.
        before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        refused = _cli(config, run_dir)
        out, err = refused.communicate(timeout=300)
        assert refused.returncode == 2, err
        assert _refiner_lines(err) == [f"refiner: error: {run_dir / '.writer.lock'}: cannot write (Read-only file "
                                       f"system); everything recorded before is kept - free some space or make the "
                                       f"folder writable, then run the same command again to resume"]
        shown = subprocess.run([sys.executable, "-m", "refiner.cli", "show", str(run_dir)], capture_output=True,
                               text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), check=False)
        assert shown.returncode == 0 and "== round 1" in shown.stdout, shown.stderr
        assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
