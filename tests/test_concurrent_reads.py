"""A reader polling a run folder while `refiner run` writes it never sees a partial file."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from cli_processes import start_cli
from refiner.check import check_run
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
    check_run(store)
    return 2 + 4 * len(store.rounds()) + int(store.refined_space_file.exists())


@pytest.mark.slow
def test_polling_reader_never_sees_a_partial_file(tmp_path):
    (tmp_path / "slow_branin.py").write_text(SLOW_BRANIN)
    (tmp_path / "branin_space.json").write_text((EXAMPLES / "branin_space.json").read_text())
    config = (EXAMPLES / "branin.toml").read_text().replace('"branin:branin"', '"slow_branin:branin"')
    (tmp_path / "run.toml").write_text(config)
    run_dir = tmp_path / "run"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    writer = start_cli(["run", tmp_path / "run.toml", "--run-dir", run_dir, "--quiet"], env=env)
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


@pytest.mark.slow
def test_the_review_apps_loader_never_sees_a_partial_file(tmp_path):
    """The functions the review page calls (list the runs, pick the latest, key the cache, load a run),
    in a loop while `refiner run` writes. Any exception but RunFolderError fails the test; a
    RunFolderError must be one line naming the run's folder, and since every write is atomic
    none is expected at all."""
    from refiner import review
    from refiner.errors import RunFolderError

    (tmp_path / "slow_branin.py").write_text(SLOW_BRANIN)
    (tmp_path / "branin_space.json").write_text((EXAMPLES / "branin_space.json").read_text())
    config = (EXAMPLES / "branin.toml").read_text().replace('"branin:branin"', '"slow_branin:branin"')
    (tmp_path / "run.toml").write_text(config)
    runs = tmp_path / "runs"
    run_dir = runs / "live"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    writer = start_cli(["run", tmp_path / "run.toml", "--run-dir", run_dir, "--quiet"], env=env)
    loads = refused = 0
    seen_trials = seen_rounds = 0
    statuses = set()
    deadline = time.time() + 240
    while writer.poll() is None and time.time() < deadline:
        names = review.list_runs(runs)
        if not names:
            continue  # run.json not written yet: the app says "no runs yet"
        assert names == ["live"] and review.latest_run(runs, names) == "live"
        review.run_signature(run_dir)
        try:
            view = review.load_run(runs, "live")
        except RunFolderError as exc:
            message = str(exc)
            assert message.startswith(str(run_dir)) and "\n" not in message, message
            refused += 1
            continue
        loads += 1
        statuses.add(view.status)
        # The record only grows: a reader never sees fewer trials or rounds than before.
        assert len(view.trials) >= seen_trials and len(view.rounds) >= seen_rounds
        seen_trials, seen_rounds = len(view.trials), len(view.rounds)
        for r in view.rounds:
            if r.decisions is not None:
                assert r.surrogate is not None and r.space is not None
    _, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err[-2000:]
    final = review.load_run(runs, "live")
    assert final.status == "finished" and len(final.trials) == 30 and final.has_refined_space
    print(f"review.load_run: {loads} complete loads while the run wrote, {refused} refused, statuses {statuses}")
    assert refused == 0, "an atomic writer leaves nothing for the app to refuse"
    assert loads > 20 and "running" in statuses, (loads, statuses)
