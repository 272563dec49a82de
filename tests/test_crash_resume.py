"""Crash and resume for real: SIGKILL a `refiner run` subprocess at many moments, resume, compare.

The kill points are the named checkpoints of ``refiner.failpoints`` (between a temporary file and
its rename, halfway through a JSON line, after a trial ran but before it was recorded, around the
surrogate and the narrowing), drawn at random with a recorded seed. After every kill the same
command resumes the run; at the end the run must equal an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from refiner import schemas
from refiner.store import RunStore

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
KILL_SEED = 20261127
MAX_ATTEMPTS = 80
ANALYSIS = ("surrogate_fit", "narrowing", "decisions_write", "decisions_written")

OBJECTIVE = '''
import json, math, os

def branin(params):
    with open(os.environ["CALLS_LOG"], "a") as fh:
        fh.write(json.dumps(params, sort_keys=True) + "\\n")
    x1, x2 = params["x1"], params["x2"]
    return ((x2 - 5.1 / (4 * math.pi ** 2) * x1 ** 2 + 5 / math.pi * x1 - 6) ** 2
            + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10)
'''


def _project(tmp_path: Path) -> Path:
    (tmp_path / "counted.py").write_text(OBJECTIVE)
    (tmp_path / "branin_space.json").write_text((EXAMPLES / "branin_space.json").read_text())
    config = (EXAMPLES / "branin.toml").read_text().replace('function = "branin:branin"', 'function = "counted:branin"')
    assert "counted:branin" in config
    (tmp_path / "run.toml").write_text(config)
    return tmp_path / "run.toml"


def _run(config: Path, run_dir: Path, calls: Path, failpoint: int | str = "", log: Path | None = None):
    env = dict(os.environ, CALLS_LOG=str(calls), TF_CPP_MIN_LOG_LEVEL="2", REFINER_FAILPOINT=str(failpoint))
    if log is not None:
        env["REFINER_FAILPOINT_LOG"] = str(log)
    return subprocess.run([sys.executable, "-m", "refiner.cli", "run", str(config), "--run-dir", str(run_dir), "--quiet"],
                          env=env, capture_output=True, text=True, timeout=300)


def _checkpoints(log: Path) -> list[str]:
    return [line.split()[2] for line in log.read_text().splitlines()]


def _validate_all(run_dir: Path) -> None:
    store = RunStore(run_dir)
    store.read_run()
    store.read_events()
    for k in store.rounds():
        store.read_space(k), store.read_trials(k), store.read_surrogate(k), store.read_decisions(k)
    store.read_refined_space()
    for path in run_dir.rglob("*.tmp"):
        raise AssertionError(f"temporary file left behind: {path}")


@pytest.mark.slow
def test_sigkill_at_random_checkpoints_loses_nothing_and_reproduces_the_run(tmp_path):
    config = _project(tmp_path)
    # The uninterrupted reference, which also lists every checkpoint a full run passes.
    reference_dir, reference_log = tmp_path / "reference", tmp_path / "reference.log"
    assert _run(config, reference_dir, tmp_path / "reference_calls.log", log=reference_log).returncode == 0
    reference = RunStore(reference_dir)
    total = len(_checkpoints(reference_log))
    assert total > 100

    rng = random.Random(KILL_SEED)
    run_dir, calls, log = tmp_path / "killed", tmp_path / "calls.log", tmp_path / "kills.log"
    killed_at: list[str] = []
    # Each process dies within its first `reach` checkpoints (a resumed one repeats only a few at
    # start-up), so the run creeps forward and is killed in every phase before it can finish.
    reach = max(6, total // 12)
    for _ in range(MAX_ATTEMPTS):
        # About one kill in seven targets the analysis between rounds, which is a sliver of the checkpoints.
        target = rng.choice(ANALYSIS) if rng.random() < 0.15 else rng.randint(1, reach)
        result = _run(config, run_dir, calls, failpoint=target, log=log)
        if result.returncode == 0:
            break  # the target lay beyond what was left of the run: it finished
        assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
        killed_at.append([line for line in log.read_text().splitlines() if line.endswith("KILL")][-1].split()[2])
    final = _run(config, run_dir, calls)
    assert final.returncode == 0, final.stderr[-2000:]

    kinds = Counter(killed_at)
    print(f"kill seed {KILL_SEED}: {len(killed_at)} kills at {dict(kinds)}")
    assert len(killed_at) >= 20
    assert len(kinds) >= 6, "kills should land in several kinds of moment"

    _validate_all(run_dir)
    store = RunStore(run_dir)
    for k in reference.rounds():
        got, want = store.read_trials(k), reference.read_trials(k)
        assert [t.trial_id for t in got] == [t.trial_id for t in want]  # each exactly once, none lost
        assert [(t.hyperparameters, t.score) for t in got] == [(t.hyperparameters, t.score) for t in want]
        assert store.read_decisions(k) == reference.read_decisions(k)
    assert store.read_refined_space() == reference.read_refined_space()

    # A configuration is evaluated again only when the kill came after it ran and before it was recorded.
    evaluations = Counter(calls.read_text().splitlines())
    repeats = sum(n - 1 for n in evaluations.values())
    assert repeats <= kinds["trial_evaluated"], (repeats, kinds)
    assert len(evaluations) == 30


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_says_how_to_resume(tmp_path):
    config = _project(tmp_path)
    (tmp_path / "counted.py").write_text(OBJECTIVE.replace("    x1, x2", "    import time; time.sleep(0.3)\n    x1, x2"))
    run_dir = tmp_path / "run"
    env = dict(os.environ, CALLS_LOG=str(tmp_path / "calls.log"), TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.Popen([sys.executable, "-m", "refiner.cli", "run", str(config), "--run-dir", str(run_dir)],
                               env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run_dir / "rounds" / "0" / "trials.jsonl").exists():
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "run the same command again to resume" in err
    state = json.loads((run_dir / "run.json").read_text())["state"]
    schemas.validate(json.loads((run_dir / "run.json").read_text()), "run")
    assert state["status"] == "interrupted"
    recorded = len(RunStore(run_dir).all_trials())
    assert 0 < recorded < 30
    resumed = subprocess.run([sys.executable, "-m", "refiner.cli", "run", str(config), "--run-dir", str(run_dir), "--quiet"],
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert len(RunStore(run_dir).all_trials()) == 30
