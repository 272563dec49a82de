"""The KerasTuner round engine: warm start, no repeated configurations, failures, deterministic resume."""

from __future__ import annotations

import math

import pytest

from engine_kit import round_spec
from refiner.engines.keras_tuner import run_round
from refiner.space import Choice, Float, Int, SearchSpace
from refiner.trial import Objective, TrialState

LOSS = Objective("loss", "min")
CONTINUOUS = SearchSpace([Float("x", -5.0, 10.0), Float("y", 0.0, 15.0)])
DISCRETE = SearchSpace([Choice("act", ("relu", "tanh", "elu")), Int("layers", 1, 4)])  # 12 configurations


def quadratic(p):
    return (p["x"] - 1.0) ** 2 + (p["y"] - 2.0) ** 2


def _run(tmp_path, kind, space, fn, budget, **kw):
    out = []
    run_round(round_spec(tmp_path / kind, space, fn, budget, kind=kind, **kw), out.append)
    return out


def _key(values):
    return tuple(sorted(values.items()))


def test_random_round_records_every_trial_in_space(tmp_path):
    trials = _run(tmp_path, "random", CONTINUOUS, quadratic, 6)
    assert len(trials) == 6
    assert all(t.ok and CONTINUOUS.contains(t.hyperparameters) for t in trials)
    assert all(math.isclose(t.score, quadratic(t.hyperparameters)) for t in trials)
    assert len({t.trial_id for t in trials}) == 6


def test_bayesian_never_repeats_on_a_discrete_space_and_stops_when_exhausted(tmp_path):
    trials = _run(tmp_path, "model", DISCRETE, lambda p: p["layers"] + (p["act"] == "tanh"), 20)
    keys = [_key(t.hyperparameters) for t in trials]
    assert len(keys) == len(set(keys)), "a configuration was evaluated twice"
    assert len(trials) <= 12  # the space has 12 configurations; the round stops instead of repeating


def test_warm_trials_are_not_rerun_and_count_as_initial_points(tmp_path):
    warm = _run(tmp_path / "a", "random", DISCRETE, lambda p: float(p["layers"]), 5)
    new = _run(tmp_path / "b", "model", DISCRETE, lambda p: float(p["layers"]), 7, warm_trials=warm)
    warm_keys = {_key(t.hyperparameters) for t in warm}
    new_keys = [_key(t.hyperparameters) for t in new]
    assert not warm_keys & set(new_keys)
    assert len(set(new_keys)) == len(new_keys) == 7  # 5 warm + 7 new = all 12 configurations


def test_failed_and_nan_trials_are_recorded_as_failed_and_the_round_goes_on(tmp_path):
    def flaky(p):
        if p["x"] < 0:
            raise RuntimeError("diverged")
        if p["y"] > 10:
            return float("inf")  # stock KerasTuner would turn this into 0, the apparent best
        if p["y"] > 7:
            return float("nan")
        return quadratic(p)

    trials = _run(tmp_path, "random", CONTINUOUS, flaky, 12)
    assert len(trials) == 12
    failed = [t for t in trials if t.status is TrialState.FAILED]
    assert failed and all(t.score is None and t.message for t in failed)
    assert any("diverged" in t.message for t in failed)
    assert all(t.ok == (t.hyperparameters["x"] >= 0 and t.hyperparameters["y"] <= 7) for t in trials)


def test_resumed_round_proposes_what_the_uninterrupted_round_would(tmp_path):
    warm = _run(tmp_path / "a", "random", CONTINUOUS, quadratic, 5)
    full = _run(tmp_path / "b", "model", CONTINUOUS, quadratic, 6, warm_trials=warm)
    resumed = _run(tmp_path / "b", "model", CONTINUOUS, quadratic, 3, warm_trials=warm, done_trials=full[:3])
    assert [t.hyperparameters for t in resumed] == [t.hyperparameters for t in full[3:]]
    assert [t.trial_id for t in resumed] == [t.trial_id for t in full[3:]]
    # The interrupted round's KerasTuner folder is kept, not deleted.
    assert (tmp_path / "b" / "model" / "kt.interrupted-1").is_dir()


def test_function_may_return_metrics_dict_and_must_include_objective(tmp_path):
    trials = _run(tmp_path, "random", CONTINUOUS, lambda p: {"loss": quadratic(p), "extra": 1.0}, 2)
    assert all(t.metrics["extra"] == 1.0 for t in trials)
    trials = _run(tmp_path / "c", "random", CONTINUOUS, lambda p: {"other": 1.0}, 2)
    assert all(t.status is TrialState.FAILED and "without the objective" in t.message for t in trials)


def test_unknown_round_kind_is_refused(tmp_path):
    with pytest.raises(ValueError, match="round kind"):
        _run(tmp_path, "grid", CONTINUOUS, quadratic, 1)
