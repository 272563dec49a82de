"""The Optuna engine: the same loop and run folder, one study per round, warm start, no repeats."""

from __future__ import annotations

import json
import math

import optuna
import pytest

import refiner
from refiner.check import check_run
from engine_kit import round_spec
from refiner.engines.optuna.engine import run_round
from refiner.space import Boolean, Choice, Condition, Float, Int, SearchSpace
from refiner.store import RunStore
from refiner.trial import Objective, TrialState

LOSS = Objective("loss", "min")
SPACE = SearchSpace([
    Float("x", -5.0, 10.0), Float("lr", 1e-4, 1e-1, log=True), Boolean("extra"),
    Int("width", 1, 8, conditions=[Condition("extra", (True,))]),
])
DISCRETE = SearchSpace([Choice("act", ("relu", "tanh", "elu")), Int("layers", 1, 4)])


def bowl(p):
    return (p["x"] - 2.0) ** 2 + (math.log10(p["lr"]) + 2.5) ** 2 + (p.get("width", 0) / 8.0)


def _round(tmp_path, space, fn, budget, kind="model", **kw):
    out = []
    spec = round_spec(tmp_path, space, fn, budget, kind=kind, **kw)
    run_round(spec, out.append, storage=f"sqlite:///{tmp_path}/optuna.db", study_prefix="t")
    return out


def test_conditional_parameters_appear_exactly_when_active(tmp_path):
    trials = _round(tmp_path, SPACE, bowl, 12, kind="random", round_index=0)
    assert len(trials) == 12 and all(t.ok for t in trials)
    for t in trials:
        assert SPACE.contains(t.hyperparameters)
        assert ("width" in t.hyperparameters) == t.hyperparameters["extra"]


def test_warm_trials_enter_the_study_and_are_not_rerun(tmp_path):
    warm = _round(tmp_path, DISCRETE, lambda p: float(p["layers"]), 5, kind="random", round_index=0)
    new = _round(tmp_path, DISCRETE, lambda p: float(p["layers"]), 7, warm_trials=warm)
    keys = [json.dumps(t.hyperparameters, sort_keys=True) for t in warm + new]
    assert len(keys) == len(set(keys)) == 12  # all 12 configurations, none twice
    study = optuna.load_study(study_name="t-round-1", storage=f"sqlite:///{tmp_path}/optuna.db")
    warm_ids = [t.user_attrs.get("refiner_trial_id") for t in study.trials[:5]]
    assert warm_ids == [t.trial_id for t in warm]


def test_exhausted_discrete_space_stops_instead_of_repeating(tmp_path):
    trials = _round(tmp_path, DISCRETE, lambda p: float(p["layers"]), 20, kind="random", round_index=0)
    keys = [json.dumps(t.hyperparameters, sort_keys=True) for t in trials]
    assert len(keys) == len(set(keys)) and len(keys) <= 12


def test_failures_are_recorded_and_told_as_failed(tmp_path):
    def flaky(p):
        if p["x"] < 0:
            raise RuntimeError("diverged")
        return float("nan") if p["x"] > 8 else bowl(p)

    trials = _round(tmp_path, SPACE, flaky, 12, kind="random", round_index=0)
    failed = [t for t in trials if t.status is TrialState.FAILED]
    assert failed and all(t.message for t in failed)
    assert all(t.ok == (0 <= t.hyperparameters["x"] <= 8) for t in trials)


def test_resumed_round_proposes_what_the_uninterrupted_round_would(tmp_path):
    warm = _round(tmp_path / "a", SPACE, bowl, 6, kind="random", round_index=0)
    full = _round(tmp_path / "b", SPACE, bowl, 6, warm_trials=warm)
    resumed = _round(tmp_path / "b", SPACE, bowl, 3, warm_trials=warm, done_trials=full[:3])
    assert [t.hyperparameters for t in resumed] == [t.hyperparameters for t in full[3:]]


def test_three_round_run_on_the_optuna_engine_writes_the_same_run_folder(tmp_path):
    agent = refiner.Refiner(function=bowl, space=SPACE, objective=LOSS, rounds=3, trials_per_round=10,
                            directory=tmp_path, project_name="opt", seed=0, engine="optuna",
                            narrowing={"reserve": 0.25}).search()
    store = RunStore(tmp_path / "opt")
    check_run(store)  # every file validates
    assert [len(store.read_trials(k)) for k in range(3)] == [10, 10, 10]
    assert store.read_run()["settings"]["engine"] == "optuna"
    assert (tmp_path / "opt" / "optuna.db").exists()
    summaries = optuna.get_all_study_summaries(storage=f"sqlite:///{tmp_path}/opt/optuna.db")
    # One study per round, and one for each narrowed round's exploration reserve (another space).
    reserve = [f"opt-round-{k}-reserve" for k in (1, 2) if any(t.reserve for t in store.read_trials(k))]
    assert reserve  # the bowl narrows, so a reserve ran
    assert sorted(s.study_name for s in summaries) == sorted(["opt-control", "opt-round-0", "opt-round-1",
                                                              "opt-round-2"] + reserve)
    assert agent.refined_space.contains(agent.best_trial.hyperparameters)


def test_bayesian_rounds_use_the_gp_sampler_only_with_torch_and_no_conditions(monkeypatch):
    import importlib.util

    from refiner.engines.optuna.engine import _sampler, model_sampler_kind

    unconditional = SearchSpace([Float("x", -5.0, 10.0), Choice("act", ("relu", "tanh"))])
    real_find_spec = importlib.util.find_spec
    assert model_sampler_kind(unconditional) == ("gp" if real_find_spec("torch") else "tpe")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "torch" else real_find_spec(name, *a))
    assert model_sampler_kind(unconditional) == "gp"
    assert model_sampler_kind(SPACE) == "tpe"  # `width` depends on `extra`: GPSampler cannot model that
    assert isinstance(_sampler("gp", 1, 30), optuna.samplers.GPSampler)
    assert isinstance(_sampler("tpe", 1, 30), optuna.samplers.TPESampler)


def test_engine_and_storage_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="`engine` must be one of keras-tuner, optuna"):
        refiner.Refiner(function=bowl, space=SPACE, engine="hyperopt", directory=tmp_path)
    with pytest.raises(ValueError, match="`storage` is not an option of the keras-tuner engine"):
        refiner.Refiner(function=bowl, space=SPACE, storage="sqlite:///x.db", directory=tmp_path)


@pytest.mark.slow
def test_keras_hypermodel_runs_unchanged_on_optuna(tmp_path):
    from test_loop import _tiny_data, tiny_build_model

    x, y = _tiny_data()
    agent = refiner.Refiner(hypermodel=tiny_build_model, objective="val_accuracy", rounds=2, trials_per_round=3,
                            directory=tmp_path, project_name="k", seed=0, engine="optuna",
                            narrowing={"min_trials": 3, "min_cv_score": -1.0})
    agent.search(x, y, epochs=1, validation_split=0.25, batch_size=64)
    assert len(agent.trials) == 6 and all(t.ok and 0 <= t.score <= 1 for t in agent.trials)
    assert all("val_loss" in t.metrics for t in agent.trials)


def test_tpe_told_the_round_space_proposes_what_tpe_inferring_it_proposes():
    # The round tells TPE its space instead of letting Optuna infer it from the trials on every
    # proposal (one storage read less per trial). That is only a saving if the proposals stay the
    # same: an Optuna whose inference or ordering changed would make this fail.
    from refiner.engines.optuna.engine import _sampler

    space = SearchSpace([Float("x", -5.0, 10.0), Float("lr", 1e-4, 1e-1, log=True), Int("layers", 1, 4),
                         Choice("act", ("relu", "tanh", "elu"))])
    distributions = space.to_optuna()
    rng = __import__("numpy").random.default_rng(3)
    history = []
    for _ in range(15):
        params = space.sample(rng)
        history.append(optuna.trial.create_trial(params=params, distributions=distributions,
                                                 value=(params["x"] - 2.0) ** 2 + params["layers"]))
    proposals = {}
    for label, told in (("inferred", None), ("told", distributions)):
        study = optuna.create_study()
        study.add_trials(history)
        proposals[label] = []
        for seed in range(6):
            study.sampler = _sampler("tpe", seed, 30, told)
            trial = study.ask(distributions)
            proposals[label].append(trial.params)
            study.tell(trial, 1.0)
    assert proposals["told"] == proposals["inferred"]
    assert len({json.dumps(p, sort_keys=True) for p in proposals["told"]}) == 6  # TPE proposed, not one point
