"""The run folder: atomic, schema-checked writes; torn JSON-lines tails; corrupt files named clearly."""

from __future__ import annotations

import json

import pytest

from refiner.errors import DiskWriteError, RunFolderError, ValidationError
from refiner.space import Float, Int, SearchSpace
from refiner.jsonio import atomic_write_text
from refiner.store import RunStore
from refiner.trial import Trial, TrialState


def _trial(i: int, score: float | None = 1.0, status: TrialState = TrialState.COMPLETE) -> Trial:
    return Trial(trial_id=f"0-{i:02d}", round=0, hyperparameters={"x": float(i)}, score=score, status=status,
                 metrics={"loss": score} if score is not None else {}, duration_s=0.1)


def test_trials_round_trip_in_order(tmp_path):
    store = RunStore(tmp_path)
    written = [_trial(0, 3.0), _trial(1, None, TrialState.FAILED), _trial(2, 1.5)]
    for t in written:
        store.append_trial(t)
    assert store.read_trials(0) == written


def test_torn_last_line_is_ignored_then_cut_before_next_append(tmp_path):
    store = RunStore(tmp_path)
    store.append_trial(_trial(0))
    path = store.round_dir(0) / "trials.jsonl"
    with open(path, "a") as fh:
        fh.write('{"trial_id": "0-01", "rou')  # a crash mid-append
    assert [t.trial_id for t in store.read_trials(0)] == ["0-00"]
    store.append_trial(_trial(2))
    assert [t.trial_id for t in store.read_trials(0)] == ["0-00", "0-02"]
    assert path.read_text().count("\n") == 2


def test_corrupt_middle_line_names_file_and_line(tmp_path):
    store = RunStore(tmp_path)
    store.append_trial(_trial(0))
    path = store.round_dir(0) / "trials.jsonl"
    path.write_text(path.read_text() + "not json\n" + json.dumps(_trial(1).to_dict()) + "\n")
    with pytest.raises(RunFolderError, match=r"trials.jsonl: line 2: not valid JSON"):
        store.read_trials(0)


def test_schema_invalid_record_is_refused_on_write_and_read(tmp_path):
    store = RunStore(tmp_path)
    bad = Trial(trial_id="0-00", round=0, hyperparameters={}, score=None, status=TrialState.COMPLETE)
    with pytest.raises(ValidationError, match="score"):
        store.append_trial(bad)  # a complete trial must carry a numeric score
    path = store.round_dir(0) / "trials.jsonl"
    assert not path.exists()  # nothing was written
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({**_trial(0).to_dict(), "status": "weird"}) + "\n")
    with pytest.raises(RunFolderError, match=r"line 1: status"):
        store.read_trials(0)


def test_nan_is_never_written(tmp_path):
    store = RunStore(tmp_path)
    with pytest.raises(ValueError):
        store.append_trial(_trial(0, score=float("nan")))
    assert not (store.round_dir(0) / "trials.jsonl").exists() or store.read_trials(0) == []


def test_space_round_trip_and_corrupt_space(tmp_path):
    store = RunStore(tmp_path)
    space = SearchSpace([Float("lr", 1e-4, 1e-1, log=True), Int("units", 8, 64, step=8)])
    store.write_space(0, space)
    assert store.read_space(0) == space
    (store.round_dir(1)).mkdir(parents=True)
    (store.round_dir(1) / "space.json").write_text('{"format_version": 1, "parameters": [{"name": "a", "type": "float", "low": 2, "high": 1}]}')
    with pytest.raises(RunFolderError, match=r"parameters\[0\]"):
        store.read_space(1)
    assert store.rounds() == [0, 1]


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "a.json"
    atomic_write_text(target, "old")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(DiskWriteError, match=r"a\.json: cannot write \(disk full\)"):  # one line naming the file
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary file left behind


def test_missing_run_json_is_a_clear_error(tmp_path):
    with pytest.raises(RunFolderError, match="run.json: missing"):
        RunStore(tmp_path).read_run()


def test_stale_temporaries_from_a_crash_are_removed_but_kerastuner_files_kept(tmp_path):
    store = RunStore(tmp_path)
    store.round_dir(0).mkdir(parents=True)
    (tmp_path / ".run.json.abc.tmp").write_text("{")
    (store.round_dir(0) / ".space.json.x1.tmp").write_text("")
    store.kt_dir(0).mkdir()
    (store.kt_dir(0) / ".theirs.tmp").write_text("")
    assert store.remove_stale_temporaries() == 2
    assert [p.name for p in tmp_path.rglob("*.tmp")] == [".theirs.tmp"]


def test_atomic_writes_get_a_new_files_mode_and_keep_a_changed_one(tmp_path):
    """A run folder shared with a colleague (or a worker under another account) is readable as far
    as the umask allows: the JSON files get the mode the appended .jsonl files get, not mkstemp's 0600."""
    import os
    import stat

    appended = tmp_path / "events.jsonl"
    with open(appended, "a") as fh:  # how the run's .jsonl files are created
        fh.write("{}\n")
    atomic_write_text(tmp_path / "run.json", "{}")
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
    assert mode(tmp_path / "run.json") == mode(appended) == 0o666 & ~_umask()
    os.chmod(tmp_path / "run.json", 0o640)  # a person narrowed it: the next write keeps that
    atomic_write_text(tmp_path / "run.json", '{"a": 1}')
    assert mode(tmp_path / "run.json") == 0o640 and (tmp_path / "run.json").read_text() == '{"a": 1}'


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
