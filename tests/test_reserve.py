"""The exploration reserve: a share of each narrowed round proposed over the declared space, and
the box following a better trial it finds outside."""

from __future__ import annotations

import json

import numpy as np
import pytest

import refiner
from refiner.narrowing import NarrowingConfig, refine
from refiner.space import Choice, Float, SearchSpace
from refiner.store import RunStore
from refiner.surrogate import fit_surrogate
from refiner.trial import Objective, Trial, TrialState

LOSS = Objective("loss", "min")
SPACE = SearchSpace([Float("x", 0.0, 1.0), Float("y", 0.0, 1.0), Choice("kind", ("a", "b", "c"))])


def bowl(p):
    """Minimum 0 at x = 0.8, y = 0.5, kind a."""
    return (p["x"] - 0.8) ** 2 + (p["y"] - 0.5) ** 2 + {"a": 0.0, "b": 0.3, "c": 0.6}[p["kind"]]


def _run(tmp_path, **kw):
    settings = dict(function=bowl, space=SPACE, objective=LOSS, rounds=3, initial_trials=16, trials_per_round=8,
                    directory=tmp_path, project_name="run", seed=0, narrowing={"reserve": 0.25})
    settings.update(kw)
    return refiner.Refiner(**settings).search()


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["keras-tuner", "optuna"])
def test_narrowed_rounds_spend_a_quarter_on_the_declared_space(tmp_path, engine):
    agent = _run(tmp_path, engine=engine)
    store = RunStore(tmp_path / "run")
    assert not any(t.reserve for t in store.read_trials(0))  # round 0 searches the declared space anyway
    outside = 0
    for k in (1, 2):
        space = store.read_space(k)
        trials = store.read_trials(k)
        reserve = [t for t in trials if t.reserve]
        assert len(trials) == 8
        if space == SPACE:
            assert not reserve  # nothing narrowed: no reserve needed
            continue
        assert len(reserve) == 2, [t.trial_id for t in trials]  # round(0.25 * 8)
        assert all(t.trial_id.startswith(f"{k}-r") for t in reserve)
        assert all(SPACE.contains(t.hyperparameters) for t in reserve)
        assert all(space.contains(t.hyperparameters) for t in trials if not t.reserve)
        outside += sum(not space.contains(t.hyperparameters) for t in reserve)
        lines = (store.round_dir(k) / "trials.jsonl").read_text().splitlines()
        assert sum(json.loads(line).get("reserve", False) for line in lines) == 2
    assert outside >= 1  # the reserve does leave the box
    assert len({t.trial_id for t in agent.trials}) == len(agent.trials) == 32


def test_a_reserve_of_zero_the_default_keeps_every_trial_in_the_box(tmp_path):
    assert NarrowingConfig().reserve == 0
    _run(tmp_path, narrowing={})
    store = RunStore(tmp_path / "run")
    for k in (1, 2):
        assert all(store.read_space(k).contains(t.hyperparameters) and not t.reserve for t in store.read_trials(k))


def test_reserve_setting_is_validated():
    with pytest.raises(refiner.ValidationError, match="reserve: must be a number in \\[0, 0.5\\]"):
        NarrowingConfig(reserve=0.9)


def test_a_run_started_before_the_reserve_existed_resumes(tmp_path):
    _run(tmp_path, rounds=2, narrowing={})
    store = RunStore(tmp_path / "run")
    run = store.read_run()
    del run["settings"]["narrowing"]["reserve"]  # what an earlier version recorded
    store.write_run(run)
    _run(tmp_path, rounds=2, narrowing={})  # no "settings changed" refusal: absent means the default


def test_the_box_follows_a_better_trial_found_outside_it():
    rng = np.random.default_rng(0)
    box = SPACE.replace(Float("x", 0.0, 0.4)).replace(Choice("kind", ("b", "c")))
    trials = []
    for i in range(30):
        params = box.sample(rng)
        trials.append(Trial(f"1-{i:02d}", 1, params, float(bowl(params)), TrialState.COMPLETE))
    outside = {"x": 0.8, "y": 0.5, "kind": "a"}  # what a reserve trial found: better than anything in the box
    trials.append(Trial("1-r00", 1, outside, bowl(outside), TrialState.COMPLETE, reserve=True))
    surrogate = fit_surrogate(box, trials, LOSS, seed=0)
    space, decisions = refine(box, trials, surrogate, objective=LOSS, original_space=SPACE, seed=0)
    assert space.contains(outside)
    by_name = {d.name: d for d in decisions}
    assert by_name["x"].action == "expand" and by_name["x"].evidence["follows_trial"] == "1-r00"
    assert "to hold the best trial so far (1-r00" in by_name["x"].reason
    assert "a" in space["kind"].values
    assert by_name["y"].evidence.get("follows_trial") is None  # y = 0.5 was inside anyway
