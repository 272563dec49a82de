"""Crash and resume for real: SIGKILL a `refiner run` subprocess at many moments, resume, compare.

Each `refiner run` is its own process, started by :func:`cli_processes.run_cli` from a fork server
that imported TensorFlow once (a fresh interpreter would spend seconds on that import at each of
the dozens of starts). The kill points are the named checkpoints of ``refiner.failpoints`` (between a temporary file and
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
import time
from collections import Counter
from pathlib import Path

import pytest

from cli_processes import run_cli, start_cli
from refiner.check import check_run
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


def _run(config: Path, run_dir: Path, calls: Path, failpoint: int | str = "", log: Path | None = None,
         fresh: bool = False):
    """`refiner run` forked with TensorFlow already imported (cli_processes); ``fresh``: in a new
    interpreter (its own hash seed and NumPy state), as the reference run is."""
    env = dict(os.environ, CALLS_LOG=str(calls), TF_CPP_MIN_LOG_LEVEL="2", REFINER_FAILPOINT=str(failpoint))
    if log is not None:
        env["REFINER_FAILPOINT_LOG"] = str(log)
    return run_cli(["run", config, "--run-dir", run_dir, "--quiet"], env=env, timeout=300, fresh=fresh)


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
    assert _run(config, reference_dir, tmp_path / "reference_calls.log", log=reference_log, fresh=True).returncode == 0
    reference = RunStore(reference_dir)
    total = len(_checkpoints(reference_log))
    assert total > 100

    rng = random.Random(KILL_SEED)
    run_dir, calls, log = tmp_path / "killed", tmp_path / "calls.log", tmp_path / "kills.log"
    killed_at: list[str] = []
    # Each process dies within its first `reach` checkpoints (a resumed one repeats about four at
    # start-up), so the run creeps forward and is killed in every phase before it can finish.
    # total // 10 (15 of 158) lands 37 kills of 9 kinds with this seed; total // 12 landed 59, three
    # times the 20 asked for, each one a process start (seconds of imports), and total // 8 only 23.
    reach = max(6, total // 10)
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

    # A configuration is evaluated again only when the kill came after it ran and before it was
    # recorded: at `trial_evaluated`, or halfway through appending its trials.jsonl line (a
    # `torn_append` right after `trial_evaluated`; other torn appends are events.jsonl lines).
    names = _checkpoints(log)
    marks = [line.endswith("KILL") for line in log.read_text().splitlines()]
    unrecorded = sum(1 for i, name in enumerate(names) if marks[i] and (
        name == "trial_evaluated" or (name == "torn_append" and i > 0 and names[i - 1] == "trial_evaluated")))
    evaluations = Counter(calls.read_text().splitlines())
    repeats = sum(n - 1 for n in evaluations.values())
    assert repeats <= unrecorded, (repeats, unrecorded, kinds)
    assert len(evaluations) == 30


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_says_how_to_resume(tmp_path):
    config = _project(tmp_path)
    (tmp_path / "counted.py").write_text(OBJECTIVE.replace("    x1, x2", "    import time; time.sleep(0.3)\n    x1, x2"))
    run_dir = tmp_path / "run"
    env = dict(os.environ, CALLS_LOG=str(tmp_path / "calls.log"), TF_CPP_MIN_LOG_LEVEL="2")
    process = start_cli(["run", config, "--run-dir", run_dir], env=env)
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
    resumed = run_cli(["run", config, "--run-dir", run_dir, "--quiet"], env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert len(RunStore(run_dir).all_trials()) == 30


KERAS_MODEL = '''
def build_model(hp):
    import keras

    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(hp.Int("units", 8, 32, step=8), activation=hp.Choice("activation", ["relu", "tanh"])),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(hp.Float("learning_rate", 1e-3, 1e-1, sampling="log")),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def load_data():
    from sklearn.datasets import load_digits

    digits = load_digits()
    return {"x": (digits.data[:240] / 16.0).astype("float32"), "y": digits.target[:240]}
'''
KERAS_CONFIG = '''
name = "tiny_keras"
hypermodel = "tiny_keras:build_model"
data = "tiny_keras:load_data"
[objective]
name = "val_accuracy"
direction = "max"
[search]
rounds = 2
trials_per_round = 3
seed = 0
[fit]
epochs = 1
batch_size = 64
validation_split = 0.25
verbose = 0
'''
# Each process dies at the first checkpoint of the drawn name: after a trial was recorded or before,
# halfway through a JSON line, between a temporary file and its rename, around the analysis.
KERAS_KILL_POINTS = ["trial_recorded", "trial_evaluated", "torn_append", "before_replace", "surrogate_fit",
                     "narrowing", "decisions_write"]
KERAS_KILL_SEED = 5


@pytest.mark.slow
def test_sigkill_a_keras_hypermodel_run_loses_and_duplicates_no_trial(tmp_path):
    (tmp_path / "tiny_keras.py").write_text(KERAS_MODEL)
    config = tmp_path / "run.toml"
    config.write_text(KERAS_CONFIG)
    run_dir, log = tmp_path / "run", tmp_path / "kills.log"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", REFINER_FAILPOINT_LOG=str(log))

    def run(failpoint: str = "") -> subprocess.CompletedProcess:
        return run_cli(["run", config, "--run-dir", run_dir, "--quiet"], env=dict(env, REFINER_FAILPOINT=failpoint),
                       timeout=120)

    rng = random.Random(KERAS_KILL_SEED)
    plan = rng.sample(KERAS_KILL_POINTS, 4)
    killed_at: list[str] = []
    recorded_before: list[list[str]] = []
    for target in plan:
        result = run(target)
        if result.returncode == 0:
            break  # the rest of the run never reached this point
        assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
        killed_at.append(target)
        recorded_before.append([t.trial_id for t in RunStore(run_dir).all_trials()])
    final = run()
    assert final.returncode == 0, final.stderr[-2000:]
    print(f"keras kill seed {KERAS_KILL_SEED}: killed at {killed_at}; trials recorded after each kill: "
          f"{[len(r) for r in recorded_before]}")
    assert len(killed_at) >= 3

    store = RunStore(run_dir)
    check_run(store)  # every JSON document and line validates
    _validate_all(run_dir)
    ids = [t.trial_id for t in store.all_trials()]
    assert len(ids) == len(set(ids)) == 2 * 3, ids  # the budget, each trial exactly once
    for k in store.rounds():
        assert len(store.read_trials(k)) == 3
    for before in recorded_before:  # nothing recorded before a kill was lost or rewritten
        assert ids[: len(before)] == before
    assert all(t.ok and 0.0 <= t.score <= 1.0 for t in store.all_trials())
    assert json.loads((run_dir / "run.json").read_text())["state"]["status"] == "finished"
