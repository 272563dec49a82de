"""The review gate (refiner.gate): a run that waits after each round until a person approves.

Runs are real (a cheap function objective); the waiting run is a thread or a separate
`refiner run` process, and approvals come through `refiner approve` as a person would give them.
"""

from __future__ import annotations

import json
import signal
import textwrap
import threading
import time
from pathlib import Path

import pytest

from cli_processes import CliProcess, start_cli
import refiner
from refiner import schemas
from refiner.check import run_problems
from refiner.cli import main as cli_main
from refiner.config import load_run_config
from refiner.gate import ReviewGate, approve, pending_round, read_approval
from refiner.liveness import stopped_note, writer_liveness
from refiner.overrides import write_overrides
from refiner.space import Float, Int, SearchSpace
from refiner.store import RunStore
from refiner.trial import Objective

SPACE = SearchSpace([Float("x", -5.0, 5.0), Int("n", 1, 64)])
LOSS = Objective("loss", "min")
NARROWING = {"min_trials": 4, "min_cv_score": 0.0}


def bowl(p):
    return (p["x"] - 1.0) ** 2 + ((p["n"] - 20) / 20) ** 2


def _agent(root: Path, engine: str = "keras-tuner", **kw) -> refiner.Refiner:
    return refiner.Refiner(function=bowl, space=SPACE, objective=LOSS, rounds=2, trials_per_round=6,
                           directory=root, project_name="gated", seed=0, narrowing=NARROWING, engine=engine,
                           verbose=0, review="each-round", **kw)


def _wait_status(store: RunStore, status: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if store.exists():
            try:
                run = store.read_run()
            except Exception:  # noqa: BLE001 - a read racing the first write
                run = None
            if run and run["state"]["status"] == status:
                return run
        time.sleep(0.1)
    raise AssertionError(f"status never became {status!r}: {store.read_run()['state'] if store.exists() else None}")


def _in_thread(agent: refiner.Refiner) -> tuple[threading.Thread, list]:
    errors: list = []

    def go() -> None:
        try:
            agent.search()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread, errors


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["keras-tuner", "optuna"])
def test_the_run_waits_after_round_0_until_approved_with_an_override(tmp_path, engine, capsys):
    agent = _agent(tmp_path, engine)
    store = agent.store
    thread, errors = _in_thread(agent)
    run = _wait_status(store, "awaiting_review")
    assert run["state"]["current_round"] == 0 and "refiner approve" in run["state"]["message"]
    time.sleep(1.0)  # still waiting: round 1 has not started without an approval
    assert thread.is_alive() and not store.has_space(1) and pending_round(store) == 0
    assert cli_main(["show", str(store.root)]) == 0
    assert "status: awaiting_review" in capsys.readouterr().out

    edited = {"name": "x", "type": "float", "low": 0.5, "high": 1.5}
    write_overrides(store, 0, [{"name": "x", "action": "edit", "after": edited, "note": "near 1"}])
    assert cli_main(["approve", str(store.root), "--note", "looks right"]) == 0
    assert "approved round 0 with overrides of x" in capsys.readouterr().out
    thread.join(120)
    assert not thread.is_alive() and not errors, errors

    approval = read_approval(store, 0)
    assert schemas.problems(approval, "approval") == []
    assert approval["by"] == "cli" and approval["overrides"] == ["x"] and approval["note"] == "looks right"
    assert {p.name: p.to_dict() for p in store.read_space(1)}["x"] == edited  # round 1 searched the edited range
    assert all(0.5 <= t.hyperparameters["x"] <= 1.5 for t in store.read_trials(1) if not t.reserve)
    events = [e["event"] for e in store.read_events()]
    assert events.index("review_requested") < events.index("review_approved") < events.index("overrides_applied")
    [approved] = [e for e in store.read_events() if e["event"] == "review_approved"]
    assert approved["by"] == "cli" and approved["round"] == 0 and approved["user"]
    assert store.read_run()["state"]["status"] == "finished"
    assert read_approval(store, 1) is None  # the last round has no gate
    assert run_problems(store) == []  # approval.json is part of the record, not a stray file
    assert cli_main(["show", str(store.root)]) == 0
    assert "approved with refiner approve" in capsys.readouterr().out


@pytest.mark.slow
def test_a_timeout_goes_on_with_refiners_proposals(tmp_path):
    agent = _agent(tmp_path, review_timeout=0.5)
    agent.search()
    approval = read_approval(agent.store, 0)
    assert approval["by"] == "timeout" and "user" not in approval and approval["overrides"] == []
    decisions = agent.store.read_decisions(0)
    assert agent.store.read_space(1).to_dict() == decisions["next_space"]
    assert agent.store.read_run()["state"]["status"] == "finished"


def test_review_settings_are_checked():
    with pytest.raises(ValueError, match="`review` must be one of 'off', 'each-round', got 'always'"):
        ReviewGate.coerce("always")
    with pytest.raises(ValueError, match="`review_timeout` must be a positive number of seconds"):
        ReviewGate.coerce("each-round", -1)
    with pytest.raises(ValueError, match="`review_timeout` needs `review`"):
        ReviewGate.coerce(None, 10)
    assert ReviewGate.coerce(True) == ReviewGate("each-round") and ReviewGate.coerce("off") is None


def _config(tmp_path: Path, extra: str) -> Path:
    (tmp_path / "bowl_objective.py").write_text(textwrap.dedent("""
        def bowl(p):
            return (p["x"] - 1.0) ** 2 + ((p["n"] - 20) / 20) ** 2
    """))
    SPACE.to_json(tmp_path / "space.json")
    path = tmp_path / "gated.toml"
    path.write_text(textwrap.dedent(f"""
        name = "gated"
        function = "bowl_objective:bowl"
        space = "space.json"
        directory = "{tmp_path / 'runs'}"
        {extra}
        [objective]
        name = "loss"
        direction = "min"
        [search]
        rounds = 2
        trials_per_round = 6
        seed = 0
        [narrowing]
        min_trials = 4
        min_cv_score = 0.0
    """))
    return path


def test_the_config_takes_review_and_refuses_bad_values(tmp_path):
    config = load_run_config(_config(tmp_path, 'review = "each-round"\nreview_timeout = 30'))
    assert config.review == "each-round" and config.review_timeout == 30
    assert load_run_config(_config(tmp_path, 'review = "off"')).review is None
    with pytest.raises(refiner.errors.ValidationError) as info:
        load_run_config(_config(tmp_path, 'review = "sometimes"\nreview_timeout = 0'))
    assert any(p.startswith("review: 'sometimes' is not one of") for p in info.value.problems), info.value.problems
    assert any(p.startswith("review_timeout: 0 is less than or equal to") for p in info.value.problems)
    with pytest.raises(refiner.errors.ValidationError, match="review_timeout: only used with review"):
        load_run_config(_config(tmp_path, "review_timeout = 5"))


def _approve_fails(args: list[str], capsys) -> str:
    assert cli_main(["approve", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.slow
def test_approving_what_does_not_wait_is_refused_with_one_line(tmp_path, capsys):
    plain = refiner.Refiner(function=bowl, space=SPACE, objective=LOSS, rounds=2, trials_per_round=6, seed=0,
                            directory=tmp_path, project_name="plain", narrowing=NARROWING, verbose=0)
    plain.search()
    assert "does not wait for review" in _approve_fails([str(plain.store.root)], capsys)
    assert "not a run folder" in _approve_fails([str(tmp_path / "nothing")], capsys)
    gated = _agent(tmp_path, review_timeout=0.2)
    gated.search()
    root = str(gated.store.root)
    assert "is not waiting for review (status finished)" in _approve_fails([root], capsys)
    assert "--round 7: the run has rounds 0 to 1" in _approve_fails([root, "--round", "7"], capsys)
    assert "--round 0: round 0 was already approved (timeout" in _approve_fails([root, "--round", "0"], capsys)
    assert "--round 1: the last round has no gate" in _approve_fails([root, "--round", "1"], capsys)


def _refiner(*args: str, cwd: Path) -> CliProcess:
    """`refiner ARGS...` as its own process, both streams in one (forked with TensorFlow already
    imported: cli_processes)."""
    return start_cli(args, cwd=cwd, merge_output=True)


@pytest.mark.slow
def test_killed_while_waiting_the_run_is_seen_stopped_and_resumes_waiting(tmp_path, capsys):
    config = _config(tmp_path, 'review = "each-round"')
    store = RunStore(tmp_path / "runs" / "gated")
    first = _refiner("run", str(config), cwd=tmp_path)
    try:
        _wait_status(store, "awaiting_review", timeout=120)
        assert writer_liveness(store.root).alive and stopped_note(store.root, store.read_run()) is None
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        first.kill()
    run = store.read_run()
    assert run["state"]["status"] == "awaiting_review"  # what the killed run last wrote
    note = stopped_note(store.root, run)
    assert note.startswith(f"stopped (its writer (pid {first.pid} on host")
    assert f"refiner run {config} --run-dir {store.root}" in note
    assert cli_main(["show", str(store.root)]) == 0
    assert "liveness: stopped" in capsys.readouterr().out

    second = _refiner("run", str(config), cwd=tmp_path)  # resumed: waits again, runs nothing
    try:
        deadline = time.monotonic() + 120  # run.json said awaiting_review already: wait for the new request
        while [e["event"] for e in store.read_events()].count("review_requested") < 2:
            assert time.monotonic() < deadline and second.poll() is None, "the resumed run did not wait again"
            time.sleep(0.1)
        assert store.read_run()["state"]["status"] == "awaiting_review" and writer_liveness(store.root).alive
        time.sleep(0.5)
        assert second.poll() is None and not store.has_space(1) and len(store.read_trials(0)) == 6
        assert cli_main(["approve", str(store.root), "--round", "0"]) == 0
        out, _ = second.communicate(timeout=120)
    finally:
        second.kill()
    assert second.returncode == 0, out
    assert store.read_run()["state"]["status"] == "finished" and len(store.read_trials(1)) == 6
    assert [e["event"] for e in store.read_events()].count("review_requested") == 2


@pytest.mark.slow
def test_an_approval_given_while_no_run_is_going_is_recorded_and_the_resume_goes_on(tmp_path):
    config = _config(tmp_path, 'review = "each-round"')
    store = RunStore(tmp_path / "runs" / "gated")
    first = _refiner("run", str(config), cwd=tmp_path)
    try:
        _wait_status(store, "awaiting_review", timeout=120)
        first.send_signal(signal.SIGTERM)  # a clean stop: recorded as interrupted
        first.wait(30)
    finally:
        first.kill()
    assert store.read_run()["state"]["status"] == "interrupted"
    document = approve(store, by="cli")
    assert document["round"] == 0
    events = store.read_events()
    assert events[-1]["event"] == "review_approved" and "resume it" in store.read_run()["state"]["message"]
    resumed = _refiner("run", str(config), cwd=tmp_path)
    out, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out
    names = [e["event"] for e in store.read_events()]
    assert names.count("review_approved") == 1 and names.count("review_requested") == 1
    assert json.loads((store.round_dir(0) / "approval.json").read_text())["by"] == "cli"
