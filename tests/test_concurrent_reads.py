"""A reader polling a run folder while `refiner run` writes it never sees a partial file."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from refiner.store import RunStore

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

SLOW_BRANIN = '''
import math, time

def branin(params):
    time.sleep(0.05)
    x1, x2 = params["x1"], params["x2"]
    return ((x2 - 5.1 / (4 * math.pi ** 2) * x1 ** 2 + 5 / math.pi * x1 - 6) ** 2
            + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10)
'''


def read_everything(store: RunStore) -> int:
    """Read and validate every file (as a resume or the app does); raises RunFolderError on anything
    partial. Returns how many files that was."""
    if not store.exists():
        return 0
    store.check()
    return 2 + 4 * len(store.rounds()) + int(store.refined_space_file.exists())


@pytest.mark.slow
def test_polling_reader_never_sees_a_partial_file(tmp_path):
    (tmp_path / "slow_branin.py").write_text(SLOW_BRANIN)
    (tmp_path / "branin_space.json").write_text((EXAMPLES / "branin_space.json").read_text())
    config = (EXAMPLES / "branin.toml").read_text().replace('"branin:branin"', '"slow_branin:branin"')
    (tmp_path / "run.toml").write_text(config)
    run_dir = tmp_path / "run"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    writer = subprocess.Popen([sys.executable, "-m", "refiner.cli", "run", str(tmp_path / "run.toml"),
                               "--run-dir", str(run_dir), "--quiet"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    store = RunStore(run_dir)
    reads = polls = 0
    deadline = time.time() + 240
    while writer.poll() is None and time.time() < deadline:
        reads += read_everything(store)  # any partial file raises here and fails the test
        polls += 1
    _, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err[-2000:]
    reads += read_everything(store)
    assert len(store.all_trials()) == 30
    print(f"{polls} polls, {reads} file reads while the run wrote, none partial")
    assert polls > 50 and reads > 500, (polls, reads)
