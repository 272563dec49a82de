"""Damage is noticed: refiner.check.run_problems()/check_run(), `refiner validate RUN_DIR`, `show`, a resume and the
app report run folders whose files disagree, each problem one line naming the file and the repair.

The damaged folders are built from real runs: the issue's case (two writers, trial ids recorded
twice) by interleaving the trial lines of two real runs of the same config into one folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from refiner.check import check_run, run_problems
from refiner import Refiner
from refiner.cli import main
from refiner.errors import DamagedRunError
from refiner.lock import RunLock
from refiner.review import load_run
from refiner.space import SearchSpace
from refiner.store import RunStore

SPACE = SearchSpace.from_dict({"format_version": 1, "parameters": [
    {"name": "x", "type": "float", "low": -5.0, "high": 5.0}, {"name": "y", "type": "float", "low": -5.0, "high": 5.0}]})
PER_ROUND = 8


def bowl(params):
    return (params["x"] - 1.0) ** 2 + (params["y"] + 2.0) ** 2


def _agent(directory: Path, name: str, seed: int = 0) -> Refiner:
    return Refiner(function=bowl, space=SPACE, objective={"name": "loss", "direction": "min"}, rounds=2,
                   trials_per_round=PER_ROUND, directory=directory, project_name=name, seed=seed, engine="optuna",
                   narrowing={"min_trials": 6, "min_cv_score": 0.0})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished runs of the same settings but for the seed: what two writers would each have recorded."""
    base = tmp_path_factory.mktemp("check")
    _agent(base, "a", seed=0).search()
    _agent(base, "b", seed=1).search()
    return base


@pytest.fixture()
def run(runs, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(runs / "a", copy)
    return copy


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _validate(run_dir: Path, capsys) -> tuple[int, list[str]]:
    code = main(["validate", str(run_dir)])
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines() if code else captured.out.strip().splitlines()


def test_a_sound_run_has_no_problems_even_while_a_writer_holds_its_lock(run, capsys):
    assert run_problems(RunStore(run)) == []
    with RunLock(run):
        assert run_problems(RunStore(run)) == []  # the lock files are no stray files
        assert _validate(run, capsys) == (0, [f"{run}: valid run folder"])


def test_two_writers_interleaved_trials_are_reported_by_validate_show_resume_and_the_app(runs, run, capsys):
    # What two `refiner run` processes on one folder left behind (issue 15): both appended every
    # trial to the same files, so each id is there twice, and each round has twice its budget.
    for k in (0, 1):
        mine = (run / "rounds" / str(k) / "trials.jsonl").read_text().splitlines()
        theirs = (runs / "b" / "rounds" / str(k) / "trials.jsonl").read_text().splitlines()
        merged = [line for pair in zip(mine, theirs) for line in pair]
        (run / "rounds" / str(k) / "trials.jsonl").write_text("\n".join(merged) + "\n")
    before = _hashes(run)

    code, lines = _validate(run, capsys)
    assert code == 2
    trials0 = run / "rounds" / "0" / "trials.jsonl"
    assert any(line.startswith(f"{trials0}: {PER_ROUND} trial ids recorded more than once, '") and
               "two processes wrote this run at once - to repair, restore the folder from a backup or start "
               "afresh with --overwrite" in line for line in lines), lines
    assert any(line.startswith(f"{trials0}: {2 * PER_ROUND} trials recorded, more than round 0's budget of "
                               f"{PER_ROUND}") for line in lines), lines
    assert all(" - to repair, " in line and line.startswith(str(run)) for line in lines), lines

    assert main(["show", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and all(line.startswith("refiner: error: ") for line in err) and "recorded more than once" in err[0]

    with pytest.raises(DamagedRunError) as refused:
        _agent(run.parent, "run").search()
    assert any("recorded more than once" in p for p in refused.value.problems)
    assert _hashes(run) == before  # refused untouched

    view = load_run(run.parent, "run")
    assert any("recorded more than once" in p for p in view.problems)


def _edit_json(path: Path, change) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def _edit_line(path: Path, n: int, change) -> None:
    lines = path.read_text().splitlines()
    record = json.loads(lines[n])
    change(record)
    lines[n] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")


def _append_copy(path: Path, trial_id: str) -> None:
    record = json.loads(path.read_text().splitlines()[0])
    record["trial_id"] = trial_id
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def _narrow_x(document):
    document["parameters"][0]["high"] = 0.5


def _set_round(record):
    record["round"] = 0


DAMAGE = {
    # name: (damage, file, words of the problem, words of the repair, blocks a resume)
    "trial of another round": (lambda r: _edit_line(r / "rounds/1/trials.jsonl", 2, _set_round),
                               "rounds/1/trials.jsonl", "1 trials of another round recorded in round 1's file, line 3 "
                               "(round 0)", "move each line to its own round's trials.jsonl or delete it", True),
    "over budget": (lambda r: _append_copy(r / "rounds/0/trials.jsonl", "extra"), "rounds/0/trials.jsonl",
                    f"{PER_ROUND + 1} trials recorded, more than round 0's budget of {PER_ROUND}",
                    "start afresh with --overwrite", True),
    "space not from the decisions": (lambda r: _edit_json(r / "rounds/1/space.json", _narrow_x), "rounds/1/space.json",
                                     "not the space round 0's decisions give ('x' is", "start afresh", True),
    "round 0 space not the initial one": (lambda r: _edit_json(r / "rounds/0/space.json", _narrow_x),
                                          "rounds/0/space.json", "not the space the run was started with",
                                          "start afresh", True),
    "trials missing under a later round": (lambda r: (r / "rounds/0/trials.jsonl").unlink(), "rounds/0/trials.jsonl",
                                           "missing, yet round 1 has started", "restore the folder from a backup", True),
    "finished run without a round": (lambda r: shutil.rmtree(r / "rounds/1"), "rounds/1",
                                      "missing, yet run.json says the run finished", "run again: refiner runs the round again",
                                      False),
    "decisions deleted": (lambda r: (r / "rounds/0/decisions.json").unlink(), "rounds/0/decisions.json", "missing",
                          "run again: refiner recomputes it exactly", False),
    "result deleted": (lambda r: (r / "refined_space.json").unlink(), "refined_space.json", "missing",
                       "run again: it is rebuilt", False),
    "stray file": (lambda r: (r / "rounds/0/notes.txt").write_text("mine"), "rounds/0/notes.txt",
                   "not a file refiner writes", "move it out of the run folder", False),
    "round beyond the run": (lambda r: shutil.copytree(r / "rounds/1", r / "rounds/2"), "rounds/2",
                             "round 2 is beyond the run's 2 rounds", "move it out of the run folder", False),
}


@pytest.mark.parametrize("name", list(DAMAGE))
def test_each_kind_of_damage_is_one_line_naming_the_file_and_the_repair(run, capsys, name):
    damage, file, what, repair, blocks = DAMAGE[name]
    damage(run)
    found = run_problems(RunStore(run))
    assert len(found) == 1, [str(p) for p in found]
    [problem] = found
    assert str(problem).startswith(f"{run / file}: ") and what in str(problem), str(problem)
    assert " - to repair, " in str(problem) and repair in str(problem).split(" - to repair, ")[1], str(problem)
    assert problem.blocks_resume is blocks
    assert _validate(run, capsys) == (2, [str(problem)])  # validate is strict about every problem
    if blocks:
        with pytest.raises(DamagedRunError, match="^" + str(run / file)):
            check_run(RunStore(run))
    else:
        check_run(RunStore(run))  # a resume carries on (and repairs what it recomputes)
