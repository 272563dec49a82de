"""The benchmark's multimodal and noisy problems: their known optima, their noise, and regret under noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize

from refiner.bench.harness import Task, assemble, execute, incumbent
from refiner.bench.optimizers import Recorder
from refiner.bench.problems import PROBLEMS, SUITES, get_problem

NEW = ("wells4", "styblinski5", "branin_noisy", "hartmann6_noisy")
NOISY = ("branin_noisy", "hartmann6_noisy")


def _as_params(x: np.ndarray) -> dict[str, float]:
    return {f"x{i}": float(v) for i, v in enumerate(x)}


def _bounds(name: str) -> list[tuple[float, float]]:
    return [(p.low, p.high) for p in get_problem(name).space]  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["wells4", "styblinski5", "hartmann6_noisy"])
def test_known_optimum_is_a_local_minimum_no_random_sample_beats(name):
    p = get_problem(name)
    (optimum,) = p.optima
    assert p.space.contains(optimum) and p.f_star == p.evaluate(optimum)
    x0 = np.array([optimum[f"x{i}"] for i in range(len(p.space))])
    # A local optimiser started at the known minimiser finds nothing lower (to rounding).
    local = minimize(lambda x: p.evaluate(_as_params(x)), x0, method="L-BFGS-B", bounds=_bounds(name))
    assert local.fun >= p.f_star - 1e-9, (name, local.fun, p.f_star)
    assert np.max(np.abs(local.x - x0)) < 1e-3
    # ... and 20,000 uniform samples never beat it.
    rng = np.random.default_rng(1)
    assert min(p.evaluate(p.space.sample(rng)) for _ in range(20_000)) > p.f_star


def test_literature_values_of_the_known_optima():
    # Styblinski-Tang: -39.16617 per coordinate at x_i = -2.903534 (Surjanovic & Bingham).
    st = get_problem("styblinski5")
    assert st.f_star == pytest.approx(-39.16617 * 5, abs=1e-4)
    assert all(v == pytest.approx(-2.903534, abs=1e-6) for v in st.optima[0].values())
    # Its other basin, +2.7468 per coordinate, is shallower: one coordinate there costs 14.137.
    second = minimize(lambda x: st.evaluate(_as_params(x)), np.array([2.7, -2.9, -2.9, -2.9, -2.9]),
                      method="L-BFGS-B", bounds=_bounds("styblinski5"))
    assert second.x[0] == pytest.approx(2.746803, abs=1e-4)
    assert second.fun - st.f_star == pytest.approx(39.16617 - 25.02945, abs=1e-4)
    assert get_problem("wells4").f_star == pytest.approx(-1.46021, abs=1e-5)


def test_second_minimum_is_the_next_deepest_local_minimum_so_a_value_below_it_is_in_the_global_basin():
    from refiner.bench import problems as P

    starts = {"wells4": list(P._WELLS_CENTRE),
              "styblinski5": [np.array([2.7 if i == k else -2.9 for i in range(5)]) for k in range(5)],
              "hartmann6": [np.array([0.40, 0.88, 0.85, 0.57, 0.14, 0.04])]}
    for name, points in starts.items():
        p = get_problem(name)
        local = [minimize(lambda x: p.evaluate(_as_params(x)), x0, method="L-BFGS-B", bounds=_bounds(name)).fun
                 for x0 in points]
        above = [v for v in local if v > p.f_star + 1e-6]
        assert p.second_minimum == pytest.approx(min(above), abs=1e-5), name
        # ... and points below it descend to the global minimiser: clouds around it of growing width
        # (uniform samples almost never score that low), each point below the second minimum.
        rng = np.random.default_rng(3)
        x_star = np.array([p.optima[0][f"x{i}"] for i in range(len(p.space))])
        low, high = np.array(_bounds(name)).T
        below = 0
        for width in (0.05, 0.15, 0.3):
            for x0 in np.clip(x_star + width * (high - low) * rng.standard_normal((150, len(x_star))), low, high):
                if p.evaluate(_as_params(x0)) < p.second_minimum:
                    below += 1
                    end = minimize(lambda v: p.evaluate(_as_params(v)), x0, method="L-BFGS-B", bounds=_bounds(name)).x
                    assert np.max(np.abs(end - x_star)) < 1e-2, (name, x0)
        assert below >= 15, (name, below)  # not vacuous (19 on Hartmann-6, the fewest)
    assert get_problem("hartmann6_noisy").second_minimum == get_problem("hartmann6").second_minimum
    assert [n for n, q in PROBLEMS.items() if q.second_minimum is not None] == [
        "hartmann6", "wells4", "styblinski5", "hartmann6_noisy"]


def test_noisy_problems_keep_the_known_optimum_of_their_noiseless_function():
    for name, plain in (("hartmann6_noisy", "hartmann6"), ("branin_noisy", "branin")):
        p = get_problem(name)
        assert p.f_star == get_problem(plain).f_star and p.optima == get_problem(plain).optima
        rng = np.random.default_rng(1)
        assert min(p.evaluate(p.space.sample(rng)) for _ in range(20_000)) > p.f_star


def test_wells4_has_separate_basins_and_a_decoy_around_which_narrowing_loses_the_optimum():
    from refiner.bench import problems as P

    p = get_problem("wells4")
    # Each well is its own local minimum, and all of them are shallower than the global one.
    minima = []
    for centre in P._WELLS_CENTRE:
        local = minimize(lambda x: p.evaluate(_as_params(x)), centre, method="L-BFGS-B", bounds=_bounds("wells4"))
        assert np.linalg.norm(local.x - centre) < 0.05  # it stayed in its own well
        minima.append(local.fun)
    assert minima[0] == pytest.approx(p.f_star, abs=1e-9)
    assert min(minima[1:]) > p.f_star + 0.2  # well 2, the next deepest, is 0.26 shallower
    assert len({round(m, 2) for m in minima}) == len(minima)  # different depths
    # The global well is narrow and the decoy (well 1) the widest ...
    assert P._WELLS_WIDTH[1] == P._WELLS_WIDTH.max() and P._WELLS_WIDTH[0] < P._WELLS_WIDTH[1]
    # ... and it dominates what a random search sees: most of the best 10% of a uniform sample lie
    # nearest the decoy, few nearest the global well.
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(20_000, 4))
    f = np.array([p.evaluate(_as_params(row)) for row in x])
    top = x[f <= np.quantile(f, 0.1)]
    nearest = np.argmin(((top[:, None, :] - P._WELLS_CENTRE[None]) ** 2).sum(-1) / P._WELLS_WIDTH**2, axis=1)
    share = np.bincount(nearest, minlength=len(P._WELLS_CENTRE)) / len(top)
    assert share[1] > 0.5 and share[0] < 0.2, share
    # A box around the decoy of +-0.3 in every coordinate excludes the global minimiser.
    (optimum,) = p.optima
    assert any(abs(optimum[f"x{i}"] - P._WELLS_CENTRE[1][i]) > 0.3 for i in range(4))
    # Off-centre: no coordinate of the minimiser is in the middle 20% of its range.
    for param in p.space:
        assert abs(param.to_unit(optimum[param.name]) - 0.5) >= 0.1


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


def test_the_summary_counts_runs_that_reached_the_global_basin_and_splits_containment_by_it():
    """Containment misses on multimodal problems are mostly runs that never saw the global basin: the
    bench says, per optimizer, how many runs reached it, and refiner's containment in each group."""
    from refiner.bench.report import format_report
    from refiner.bench.summary import summarise

    wells = get_problem("wells4")
    second = wells.second_minimum

    def record(optimizer: str, seed: int, best: float, contains: bool | None = None) -> dict:
        extra = {} if contains is None else {"contains_optimum": contains, "volume_fraction": 0.1}
        return {"problem": "wells4", "optimizer": optimizer, "seed": seed, "budget": 2, "values": [0.0, best],
                "objective_s": [0.0, 0.0], "elapsed_s": [1.0, 2.0], "wall_s": 2.0, "extra": extra}

    records = [record("refiner", 0, second - 0.01, True), record("refiner", 1, second + 0.01, False),
               record("refiner", 2, wells.f_star + 0.5, False), record("kt_bayes", 0, second - 0.2),
               record("kt_bayes", 1, second + 0.3), record("kt_bayes", 2, second + 0.3)]
    _, results = assemble(records, ["wells4"], [2], {"wells4": wells.reference()})
    assert [r["global_basin"] for r in results] == [True, False, False, True, False, False]
    summary = summarise(results, ["wells4"], ["refiner", "kt_bayes"], [2])
    assert summary["global_basin"]["2"] == {"wells4": {"refiner": [1, 3], "kt_bayes": [1, 3]}}
    assert summary["refiner_narrowing"]["2"]["contains_by_basin"] == {"found": [1, 1], "not_found": [0, 2]}
    # A problem without a known second minimum gets no basin line.
    _, plain = assemble([{**records[0], "problem": "branin"}], ["branin"], [2], {"branin": (0.397887, "known")})
    assert "global_basin" not in plain[0]
    text = format_report({"budgets": [2], "problems": [{"name": "wells4"}], "seeds": [0, 1, 2], "optimizers": [{"name": "refiner"},
                          {"name": "kt_bayes"}], "summary": summary, "targets": [], "wall_time_s": 1.0, "jobs": 1,
                          "n_runs": 6, "errors": []})
    assert "global basin reached at budget 2 (best below the second-deepest minimum), runs: wells4 refiner 1/3, " \
           "kt_bayes 1/3" in text
    assert "refined space holds the optimum in 1/1 runs that reached the global basin and 0/2 that did not" in text
