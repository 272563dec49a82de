"""Paying in epochs: rungs, the stopping rule, stopped trials in the record, resume mid-trial, both engines."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from cli_processes import run_cli
import refiner
from refiner.check import check_run
from refiner.config import load_run_config
from refiner.fidelity import MIN_PEERS, Fidelity, StoppingRule
from refiner.space import Float, SearchSpace
from refiner.store import RunStore
from refiner.trial import Trial, TrialState

SPACE = SearchSpace([Float("x", -3.0, 3.0), Float("y", -3.0, 3.0)])


def curve_loss(p, budget):
    """A learning curve: the loss falls with the budget towards a floor set by the configuration."""
    floor = (p["x"] - 1.0) ** 2 + 0.5 * (p["y"] + 0.5) ** 2
    return floor + 2.0 / budget


# -- the rule -----------------------------------------------------------------------------------------
def test_rungs_grow_by_eta_and_end_at_max():
    assert Fidelity(max=27).rungs == [1, 3, 9, 27]
    assert Fidelity(min=2, max=20, eta=3).rungs == [2, 6, 18, 20]
    assert Fidelity(min=5, max=5).rungs == [5]


@pytest.mark.parametrize("kwargs, message", [
    ({"max": 0}, r"fidelity\.max: must be a positive integer, got 0"),
    ({"min": 10, "max": 5}, r"fidelity\.min: must not exceed fidelity\.max \(5\), got 10"),
    ({"max": 9, "eta": 1}, r"fidelity\.eta: must be at least 2"),
    ({"max": 9.5}, r"fidelity\.max: must be a positive integer, got 9\.5"),
])
def test_bad_fidelities_name_the_setting(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Fidelity(**kwargs)


def test_a_rung_keeps_the_best_third_once_enough_trials_reached_it():
    rule = StoppingRule(Fidelity(max=9, eta=3), "min")
    assert not rule.should_stop(1, 100.0)  # alone at the rung: nothing to compare with
    rule.observe([(1, 1.0), (3, 0.8)])
    assert not rule.should_stop(1, 5.0)  # two trials: still fewer than MIN_PEERS
    assert MIN_PEERS == 3
    rule.observe([(1, 2.0)])
    assert not rule.should_stop(1, 0.5)  # the best of three goes on
    assert rule.should_stop(1, 1.5)  # second of three: outside the best third
    assert not rule.should_stop(9, 100.0)  # the last rung never stops a trial: it has finished
    assert rule.should_stop(1, math.nan)
    maximise = StoppingRule(Fidelity(max=9, eta=3), "max")
    maximise.observe([(1, 0.5)])
    maximise.observe([(1, 0.6)])
    assert not maximise.should_stop(1, 0.9) and maximise.should_stop(1, 0.55)


def test_a_stopped_trial_round_trips_and_is_never_best():
    stopped = Trial("0-1", 0, {"x": 0.0}, 0.1, TrialState.STOPPED, fidelity=3, curve=((1, 0.3), (3, 0.1)))
    done = Trial("0-2", 0, {"x": 1.0}, 0.2, TrialState.COMPLETE, fidelity=9, curve=((1, 0.5), (3, 0.3), (9, 0.2)))
    again = Trial.from_dict(json.loads(json.dumps(stopped.to_dict())))
    assert again == stopped and again.evidence and not again.ok
    assert refiner.trial.best_trial([stopped, done], refiner.Objective("loss", "min")) is done
    old = Trial.from_dict({"trial_id": "0-3", "round": 0, "hyperparameters": {}, "score": 1.0, "status": "complete",
                           "metrics": {}, "duration_s": 0.1})  # a record made before fidelity existed
    assert old.fidelity is None and old.curve is None and old.evidence


# -- whole runs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["keras-tuner", "optuna"])
def test_a_run_with_a_fidelity_stops_lagging_trials_and_records_their_curves(tmp_path, engine):
    agent = refiner.Refiner(function=curve_loss, space=SPACE, objective="loss", rounds=2, trials_per_round=12,
                            fidelity=refiner.Fidelity("epochs", min=1, max=9, eta=3), engine=engine,
                            directory=tmp_path, project_name="mf", verbose=0, narrowing={"min_trials": 6})
    agent.search()
    store = RunStore(tmp_path / "mf")
    check_run(store)  # every record validates, stopped ones included
    trials = store.all_trials()
    assert len(trials) == 24
    stopped = [t for t in trials if t.status is TrialState.STOPPED]
    finished = [t for t in trials if t.ok]
    assert stopped and finished
    assert all(t.fidelity < 9 and t.curve[-1][0] == t.fidelity for t in stopped)
    assert all(t.fidelity == 9 and [b for b, _ in t.curve] == [1, 3, 9] for t in finished)
    for t in trials:  # the curve is the function's, budget by budget; the score is its last point
        assert all(math.isclose(v, curve_loss(t.hyperparameters, b)) for b, v in t.curve)
        assert math.isclose(t.score, t.curve[-1][1])
    assert agent.best_trial.ok and agent.best_trial.fidelity == 9  # never a stopped trial
    assert store.read_run()["settings"]["fidelity"] == {"name": "epochs", "min": 1, "max": 9, "eta": 3}
    spent = sum(t.fidelity for t in trials)
    assert spent < 9 * len(trials)  # stopping saved epochs
    summary = subprocess.run([sys.executable, "-m", "refiner.cli", "show", str(store.root)], capture_output=True,
                             text=True, check=True).stdout
    assert f"stopped early, epochs {sum(t.fidelity for t in store.read_trials(0))} of 108" in summary


def test_the_same_seed_stops_the_same_trials(tmp_path):
    def run(name):
        refiner.Refiner(function=curve_loss, space=SPACE, objective="loss", rounds=1, trials_per_round=10,
                        fidelity={"max": 9}, directory=tmp_path, project_name=name, verbose=0).search()
        return [(t.hyperparameters, t.status, t.fidelity) for t in RunStore(tmp_path / name).all_trials()]

    assert run("a") == run("b")


CONFIG = """
name = "mf"
function = "mf_objective:curve_loss"
space = "space.json"
[objective]
name = "loss"
direction = "min"
[search]
rounds = 2
trials_per_round = 8
[narrowing]
min_trials = 6
[fidelity]
max = 9
"""

OBJECTIVE = '''
def curve_loss(p, budget):
    floor = (p["x"] - 1.0) ** 2 + 0.5 * (p["y"] + 0.5) ** 2
    return floor + 2.0 / budget
'''


def _run_cli(tmp_path, run_dir, failpoint=""):
    """`refiner run` as its own process (forked with TensorFlow already imported: cli_processes)."""
    return run_cli(["run", tmp_path / "run.toml", "--run-dir", run_dir, "--quiet"],
                   env=dict(os.environ, REFINER_FAILPOINT=failpoint), timeout=300)


def _kill_inside_a_promoted_trial(tmp_path, config):
    """Write the project, run it, and SIGKILL it inside a trial that has just passed a rung."""
    (tmp_path / "mf_objective.py").write_text(textwrap.dedent(OBJECTIVE))
    (tmp_path / "space.json").write_text(SPACE.to_json())
    (tmp_path / "run.toml").write_text(config)
    run_dir = tmp_path / "run"
    killed = _run_cli(tmp_path, run_dir, "rung_passed")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    return run_dir


@pytest.mark.slow
def test_a_run_killed_inside_a_trial_that_passed_a_rung_resumes_with_nothing_lost(tmp_path):
    run_dir = _kill_inside_a_promoted_trial(tmp_path, CONFIG)
    before = [t.trial_id for t in RunStore(run_dir).all_trials()]
    final = _run_cli(tmp_path, run_dir)
    assert final.returncode == 0, final.stderr[-2000:]
    store = RunStore(run_dir)
    check_run(store)
    ids = [t.trial_id for t in store.all_trials()]
    assert ids[: len(before)] == before and len(ids) == len(set(ids)) == 16  # kept, then completed once each
    assert any(t.status is TrialState.STOPPED for t in store.all_trials())


def test_a_config_asks_for_a_fidelity_and_its_mistakes_are_named(tmp_path):
    (tmp_path / "mf_objective.py").write_text(textwrap.dedent(OBJECTIVE))
    (tmp_path / "space.json").write_text(SPACE.to_json())
    path = tmp_path / "run.toml"
    path.write_text(CONFIG)
    assert load_run_config(path).settings.fidelity == Fidelity(max=9)
    path.write_text(CONFIG.replace("max = 9", "max = 9\neta = 1"))
    with pytest.raises(refiner.ValidationError) as info:
        load_run_config(path)
    assert info.value.problems == ["fidelity.eta: 1 is less than the minimum of 2"]
    path.write_text(CONFIG.replace("max = 9", "min = 12\nmax = 9"))
    with pytest.raises(refiner.ValidationError) as info:
        load_run_config(path)
    assert info.value.problems == ["fidelity.min: must not exceed fidelity.max (9), got 12"]


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["keras-tuner", "optuna"])
def test_keras_trials_train_epoch_by_epoch_and_lagging_ones_stop(tmp_path, engine):
    import keras

    from test_loop import _tiny_data, tiny_build_model

    x, y = _tiny_data()
    agent = refiner.Refiner(tiny_build_model, objective="val_loss", rounds=1, trials_per_round=6, engine=engine,
                            fidelity=refiner.Fidelity("epochs", min=1, max=4, eta=2), directory=tmp_path,
                            project_name="keras", verbose=0)
    # The user's own callbacks keep working: EarlyStopping may end a trial before fidelity.max too.
    agent.search(x, y, validation_split=0.25, batch_size=64,
                 callbacks=[keras.callbacks.EarlyStopping("val_loss", patience=1, min_delta=0.05)])
    trials = RunStore(tmp_path / "keras").all_trials()
    assert len(trials) == 6 and all(t.evidence for t in trials)
    for t in trials:
        assert [b for b, _ in t.curve] == list(range(1, t.fidelity + 1))  # one point per epoch trained
        assert t.fidelity <= 4 and math.isclose(t.score, min(v for _, v in t.curve), rel_tol=1e-6)
        assert t.epochs == t.fidelity  # every epoch trained is counted (one execution)
    stopped = [t for t in trials if t.status is TrialState.STOPPED]
    assert all(t.fidelity < 4 for t in stopped)  # a stopped trial trained fewer epochs than the most
    assert agent.best_trial.ok


def test_epochs_given_beside_a_fidelity_are_refused_in_one_line(tmp_path):
    from test_loop import tiny_build_model

    agent = refiner.Refiner(tiny_build_model, objective="val_loss", fidelity={"max": 4}, directory=tmp_path, verbose=0)
    with pytest.raises(ValueError, match=r"^`epochs`: with a fidelity a trial trains up to fidelity.max = 4 epochs"):
        agent.search([[0.0]], [0], epochs=10)
    assert not (tmp_path / "refiner").exists()  # refused before the run folder was made


WORKER_OBJECTIVE = '''
import time


def bowl(p, budget):
    time.sleep(0.05)
    return (p["x"] - 1.0) ** 2 + (p["y"] + 2.0) ** 2 + 2.0 / budget
'''


@pytest.mark.slow
def test_workers_of_a_fidelity_run_call_the_function_with_its_budget_and_stop_lagging_trials(tmp_path):
    from test_scaleout import _finish, _project, _refiner, _workers_of

    config = _project(tmp_path, "mfw", 0.0, budget=12, objective=WORKER_OBJECTIVE)
    config.write_text(config.read_text() + "\n[fidelity]\nmax = 9\n")
    coordinator = _refiner("run", str(config), "--heartbeat", "1", cwd=tmp_path)
    run_dir = tmp_path / "runs" / "mfw"
    while not (run_dir / "optuna.db").exists():
        assert coordinator.poll() is None, _finish(coordinator)
        time.sleep(0.1)
    worker = _refiner("worker", str(run_dir), "--wait", "60", cwd=tmp_path)
    assert _finish(coordinator) and coordinator.returncode == 0
    assert worker.wait(timeout=60) == 0, _finish(worker)
    trials = RunStore(run_dir).all_trials()
    assert len(trials) == 36 and all(t.evidence for t in trials)  # no worker trial failed on a missing budget
    assert all(t.curve and t.curve[-1][0] == t.fidelity for t in trials)
    assert len(_workers_of(f"sqlite:///{run_dir.resolve()}/optuna.db", "mfw")) >= 2  # the worker ran some


# -- the epoch budget (fidelity.total) ----------------------------------------------------------------
def test_an_epoch_budget_spreads_over_the_rounds_and_starts_trials_below_the_share():
    from refiner.fidelity import EpochAllowance, EpochBudget, trial_epochs

    budget = EpochBudget(600, [24, 48, 48], per_trial=27)
    assert [budget.cumulative(k) for k in range(3)] == [120, 360, 600]
    assert [budget.share(k) for k in range(3)] == [120, 240, 240]
    assert budget.cumulative(1, part=0.5) == 240  # the main part of round 1 before its reserve
    assert budget.open(1, spent=359) == 360 and budget.may_start()  # one epoch below the share: may start
    budget.record(1)
    assert not budget.may_start()  # at the share: no new trial
    budget.open(2, spent=500)
    assert budget.may_start(running=3) and not budget.may_start(running=4)  # 500 + 4 x 27 >= 600: committed
    # What workers get (through the round's study): the same rule, with the epochs recorded since.
    allowance = budget.allowance()
    assert allowance == EpochAllowance(limit=600, spent=500, per_trial=27)
    assert EpochAllowance.from_dict(json.loads(json.dumps(allowance.to_dict()))) == allowance
    assert EpochAllowance.from_dict(None) is None
    assert allowance.may_start(running=3, recorded=18) and not allowance.may_start(running=3, recorded=19)
    assert trial_epochs({"epochs": 7, "fidelity": 3}) == 7 and trial_epochs({"fidelity": 3}) == 3  # a stored record


@pytest.mark.parametrize("kwargs, message", [
    ({"max": 9, "total": 0}, r"^fidelity\.total: must be a positive integer \(epochs for the whole run\), got 0$"),
    ({"max": 9, "total": 8}, r"^fidelity\.total: must be at least fidelity\.max \(9\) so one trial can train to the end"),
    ({"max": 9, "total": 9.5}, r"^fidelity\.total: must be a positive integer"),
])
def test_bad_epoch_budgets_name_the_setting_and_the_rule(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Fidelity(**kwargs)


def test_an_epoch_budget_too_small_for_the_rounds_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"^fidelity\.total: must be at least rounds x fidelity\.max = 3 x 9 = 27"):
        refiner.Refiner(function=curve_loss, space=SPACE, objective="loss", rounds=3,
                        fidelity={"max": 9, "total": 20}, directory=tmp_path)


@pytest.mark.parametrize("engine", ["keras-tuner", "optuna"])
def test_a_run_with_an_epoch_budget_spends_it_and_never_more_than_one_trial_beyond(tmp_path, engine):
    from refiner.fidelity import EpochBudget, trial_epochs

    total, most = 150, 9
    agent = refiner.Refiner(function=curve_loss, space=SPACE, objective="loss", rounds=3, engine=engine,
                            fidelity=refiner.Fidelity("epochs", min=1, max=most, eta=3, total=total),
                            directory=tmp_path, project_name="paid", verbose=0, narrowing={"min_trials": 6})
    agent.search()
    store = RunStore(tmp_path / "paid")
    check_run(store)  # the records (with "epochs") and run.json (with fidelity.total) validate
    trials = store.all_trials()
    assert all(t.epochs == t.fidelity for t in trials)  # a function trial trained up to the rung it reached
    spent = sum(trial_epochs(t) for t in trials)
    assert total <= spent <= total + most - 1  # the guarantee; and the epochs were spent, not left over
    settings = agent.settings
    budget = EpochBudget(total, [settings.budget(k) for k in range(3)], most)
    running = 0
    for k in range(3):  # each round starts trials only below its cumulative share
        before = running
        for t in store.read_trials(k):
            assert before < budget.cumulative(k)
            before += trial_epochs(t)
        running = before
        assert running <= budget.cumulative(k) + most - 1
    assert len(trials) < settings.budget(0) + 2 * settings.budget(1)  # the epochs, not the trial caps, ended it
    assert store.read_run()["settings"]["fidelity"]["total"] == total
    summary = subprocess.run([sys.executable, "-m", "refiner.cli", "show", str(store.root)], capture_output=True,
                             text=True, check=True).stdout
    assert f"epochs: {spent} spent of fidelity.total = {total}; per round spent/share: 0: " in summary
    assert f"3 rounds, {total} epochs in all" in summary


def test_an_epoch_budget_in_a_config_is_checked_and_its_mistakes_exit_2(tmp_path, capsys):
    from refiner.cli import main

    (tmp_path / "mf_objective.py").write_text(textwrap.dedent(OBJECTIVE))
    (tmp_path / "space.json").write_text(SPACE.to_json())
    path = tmp_path / "run.toml"
    path.write_text(CONFIG.replace("max = 9", "max = 9\ntotal = 100"))
    assert load_run_config(path).settings.fidelity == Fidelity(max=9, total=100)
    assert main(["validate", str(path)]) == 0
    for text, line in [
        ("total = 10", "fidelity.total: must be at least rounds x fidelity.max = 2 x 9 = 18 so every round can train "
                       "a trial to the end, got 10"),
        ("total = 0", "fidelity.total: 0 is less than the minimum of 1"),
        ('total = "lots"', "fidelity.total: 'lots' is not of type 'integer'"),
    ]:
        capsys.readouterr()
        path.write_text(CONFIG.replace("max = 9", f"max = 9\n{text}"))
        assert main(["validate", str(path)]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [f"{path}: {line}"]


@pytest.mark.slow
def test_a_run_with_an_epoch_budget_killed_inside_a_trial_resumes_within_the_budget(tmp_path):
    from refiner.fidelity import trial_epochs

    config = CONFIG.replace("trials_per_round = 8\n", "").replace("max = 9", "max = 9\ntotal = 90")
    run_dir = _kill_inside_a_promoted_trial(tmp_path, config)
    before = [t.trial_id for t in RunStore(run_dir).all_trials()]
    final = _run_cli(tmp_path, run_dir)
    assert final.returncode == 0, final.stderr[-2000:]
    store = RunStore(run_dir)
    check_run(store)
    trials = store.all_trials()
    assert [t.trial_id for t in trials][: len(before)] == before and len({t.trial_id for t in trials}) == len(trials)
    assert 90 <= sum(trial_epochs(t) for t in trials) <= 90 + 9 - 1
    uninterrupted = tmp_path / "whole"
    assert _run_cli(tmp_path, uninterrupted).returncode == 0  # the resumed run made the same trials as one never killed
    assert [(t.trial_id, t.hyperparameters, t.epochs) for t in RunStore(uninterrupted).all_trials()] == \
        [(t.trial_id, t.hyperparameters, t.epochs) for t in trials]
