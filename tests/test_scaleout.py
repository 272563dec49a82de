"""Scale-out on the Optuna engine: one coordinator and several `refiner worker` processes.

The PostgreSQL tests run against a real server on 127.0.0.1: the one `.ci/run` starts
(``REFINER_TEST_POSTGRES``), or else one this module starts and stops itself with
``scripts/throwaway-postgres``. Workers are real processes; one is killed with SIGKILL mid-trial.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import optuna
import pytest

from cli_processes import CliProcess, start_cli
from refiner.check import check_run
from refiner import failpoints
from engine_kit import round_spec
from refiner.engines.optuna import shared_study as shared
from refiner.engines.optuna.engine import Participant, run_round
from refiner.space import Float, SearchSpace
from refiner.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
ROUNDS, BUDGET = 3, 8


def _project(tmp_path: Path, name: str, sleep_s: float, rounds: int = ROUNDS, budget: int = BUDGET,
             objective: str | None = None) -> Path:
    """A run config over a sleeping 2-D bowl: each trial takes `sleep_s` seconds (or `objective`,
    the source of a module defining `bowl(p)`)."""
    (tmp_path / "sleepy.py").write_text(objective or textwrap.dedent(f"""
        import time

        def bowl(p):
            time.sleep({sleep_s})
            return (p["x"] - 1.0) ** 2 + (p["y"] + 2.0) ** 2
    """))
    (tmp_path / "space.json").write_text(json.dumps({"format_version": 1, "parameters": [
        {"name": "x", "type": "float", "low": -5.0, "high": 5.0},
        {"name": "y", "type": "float", "low": -5.0, "high": 5.0},
    ]}))
    config = tmp_path / "run.toml"
    config.write_text(textwrap.dedent(f"""
        name = "{name}"
        directory = "runs"
        function = "sleepy:bowl"
        space = "space.json"
        engine = "optuna"
        [objective]
        name = "loss"
        direction = "min"
        [search]
        rounds = {rounds}
        trials_per_round = {budget}
        seed = 0
    """))
    return config


def _refiner(*args: str, cwd: Path) -> CliProcess:
    return start_cli(args, cwd=cwd, merge_output=True)


def _finish(process: CliProcess, timeout: float = 240) -> str:
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
        pytest.fail(f"process {process.args} did not finish:\n{out[-3000:]}")
    return out


def _assert_complete_and_unique(run_dir: Path) -> list[dict]:
    store = RunStore(run_dir)
    check_run(store)  # every file validates
    assert store.read_run()["state"]["status"] == "finished"
    rows = [t for k in range(ROUNDS) for t in store.read_trials(k)]
    for k in range(ROUNDS):
        assert len(store.read_trials(k)) == BUDGET, f"round {k} recorded {len(store.read_trials(k))} trials"
    keys = [json.dumps(t.hyperparameters, sort_keys=True) for t in rows]
    assert len(set(keys)) == len(keys) == ROUNDS * BUDGET, "a configuration was evaluated twice"
    assert len({t.trial_id for t in rows}) == len(rows)
    return rows


def _workers_of(storage: str, name: str) -> set[str]:
    found = set()
    for k in range(ROUNDS):
        study = optuna.load_study(study_name=f"{name}-round-{k}", storage=shared.normalise_url(storage))
        found |= {t.user_attrs[shared.CLAIMED] for t in study.trials if shared.RECORD in t.user_attrs}
    return found


@pytest.mark.slow
def test_coordinator_and_three_workers_on_postgres_survive_a_killed_worker(tmp_path, postgres_url):
    name = f"scaleout{os.getpid()}"
    config = _project(tmp_path, name, sleep_s=0.6)
    coordinator = _refiner("run", str(config), "--storage", postgres_url, "--heartbeat", "1", "--no-trials", cwd=tmp_path)
    run_dir = tmp_path / "runs" / name
    deadline = time.monotonic() + 60
    while not (run_dir / "run.json").exists():
        assert coordinator.poll() is None, _finish(coordinator)
        assert time.monotonic() < deadline, "the coordinator did not start the run"
        time.sleep(0.1)
    workers = [_refiner("worker", str(run_dir), "--storage", postgres_url, "--wait", "60", cwd=tmp_path)
               for _ in range(3)]
    victim = workers[0]

    # Kill the first worker while it is inside one of round 1's trials.
    killed_trial = None
    storage = shared.open_storage(postgres_url)
    deadline = time.monotonic() + 120
    while killed_trial is None:
        assert time.monotonic() < deadline, "worker 0 never ran a trial of round 1"
        assert coordinator.poll() is None, _finish(coordinator)
        try:
            study = optuna.load_study(study_name=f"{name}-round-1", storage=storage)
        except KeyError:
            time.sleep(0.1)
            continue
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            # A claimed trial is inside the objective (one killed before its claim holds no slot).
            if str(t.user_attrs.get(shared.CLAIMED, "")).endswith(f":{victim.pid}"):
                victim.send_signal(signal.SIGKILL)
                killed_trial = t.number
                break
        time.sleep(0.05)

    out = _finish(coordinator)
    assert coordinator.returncode == 0, out
    victim.wait()
    for worker in workers[1:]:
        worker_out = _finish(worker, timeout=60)
        assert worker.returncode == 0 and "worker done" in worker_out, worker_out

    rows = _assert_complete_and_unique(run_dir)
    assert len(rows) == ROUNDS * BUDGET  # the total equals the budget: the lost trial was replaced
    study = optuna.load_study(study_name=f"{name}-round-1", storage=storage)
    lost = study.trials[killed_trial]
    assert lost.state == optuna.trial.TrialState.FAIL and shared.RECORD not in lost.user_attrs  # failed as stale
    assert lost.params and json.dumps(lost.params, sort_keys=True) not in {
        json.dumps(t.hyperparameters, sort_keys=True) for t in rows}
    assert len(_workers_of(postgres_url, name)) == 3  # every worker ran trials, the coordinator none


@pytest.mark.slow
def test_workers_of_a_sigkilled_coordinator_finish_its_round_stop_with_one_line_and_a_resume_completes(
        tmp_path, postgres_url):
    name = f"deadcoord{os.getpid()}"
    config = _project(tmp_path, name, sleep_s=0.4)
    coordinator = _refiner("run", str(config), "--storage", postgres_url, "--heartbeat", "1", "--no-trials",
                           cwd=tmp_path)
    run_dir = tmp_path / "runs" / name
    deadline = time.monotonic() + 60
    while not (run_dir / "run.json").exists():  # a worker finds the run's config through run.json
        assert coordinator.poll() is None and time.monotonic() < deadline, "the coordinator did not start the run"
        time.sleep(0.1)
    workers = [_refiner("worker", str(run_dir), "--storage", postgres_url, "--wait", "600", cwd=tmp_path)
               for _ in range(2)]
    deadline = time.monotonic() + 120
    while not (run_dir / "rounds" / "0" / "trials.jsonl").exists() or \
            len((run_dir / "rounds" / "0" / "trials.jsonl").read_text().splitlines()) < 2:
        assert coordinator.poll() is None and time.monotonic() < deadline, "no trial was recorded"
        assert all(w.poll() is None for w in workers), [_finish(w) for w in workers if w.poll() is not None]
        time.sleep(0.05)
    coordinator.send_signal(signal.SIGKILL)
    coordinator.wait()
    killed_at = time.monotonic()
    for worker in workers:  # not the 600 s they would wait for a round: three heartbeats after the round's slots
        out = _finish(worker, timeout=90)
        assert worker.returncode == 1, out
        [line] = [x for x in out.splitlines() if x.startswith("refiner: error:")]
        assert f"the coordinator of {name} (" in line and "has sent no heartbeat for" in line, line
        assert "resume the run with the same `refiner run` command" in line, line
    assert time.monotonic() - killed_at < 60
    # The round's results wait in the study; a resumed coordinator records them, none runs twice.
    resumed = _refiner("run", str(config), "--storage", postgres_url, "--heartbeat", "1", cwd=tmp_path)
    out = _finish(resumed)
    assert resumed.returncode == 0, out
    _assert_complete_and_unique(run_dir)


@pytest.mark.slow
def test_workers_join_a_run_on_the_default_sqlite_storage(tmp_path):
    config = _project(tmp_path, "local", sleep_s=0.2)
    coordinator = _refiner("run", str(config), "--heartbeat", "1", cwd=tmp_path)
    run_dir = tmp_path / "runs" / "local"
    deadline = time.monotonic() + 60
    while not (run_dir / "optuna.db").exists():
        assert coordinator.poll() is None, _finish(coordinator)
        assert time.monotonic() < deadline
        time.sleep(0.1)
    workers = [_refiner("worker", str(run_dir), "--wait", "60", cwd=tmp_path) for _ in range(2)]
    assert _finish(coordinator) and coordinator.returncode == 0
    for worker in workers:
        out = _finish(worker, timeout=60)
        assert worker.returncode == 0, out
    _assert_complete_and_unique(run_dir)
    assert len(_workers_of(f"sqlite:///{run_dir.resolve()}/optuna.db", "local")) >= 2


def test_a_resumed_coordinator_records_results_workers_left_instead_of_rerunning_them(tmp_path):
    space = SearchSpace([Float("x", -5.0, 5.0)])
    calls = []

    def f(p):
        calls.append(p)
        return (p["x"] - 1.0) ** 2

    def spec(budget, done=()):
        return round_spec(tmp_path, space, f, budget, done_trials=list(done))

    storage = f"sqlite:///{tmp_path}/optuna.db"
    first: list = []
    run_round(spec(4), first.append, storage=storage, study_prefix="p", run_id="run-a")
    assert len(calls) == 4
    # The coordinator had copied only two of the four results into the run folder when it stopped.
    resumed: list = []
    run_round(spec(2, done=first[:2]), resumed.append, storage=storage, study_prefix="p", run_id="run-a")
    assert [t.trial_id for t in resumed] == [t.trial_id for t in first[2:]]
    assert len(calls) == 4  # nothing ran again
    # Studies of another run of the same name are never mixed in.
    other: list = []
    run_round(spec(2, done=first[:2]), other.append, storage=storage, study_prefix="p", run_id="run-b")
    assert len(calls) == 6 and {t.trial_id for t in other}.isdisjoint(t.trial_id for t in first)


def test_a_worker_refuses_a_folder_that_is_not_a_run(tmp_path):
    result = subprocess.run([sys.executable, "-m", "refiner.cli", "worker", str(tmp_path / "nothing")],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "no run.json" in result.stderr and "Traceback" not in result.stderr


def test_an_unreachable_storage_is_one_line_and_exit_2(tmp_path):
    config = _project(tmp_path, "unreachable", sleep_s=0.0)
    result = subprocess.run([sys.executable, "-m", "refiner.cli", "run", str(config), "--quiet",
                             "--storage", "postgresql://nobody@127.0.0.1:1/none"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "storage: cannot open" in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_slot_is_held_by_a_claimed_running_trial_or_a_result_and_freed_by_a_failure_without_one():
    study = optuna.create_study()
    asked = [study.ask() for _ in range(3)]

    def trials():
        return study.get_trials(deepcopy=False)

    assert shared.live_count(trials()) == 0  # asked, not yet claimed: no slot held
    assert shared.claim(study._storage, study, asked[0], 2) and shared.claim(study._storage, study, asked[1], 2)
    assert not shared.claim(study._storage, study, asked[2], 2)  # with budget 2, the third is surplus
    # A trial found stale (its worker died) fails without a result: its slot is free again.
    study.tell(asked[0], state=optuna.trial.TrialState.FAIL)
    assert shared.live_count(trials()) == 1 and shared.claim(study._storage, study, asked[2], 2)
    # A result stored before the worker died still holds its slot, whatever Optuna's state says.
    asked[1].set_user_attr(shared.RECORD, "{}")
    study.tell(asked[1], state=optuna.trial.TrialState.FAIL)
    assert shared.live_count(trials()) == 2 and shared.result_count(trials()) == 1


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_concurrent_proposals_never_take_more_slots_than_the_budget(backend, request, tmp_path):
    """Six participants propose at once for a budget of two, each pausing between counting the
    slots and claiming one: without one lock around both, all six would pass and run."""
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else f"sqlite:///{tmp_path}/optuna.db"
    name = f"race-{backend}-{os.getpid()}-{time.time_ns()}"
    evaluated: list = []

    def f(p):
        evaluated.append(p)
        return (p["x"] - 1.0) ** 2

    spec = round_spec(tmp_path, SearchSpace([Float("x", -5.0, 5.0)]), f, 2)
    optuna.create_study(study_name=name, storage=shared.open_storage(url))
    start, outcomes = threading.Barrier(6), []

    def participant(i: int) -> None:
        storage = shared.open_storage(url)  # its own connections, as a worker on another machine has
        worker = Participant(optuna.load_study(study_name=name, storage=storage), storage, spec, 2, None, token=str(i))
        start.wait()
        while (outcome := worker.step()) != "full":
            outcomes.append(outcome)

    failpoints.set_pause("claim", 0.3)
    try:
        threads = [threading.Thread(target=participant, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        failpoints.set_pause("claim", 0)
    assert outcomes.count("ran") == 2 and len(evaluated) == 2, (outcomes, evaluated)
    trials = optuna.load_study(study_name=name, storage=shared.open_storage(url)).get_trials(deepcopy=False)
    assert shared.live_count(trials) == 2 and shared.result_count(trials) == 2


def test_a_configuration_yields_to_the_earlier_claim_and_to_known_trials():
    study = optuna.create_study()
    first, second = study.ask(), study.ask()
    for t in (first, second):
        t.set_user_attr(shared.KEY, '{"x": 1}')
    frozen = {f._trial_id: f for f in study.get_trials(deepcopy=False)}
    trials = list(frozen.values())
    assert shared.is_duplicate(trials, frozen[second._trial_id], '{"x": 1}')  # the later one yields
    assert not shared.is_duplicate(trials, frozen[first._trial_id], '{"x": 1}')
    assert not shared.is_duplicate(trials, frozen[first._trial_id], '{"x": 2}')
    study.add_trial(optuna.trial.create_trial(value=1.0, params={}, distributions={},
                                              user_attrs={shared.KNOWN: True, shared.KEY: '{"x": 2}'}))
    trials = study.get_trials(deepcopy=False)
    assert shared.is_duplicate(trials, frozen[first._trial_id], '{"x": 2}')  # warm-start trials count as taken


def test_of_two_proposals_of_one_configuration_the_later_claim_yields_whichever_id_is_smaller():
    # The larger id set its key and claimed before the smaller one had set its key. Checked under
    # the claims lock in the same look as the budget, the smaller id then sees the claim and yields
    # (checked before the lock, as it once was, it ran the configuration a second time).
    study = optuna.create_study()
    first, second = study.ask(), study.ask()
    second.set_user_attr(shared.KEY, '{"x": 1}')
    assert shared.take_slot(study._storage, study, second, 5, key='{"x": 1}')[0] == "claimed"
    first.set_user_attr(shared.KEY, '{"x": 1}')
    assert shared.take_slot(study._storage, study, first, 5, key='{"x": 1}')[0] == "duplicate"
    other = study.ask()
    other.set_user_attr(shared.KEY, '{"x": 2}')
    outcome, look = shared.take_slot(study._storage, study, other, 5, key='{"x": 2}')
    assert outcome == "claimed" and shared.live_count(look) == 1  # the look is from before its own claim


@pytest.mark.slow
def test_a_coordinator_that_runs_no_trials_learns_from_a_worker_that_the_space_is_exhausted(tmp_path):
    config = _project(tmp_path, "tiny", sleep_s=0.0)
    (tmp_path / "space.json").write_text(json.dumps({"format_version": 1, "parameters": [
        {"name": "x", "type": "choice", "values": [-1.0, 1.0]},
        {"name": "y", "type": "choice", "values": [-2.0, 2.0]},
    ]}))
    config.write_text(config.read_text().replace(f"rounds = {ROUNDS}", "rounds = 1"))
    coordinator = _refiner("run", str(config), "--no-trials", cwd=tmp_path)
    run_dir = tmp_path / "runs" / "tiny"
    deadline = time.monotonic() + 60
    while not (run_dir / "optuna.db").exists():
        assert coordinator.poll() is None and time.monotonic() < deadline, _finish(coordinator)
        time.sleep(0.1)
    worker = _refiner("worker", str(run_dir), "--wait", "30", cwd=tmp_path)
    out = _finish(coordinator, timeout=90)
    assert coordinator.returncode == 0, out
    assert _finish(worker, timeout=60) and worker.returncode == 0
    trials = RunStore(run_dir).read_trials(0)
    assert len(trials) == 4 and len({json.dumps(t.hyperparameters, sort_keys=True) for t in trials}) == 4


# -- the epoch budget (fidelity.total) with workers ----------------------------------------------------
PAID_OBJECTIVE = '''
import time


def bowl(p, budget):
    time.sleep(0.05 * budget)  # trials overlap across workers, longer the further they train
    return (p["x"] - 1.0) ** 2 + (p["y"] + 2.0) ** 2 + 2.0 / budget
'''


@pytest.mark.slow
@pytest.mark.parametrize("coordinator_trials", [False, True], ids=["workers-only", "with-coordinator"])
def test_workers_on_postgres_keep_to_the_epoch_budget_and_stop_claiming_once_the_share_is_spent(
        tmp_path, postgres_url, coordinator_trials):
    from refiner.fidelity import EpochBudget, trial_epochs

    total, most, per_round = 60, 9, 12
    name = f"paid{os.getpid()}{'c' if coordinator_trials else 'w'}"
    config = _project(tmp_path, name, 0.0, budget=per_round, objective=PAID_OBJECTIVE)
    config.write_text(config.read_text() + f"\n[fidelity]\nmax = {most}\ntotal = {total}\n")
    coordinator = _refiner("run", str(config), "--storage", postgres_url, "--heartbeat", "1",
                           *(() if coordinator_trials else ("--no-trials",)), cwd=tmp_path)
    run_dir = tmp_path / "runs" / name
    deadline = time.monotonic() + 60
    while not (run_dir / "run.json").exists():
        assert coordinator.poll() is None and time.monotonic() < deadline, _finish(coordinator)
        time.sleep(0.1)
    workers = [_refiner("worker", str(run_dir), "--storage", postgres_url, "--wait", "60", cwd=tmp_path)
               for _ in range(3)]
    out = _finish(coordinator)
    assert coordinator.returncode == 0, out
    for worker in workers:
        worker_out = _finish(worker, timeout=60)
        assert worker.returncode == 0, worker_out

    store = RunStore(run_dir)
    trials = store.all_trials()
    spent = sum(trial_epochs(t) for t in trials)
    # The guarantee: every trial started with at most total - 1 epochs committed (recorded, plus
    # `most` for each trial running anywhere), so at most one trial's most beyond; and the run
    # spent its budget rather than stopping short.
    assert total <= spent <= total + most - 1, f"{spent} epochs recorded for total = {total}"
    check_run(store)
    budget = EpochBudget(total, [per_round] * ROUNDS, most)
    storage = shared.open_storage(postgres_url)
    studies = [s.study_name for s in storage.get_all_studies()]
    so_far = 0
    for k in range(ROUNDS):
        recorded = store.read_trials(k)
        so_far += sum(trial_epochs(t) for t in recorded)
        assert so_far <= budget.cumulative(k) + most - 1, f"round {k} overshot its cumulative share"
        claimed = [t for study_name in studies if study_name.startswith(f"{name}-round-{k}")
                   for t in optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False)
                   if t.user_attrs.get(shared.CLAIMED)]
        # Workers stopped claiming once the share was spent: slots were left free, and every claim
        # made was recorded (none ran beyond the round's end).
        assert len(claimed) == len(recorded) < per_round, (k, len(claimed), len(recorded))
    assert len(trials) < ROUNDS * per_round  # the epochs, not the trial caps, ended the rounds
    runners = {str(t.user_attrs[shared.CLAIMED]).rsplit(":", 1)[-1] for study_name in studies
               if study_name.startswith(f"{name}-round-")
               for t in optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False)
               if shared.RECORD in t.user_attrs}
    assert runners & {str(w.pid) for w in workers}, "no worker ran a trial"


def test_an_epoch_allowance_is_checked_with_the_claim_counting_results_and_running_trials():
    from refiner.fidelity import EpochAllowance

    study = optuna.create_study()
    allowance = EpochAllowance(limit=17, spent=5, per_trial=4)  # 5 + recorded + 4 x running < 17

    def take(trial):
        return shared.take_slot(study._storage, study, trial, 10, epochs=allowance)[0]

    asked = [study.ask() for _ in range(6)]
    assert [take(t) for t in asked[:4]] == ["claimed"] * 3 + ["spent"]  # 5 + 2 x 4 = 13 < 17; 5 + 3 x 4 is not
    asked[0].set_user_attr(shared.RECORD, json.dumps({"trial_id": "0-o1", "epochs": 1}))  # stopped at its first rung
    study.tell(asked[0], 1.0)
    assert take(asked[4]) == "claimed"  # 5 + 1 + 2 x 4 = 14 < 17
    assert take(asked[5]) == "spent"
    assert shared.take_slot(study._storage, study, study.ask(), 10)[0] == "claimed"  # no allowance: no check


def test_concurrent_proposals_on_postgres_never_pass_the_epoch_allowance_together(postgres_url, tmp_path):
    """Six participants propose at once under an allowance that lets two trials run (the claims
    pause between counting and claiming): checked outside the claims lock, all six would start."""
    from refiner.fidelity import EpochAllowance

    name = f"epochrace-{os.getpid()}-{time.time_ns()}"
    release, outcomes = threading.Event(), []

    def f(p):
        release.wait(60)  # the claimed trials keep running until every participant has proposed
        return (p["x"] - 1.0) ** 2

    spec = round_spec(tmp_path, SearchSpace([Float("x", -5.0, 5.0)]), f, 6)
    optuna.create_study(study_name=name, storage=shared.open_storage(postgres_url))
    start = threading.Barrier(6)

    def participant(i: int) -> None:
        storage = shared.open_storage(postgres_url)
        worker = Participant(optuna.load_study(study_name=name, storage=storage), storage, spec, 6, None,
                             token=str(i), epochs=EpochAllowance(limit=19, spent=1, per_trial=9))  # 1 + 9 < 19; 1 + 2 x 9 is not
        start.wait()
        outcomes.append(worker.step())

    failpoints.set_pause("claim", 0.2)
    try:
        threads = [threading.Thread(target=participant, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while outcomes.count("spent") < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        release.set()
        for t in threads:
            t.join(timeout=120)
    finally:
        failpoints.set_pause("claim", 0)
        release.set()
    assert sorted(outcomes) == ["ran", "ran", "spent", "spent", "spent", "spent"], outcomes
