"""The loop end to end on fast functions: artifacts, resume, refused setting changes, failed rounds."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import refiner
from refiner import schemas
from refiner.errors import RoundFailedError, SettingsChangedError
from refiner.space import Choice, Float, Int, SearchSpace
from refiner.store import RunStore
from refiner.trial import Objective

SPACE = SearchSpace([
    Float("x1", -5.0, 10.0),
    Float("x2", 0.0, 15.0),
    Float("lr", 1e-5, 1e-1, log=True),
    Choice("kind", ("a", "b", "c")),
])
LOSS = Objective("loss", "min")


def branin_plus(p):
    """Branin in (x1, x2), plus a log-scale bowl in lr (best at 1e-3) and a choice penalty."""
    x1, x2 = p["x1"], p["x2"]
    b = (x2 - 5.1 / (4 * math.pi**2) * x1**2 + 5 / math.pi * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10
    return b + (math.log10(p["lr"]) + 3) ** 2 + {"a": 0.0, "b": 5.0, "c": 10.0}[p["kind"]]


def _agent(tmp_path, fn=branin_plus, **kw):
    settings = dict(function=fn, space=SPACE, objective=LOSS, rounds=3, trials_per_round=10,
                    directory=tmp_path, project_name="run", seed=0)
    settings.update(kw)
    return refiner.Refiner(**settings)


def _validate_folder(root):
    store = RunStore(root)
    schemas.validate(json.loads((root / "run.json").read_text()), "run")
    for line in (root / "events.jsonl").read_text().splitlines():
        assert json.loads(line)["event"]
    for k in store.rounds():
        schemas.validate(json.loads((root / "rounds" / str(k) / "space.json").read_text()), "search_space")
        for line in (root / "rounds" / str(k) / "trials.jsonl").read_text().splitlines():
            schemas.validate(json.loads(line), "trial")
        schemas.validate(json.loads((root / "rounds" / str(k) / "surrogate.json").read_text()), "surrogate")
        schemas.validate(json.loads((root / "rounds" / str(k) / "decisions.json").read_text()), "decisions")
    schemas.validate(json.loads((root / "refined_space.json").read_text()), "search_space")


def test_three_round_run_writes_a_complete_valid_run_folder(tmp_path):
    agent = _agent(tmp_path).search()
    root = tmp_path / "run"
    _validate_folder(root)
    store = RunStore(root)
    assert store.rounds() == [0, 1, 2]
    assert [len(store.read_trials(k)) for k in range(3)] == [10, 10, 10]
    # Every trial lies inside the space of its round, but for the exploration reserve's, which are drawn
    # from the declared space outside it; and each round's space comes from the decisions before it.
    for k in range(3):
        space = store.read_space(k)
        assert all(space.contains(t.hyperparameters) for t in store.read_trials(k) if not t.reserve)
        assert all(SPACE.contains(t.hyperparameters) and not space.contains(t.hyperparameters)
                   for t in store.read_trials(k) if t.reserve)
        decisions = store.read_decisions(k)
        assert [d["name"] for d in decisions["decisions"]] == SPACE.names
        if k < 2:
            assert store.read_space(k + 1).to_dict() == decisions["next_space"]
    best = agent.best_trial
    assert best is not None and best.score == min(t.score for t in agent.trials if t.ok)
    assert agent.refined_space.contains(best.hyperparameters)
    assert agent.refined_space == store.read_refined_space()
    hp = agent.get_best_hyperparameters()[0]
    assert hp.values == dict(best.hyperparameters)
    run = store.read_run()
    assert run["state"]["status"] == "finished" and run["state"]["best"]["trial_id"] == best.trial_id
    events = [e["event"] for e in store.read_events()]
    assert events[0] == "run_started" and events[-1] == "run_finished"
    assert events.count("trial_finished") == 30 and events.count("round_analysed") == 3


def test_same_seed_same_run(tmp_path):
    a = _agent(tmp_path / "a").search()
    b = _agent(tmp_path / "b").search()
    assert [t.hyperparameters for t in a.trials] == [t.hyperparameters for t in b.trials]
    assert a.refined_space == b.refined_space


class Interrupt:
    """Raises KeyboardInterrupt on the n-th call, like a user pressing Ctrl-C mid-round."""

    def __init__(self, n):
        self.n, self.calls = n, 0

    def __call__(self, p):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return branin_plus(p)


def test_resume_after_an_interrupted_round_loses_nothing_and_runs_nothing_twice(tmp_path):
    reference = _agent(tmp_path / "ref").search()
    with pytest.raises(KeyboardInterrupt):
        _agent(tmp_path / "cut", fn=Interrupt(15)).search()  # stops in round 1
    store = RunStore(tmp_path / "cut" / "run")
    assert store.read_run()["state"]["status"] == "interrupted"
    assert len(store.read_trials(0)) == 10 and len(store.read_trials(1)) == 4
    counting = Interrupt(10**9)
    resumed = _agent(tmp_path / "cut", fn=counting).search()
    assert counting.calls == 16  # exactly the 30 - 14 trials that were missing
    ids = [t.trial_id for t in resumed.trials]
    assert len(ids) == len(set(ids)) == 30
    # The same seed reproduces the uninterrupted run: same configurations, same decisions.
    assert [t.hyperparameters for t in resumed.trials] == [t.hyperparameters for t in reference.trials]
    assert store.read_decisions(2) == RunStore(tmp_path / "ref" / "run").read_decisions(2)
    _validate_folder(tmp_path / "cut" / "run")


def test_finished_run_is_not_rerun(tmp_path):
    _agent(tmp_path, fn=Interrupt(10**9)).search()
    counting = Interrupt(10**9)
    _agent(tmp_path, fn=counting).search()
    assert counting.calls == 0


def test_changed_setting_on_resume_is_refused_and_overwrite_starts_afresh(tmp_path):
    _agent(tmp_path, rounds=1, trials_per_round=4).search()
    with pytest.raises(SettingsChangedError, match=r"trials_per_round: was 4, now 5"):
        _agent(tmp_path, rounds=1, trials_per_round=5).search()
    assert len(RunStore(tmp_path / "run").read_trials(0)) == 4  # nothing lost
    _agent(tmp_path, rounds=1, trials_per_round=5, overwrite=True).search()
    assert len(RunStore(tmp_path / "run").read_trials(0)) == 5


def test_a_round_where_every_trial_fails_stops_the_run_with_state_kept(tmp_path):
    def broken(p):
        raise ValueError("out of memory")

    with pytest.raises(RoundFailedError, match="every trial of round 0 failed.*out of memory"):
        _agent(tmp_path, fn=broken, trials_per_round=3).search()
    store = RunStore(tmp_path / "run")
    run = store.read_run()
    assert run["state"]["status"] == "failed"
    assert len(store.read_trials(0)) == 3


def test_failed_trials_never_count_as_best_or_reach_the_surrogate(tmp_path):
    def sometimes_nan(p):
        return float("nan") if p["kind"] == "c" else branin_plus(p)

    agent = _agent(tmp_path, fn=sometimes_nan, rounds=2).search()
    failed = [t for t in agent.trials if not t.ok]
    assert failed, "the seed should hit kind=c at least once"
    assert agent.best_trial.hyperparameters["kind"] != "c"
    surrogate = RunStore(tmp_path / "run").read_surrogate(0)
    assert surrogate["n_trials"] == sum(1 for t in agent.trials if t.round == 0 and t.ok)


def test_constructor_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        refiner.Refiner(space=SPACE, objective=LOSS, directory=tmp_path)
    with pytest.raises(ValueError, match="`space` is required"):
        refiner.Refiner(function=branin_plus, directory=tmp_path)
    with pytest.raises(ValueError, match="`rounds` must be a positive integer"):
        _agent(tmp_path, rounds=0)


# -- Keras ---------------------------------------------------------------------------------------

def _tiny_data():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data[:400] / 16.0).astype("float32")
    return x, digits.target[:400]


def tiny_build_model(hp):
    import keras

    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(hp.Int("units", 8, 64, step=8), activation=hp.Choice("activation", ["relu", "tanh"])),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(hp.Float("learning_rate", 1e-4, 1e-1, sampling="log")),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.slow
def test_two_round_keras_run_on_a_tiny_model(tmp_path):
    x, y = _tiny_data()
    agent = refiner.Refiner(hypermodel=tiny_build_model, objective="val_accuracy", rounds=2, trials_per_round=4,
                            directory=tmp_path, project_name="keras", seed=0,
                            narrowing={"min_trials": 3, "min_cv_score": -1.0, "reserve": 0.25})
    agent.search(x, y, epochs=2, validation_split=0.25, batch_size=64)
    store = RunStore(tmp_path / "keras")
    _validate_folder(tmp_path / "keras")
    declared = store.read_space(0)
    assert declared.names == ["units", "activation", "learning_rate"]  # discovered from build_model
    assert declared["learning_rate"].log
    trials = agent.trials
    assert len(trials) == 8 and all(t.ok for t in trials)
    assert all(0.0 <= t.score <= 1.0 and "val_loss" in t.metrics for t in trials)
    # Round 1 searched the narrowed space it was given, through KerasTuner's override mechanism.
    space1 = store.read_space(1)
    assert all(space1.contains(t.hyperparameters) for t in trials if t.round == 1 and not t.reserve)
    assert (store.kt_dir(1) / "oracle.json").exists()
    # ... and, when it was narrowed, trained its exploration reserve's model over the declared space.
    reserve = [t for t in trials if t.reserve]
    assert len(reserve) == (1 if space1 != declared else 0)
    assert all(declared.contains(t.hyperparameters) for t in reserve)
    assert not reserve or (store.kt_dir(1, reserve=True) / "oracle.json").exists()
    assert agent.get_best_hyperparameters()[0].values == dict(agent.best_trial.hyperparameters)
    assert agent.objective == Objective("val_accuracy", "max")


@pytest.mark.slow
def test_space_file_overrides_the_ranges_build_model_declares(tmp_path):
    x, y = _tiny_data()
    override = SearchSpace([Int("units", 16, 24, step=8), Choice("activation", ("tanh",))])
    agent = refiner.Refiner(hypermodel=tiny_build_model, space=override, objective="val_accuracy", rounds=1,
                            trials_per_round=3, directory=tmp_path, project_name="k", seed=1)
    agent.search(x, y, epochs=1, validation_split=0.25)
    assert all(t.hyperparameters["units"] in (16, 24) and t.hyperparameters["activation"] == "tanh"
               for t in agent.trials)
    assert np.isfinite([t.score for t in agent.trials]).all()


@pytest.mark.slow
def test_keras_runs_with_the_same_seed_train_the_same_models(tmp_path):
    x, y = _tiny_data()
    scores = []
    for name in ("a", "b"):
        agent = refiner.Refiner(hypermodel=tiny_build_model, objective="val_accuracy", rounds=1, trials_per_round=2,
                                directory=tmp_path, project_name=name, seed=3)
        agent.search(x, y, epochs=1, validation_split=0.25, batch_size=64)
        scores.append([(t.hyperparameters, t.score) for t in agent.trials])
    assert scores[0] == scores[1]


def test_a_hypermodel_that_returns_no_model_or_raises_is_bad_input(tmp_path):
    from refiner.errors import ValidationError

    def no_model(hp):
        hp.Int("units", 1, 4)
        return None

    def broken(hp):
        raise KeyError("layers")

    with pytest.raises(ValidationError, match=r"^hypermodel: build_model\(hp\) must return a keras.Model, got NoneType$"):
        refiner.Refiner(hypermodel=no_model, directory=tmp_path, project_name="a").search()
    with pytest.raises(ValidationError, match=r"^hypermodel: build_model\(hp\) failed .*KeyError: 'layers'"):
        refiner.Refiner(hypermodel=broken, directory=tmp_path, project_name="b").search()
    assert not (tmp_path / "a" / "run.json").exists()  # refused before the run was recorded


def test_failing_trials_are_retried_exactly_as_configured(tmp_path):
    """A flaky objective: no retries by default; with trial_retries=2 each failing configuration
    is tried three times in all, then recorded once as failed with that said."""
    from refiner.space import Float, SearchSpace
    from refiner.trial import TrialState

    space = SearchSpace([Float("x", -5.0, 5.0)])
    for engine in ("keras-tuner", "optuna"):
        for retries in (0, 2):
            calls: dict[float, int] = {}

            def always_fails_left(p, calls=calls):
                calls[p["x"]] = calls.get(p["x"], 0) + 1
                if p["x"] < 0:
                    raise RuntimeError("diverged")
                return p["x"] ** 2

            agent = refiner.Refiner(function=always_fails_left, space=space, objective={"name": "loss", "direction": "min"},
                                    rounds=1, trials_per_round=8, directory=tmp_path, project_name=f"{engine}-{retries}",
                                    seed=3, engine=engine, trial_retries=retries)
            agent.search()
            failed = [t for t in agent.trials if t.status is TrialState.FAILED]
            assert failed and len(agent.trials) == 8, engine
            for t in agent.trials:
                assert calls[t.hyperparameters["x"]] == (retries + 1 if t.hyperparameters["x"] < 0 else 1), (engine, t)
            assert all(("tries" in t.message) == bool(retries) for t in failed), [t.message for t in failed]


def test_a_total_budget_is_split_into_a_fifth_random_round_and_equal_bayesian_rounds():
    from refiner.settings import split_budget

    for total in range(4, 200):
        for rounds in (1, 2, 3, 5):
            if total < rounds + 1:
                with pytest.raises(ValueError):
                    split_budget(total, rounds)
                continue
            initial, per_round = split_budget(total, rounds)
            assert initial + per_round * (rounds - 1) == total if rounds > 1 else initial == total
            if rounds > 1:
                assert initial >= 2 and per_round >= 1
                assert abs(initial - 0.2 * total) <= rounds, (total, rounds, initial)
    assert split_budget(30) == (6, 12) and split_budget(60) == (12, 24)


def test_round_zero_runs_initial_trials_and_later_rounds_trials_per_round(tmp_path):
    from refiner.space import Float, SearchSpace

    agent = refiner.Refiner(function=lambda p: (p["x"] - 1) ** 2, space=SearchSpace([Float("x", -5.0, 5.0)]),
                            objective={"name": "loss", "direction": "min"}, rounds=3, trials_per_round=5,
                            initial_trials=3, directory=tmp_path, project_name="split", seed=0)
    agent.search()
    assert [sum(t.round == k for t in agent.trials) for k in range(3)] == [3, 5, 5]
    assert agent.store.read_run()["settings"]["initial_trials"] == 3


def test_show_and_the_app_count_a_smaller_random_round(tmp_path):
    from refiner.console import planned_trials, run_summary, schedule_words
    from refiner.space import Float, SearchSpace

    agent = refiner.Refiner(function=lambda p: p["x"] ** 2, space=SearchSpace([Float("x", -1.0, 1.0)]),
                            objective={"name": "loss", "direction": "min"}, rounds=3, trials_per_round=4,
                            initial_trials=2, directory=tmp_path, project_name="small0", seed=0).search()
    settings = agent.store.read_run()["settings"]
    assert planned_trials(settings) == 10 == len(agent.trials)
    assert schedule_words(settings) == "3 rounds: 2 trials, then 4 per round"
    assert "3 rounds: 2 trials, then 4 per round" in run_summary(agent.store)
    assert schedule_words({"rounds": 3, "trials_per_round": 10}) == "3 rounds of 10 trials"


def test_a_run_recorded_before_spaces_kept_defaults_still_resumes(tmp_path):
    import dataclasses

    from refiner.errors import SettingsChangedError

    plain = SearchSpace([Float("x", -1.0, 1.0)])
    with_default = SearchSpace([dataclasses.replace(plain["x"], default=0.5)])
    kw = dict(function=lambda p: p["x"] ** 2, objective=LOSS, rounds=1, trials_per_round=3, directory=tmp_path, seed=0,
              verbose=0)
    refiner.Refiner(space=plain, project_name="old", **kw).search()
    resumed = refiner.Refiner(space=with_default, project_name="old", **kw).search()  # e.g. build_model's default=
    assert len(resumed.trials) == 3
    refiner.Refiner(space=with_default, project_name="new", **kw).search()
    other = SearchSpace([dataclasses.replace(plain["x"], default=0.25)])
    with pytest.raises(SettingsChangedError, match="initial_space"):
        refiner.Refiner(space=other, project_name="new", **kw).search()  # a recorded default is a setting
