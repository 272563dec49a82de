"""The benchmark's noisy problems: their noise, and regret measured on the noiseless function."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refiner.bench.harness import Task, assemble, execute, incumbent
from refiner.bench.optimizers import Recorder
from refiner.bench.problems import PROBLEMS, SUITES, get_problem

NEW = ("branin_noisy", "hartmann6_noisy")
NOISY = ("branin_noisy", "hartmann6_noisy")


def test_noisy_problems_keep_the_known_optimum_of_their_noiseless_function():
    for name, plain in (("hartmann6_noisy", "hartmann6"), ("branin_noisy", "branin")):
        p = get_problem(name)
        assert p.f_star == get_problem(plain).f_star and p.optima == get_problem(plain).optima
        rng = np.random.default_rng(1)
        assert min(p.evaluate(p.space.sample(rng)) for _ in range(20_000)) > p.f_star


def test_new_problems_are_in_both_suites():
    for name in NEW:
        assert name in SUITES["quick"] and name in SUITES["full"], name
        assert PROBLEMS[name].kind == "synthetic" and PROBLEMS[name].all_float  # bayes_opt runs on them too
    assert {n for n, p in PROBLEMS.items() if p.noisy} == set(NOISY)


@pytest.mark.parametrize("name", NOISY)
def test_noisy_problem_scores_one_configuration_differently_on_each_call(name):
    p = get_problem(name)
    config = dict(p.optima[0])
    recorder = Recorder(p, seed=3)
    observed = [recorder(config) for _ in range(400)]
    assert len(set(observed)) == len(observed)  # repeat calls differ
    assert recorder.true_values == [p.f_star] * 400  # the noiseless value does not
    noise = np.array(observed) - p.f_star
    # The documented sd, within sampling error (400 draws: the sd's relative error is about 3.5%).
    assert np.std(noise) == pytest.approx(p.noise_sd, rel=0.15)
    assert abs(np.mean(noise)) < 4 * p.noise_sd / math.sqrt(400)
    # The same run seed repeats the sequence; another seed does not.
    again = Recorder(p, seed=3)
    assert [again(config) for _ in range(400)] == observed
    other = Recorder(p, seed=4)
    assert [other(config) for _ in range(400)] != observed
    # Deterministic problems are untouched: observation == noiseless value, no true_values recorded.
    plain = Recorder(get_problem("branin"), seed=3)
    assert plain(config) == plain(config) == get_problem("branin").evaluate(config)
    assert "true_values" not in plain.record(0.0) and "true_values" in recorder.record(0.0)


def test_noisy_problem_without_its_noise_stream_is_an_error():
    with pytest.raises(ValueError, match="noise stream"):
        get_problem("branin_noisy").observe(dict(get_problem("branin").optima[0]), None)


def test_incumbent_under_noise_is_the_true_value_of_the_best_observation():
    observed = [5.0, 3.0, 3.5, 1.0, 2.0]
    true = [5.2, 3.9, 2.0, 1.4, 1.1]  # trial 2 is truly better than trial 1, but was observed worse
    assert incumbent(observed, true) == [5.2, 3.9, 3.9, 1.4, 1.4]
    assert incumbent(observed) == [5.0, 3.0, 3.0, 1.0, 1.0]
    with pytest.raises(ValueError):
        incumbent(observed, true[:3])


def test_assemble_measures_noisy_regret_on_the_noiseless_function():
    f_star = 0.5
    # Observations below f* (lucky draws) neither lower f* nor make regret negative.
    record = {"problem": "branin_noisy", "optimizer": "optuna_random", "seed": 0, "budget": 4,
              "values": [2.0, 0.1, 0.4, 0.3], "true_values": [2.1, 0.9, 0.55, 0.8],
              "objective_s": [0.0] * 4, "elapsed_s": [1.0, 2.0, 3.0, 4.0], "wall_s": 4.0, "extra": {}}
    stars, results = assemble([record], ["branin_noisy"], [2, 4], {"branin_noisy": (f_star, "known optimum")})
    assert stars["branin_noisy"]["f_star"] == f_star and stars["branin_noisy"]["best_found"] == 0.55
    by_budget = {r["budget"]: r for r in results}
    # Best observation after 2 and 4 trials is trial 1 (0.1), truly worth 0.9, not the truly best trial 2.
    assert by_budget[2]["best_value"] == by_budget[4]["best_value"] == 0.9
    assert by_budget[4]["regret"] == pytest.approx(0.4)
    assert by_budget[4]["best_observed"] == 0.1


def test_a_noisy_run_end_to_end_is_reproducible_and_scored_on_the_noiseless_function():
    task = Task("branin_noisy", "optuna_random", seed=5, budget=12)
    first, second = execute(task), execute(task)
    assert "error" not in first
    assert first["values"] == second["values"] and first["true_values"] == second["true_values"]
    problem = get_problem("branin_noisy")
    noise = np.array(first["values"]) - np.array(first["true_values"])
    assert np.all(noise != 0) and np.all(np.abs(noise) < 6 * problem.noise_sd)
    _, results = assemble([first], ["branin_noisy"], [12], {"branin_noisy": problem.reference()})
    (result,) = results
    pick = int(np.argmin(first["values"]))
    assert result["best_value"] == first["true_values"][pick]
    assert result["regret"] == pytest.approx(first["true_values"][pick] - problem.f_star)
    assert result["regret"] >= 0
