"""The benchmark harness: a smoke run (2 seeds, tiny budgets, cheap problems), and the pieces it rests on."""

from __future__ import annotations

import dataclasses
import json
import logging
import math

import numpy as np
import pytest

from refiner.bench.problems import PROBLEMS, SUITES, get_problem
from refiner.errors import RefinerError
from refiner.bench.regions import contains_any, volume_fraction
from refiner.space import Boolean, Choice, Fixed, Float, Int, SearchSpace

RESULT_FIELDS = {"problem", "optimizer", "seed", "budget", "run_budget", "n_trials", "best_value", "f_star",
                 "regret", "wall_s", "objective_s", "orchestration_s"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    from refiner.bench.benchmark import BenchSettings, run_benchmark

    out = tmp_path_factory.mktemp("bench")
    settings = BenchSettings(suite="quick", budgets=(6, 12), seeds=2, out=out, jobs=1,
                             problems=("branin", "mixed"), optimizers=("refiner", "optuna_random"),
                             analysis_repeats=0)
    assert settings.validate() == []
    document = run_benchmark(settings)
    return out, document


def test_smoke_writes_the_documented_json(smoke):
    out, _ = smoke
    on_disk = json.loads((out / "bench.json").read_text())
    assert on_disk["format_version"] == 1
    for key in ("suite", "budgets", "seeds", "jobs", "problems", "optimizers", "runs", "results", "summary",
                "targets", "refiner_schedule", "wall_time_s", "errors", "plots"):
        assert key in on_disk, key
    assert on_disk["budgets"] == [6, 12] and on_disk["seeds"] == [0, 1]
    assert on_disk["errors"] == []
    # refiner runs once per budget; the budget-oblivious optimizer once, at the largest budget.
    runs = {(r["problem"], r["optimizer"], r["seed"], r["budget"]) for r in on_disk["runs"]}
    assert len(runs) == 2 * 2 * 2 + 2 * 2
    assert ("branin", "optuna_random", 0, 6) not in runs
    # ... and still has a result at the smaller budget, read off its curve.
    results = on_disk["results"]
    assert len(results) == 2 * 2 * 2 * 2
    for r in results:
        assert RESULT_FIELDS <= set(r)
        assert r["n_trials"] == r["budget"]
        assert math.isclose(r["orchestration_s"], r["wall_s"] - r["objective_s"])
    for b in ("6", "12"):
        table = on_disk["summary"]["per_problem"][b]
        assert set(table) == {"branin", "mixed"}
        for cell in table["branin"].values():
            assert {"median", "q25", "q75", "n", "stuck_rate", "orchestration_s"} <= set(cell)
            assert cell["q25"] <= cell["median"] <= cell["q75"] and cell["n"] == 2
        assert set(on_disk["summary"]["mean_rank"][b]) == {"refiner", "optuna_random"}
        assert on_disk["summary"]["win_rate"][b]["optuna_random"]["n"] == 4
    assert "curves.html" in on_disk["plots"]["files"] and (out / "curves.html").is_file()


def test_smoke_regret_is_measured_from_the_true_optimum(smoke):
    _, document = smoke
    stars = {p["name"]: p for p in document["problems"]}
    # Synthetic problems: f* is the known minimum (unless a run went below it by rounding).
    assert stars["branin"]["reference"] == pytest.approx(0.397887, abs=1e-6)
    assert stars["mixed"]["reference"] == pytest.approx(0.05)
    for p in stars.values():
        assert p["f_star"] <= p["reference"]
        assert p["f_star"] == min(p["reference"], p["best_found"])
    runs = {(r["problem"], r["optimizer"], r["seed"], r["budget"]): r for r in document["runs"]}
    for r in document["results"]:
        run = runs[(r["problem"], r["optimizer"], r["seed"], r["run_budget"])]
        best = min(run["values"][: r["budget"]])
        assert r["best_value"] == best
        assert r["f_star"] == stars[r["problem"]]["f_star"]
        assert r["regret"] == best - stars[r["problem"]]["f_star"]
        assert r["regret"] >= 0


def test_smoke_reports_refiner_narrowing(smoke):
    _, document = smoke
    for r in document["results"]:
        if r["optimizer"] == "refiner":
            assert isinstance(r["contains_optimum"], bool)
            assert isinstance(r["near_optimum"], bool)
            assert r["near_optimum"] or not r["contains_optimum"]  # the optimum itself is near it
            assert 0.0 <= r["volume_fraction"] <= 1.0
    narrowing = document["summary"]["refiner_narrowing"]["12"]
    assert narrowing["runs_with_known_optimum"] == 4
    assert narrowing["contains_optimum_share"] <= narrowing["near_optimum_share"] <= 1.0


def test_report_prints_a_table(smoke):
    from refiner.bench.report import format_report

    _, document = smoke
    text = format_report(document)
    assert "Final regret at budget 12" in text and "mean rank" in text and "Targets:" in text


def test_known_optima_are_the_minimum_of_each_synthetic_problem():
    for name in ("branin", "hartmann6", "ackley5_shifted", "levy4_shifted", "mixed"):
        p = get_problem(name)
        assert p.optima and all(p.space.contains(o) for o in p.optima)
        rng = np.random.default_rng(0)
        samples = [p.evaluate(p.space.sample(rng)) for _ in range(300)]
        assert min(samples) >= p.f_star - 1e-9, name
    assert get_problem("branin").f_star == pytest.approx(0.397887, abs=1e-6)
    assert get_problem("hartmann6").f_star == pytest.approx(-3.32237, abs=1e-5)
    assert get_problem("ackley5_shifted").f_star == pytest.approx(0.0, abs=1e-12)


def test_off_centre_optima_and_suites():
    for name in ("ackley5_shifted", "levy4_shifted"):
        p = get_problem(name)
        for param in p.space:
            u = param.to_unit(p.optima[0][param.name])
            assert abs(u - 0.5) >= 0.1, (name, param.name)  # no free gift for centre-seeded narrowing
    assert {"branin", "hartmann6", "mixed", "svc_digits", "hgb_breast_cancer"} <= set(SUITES["quick"])
    assert set(SUITES["quick"]) < set(SUITES["full"]) and "cnn_digits" in SUITES["full"]
    kinds = {type(p) for p in get_problem("mixed").space}
    assert {Int, Float, Choice} <= kinds and any(p.log for p in get_problem("mixed").space if isinstance(p, Float))


def test_volume_fraction_of_mixed_spaces():
    original = SearchSpace([Float("a", 0.0, 1.0), Float("lr", 1e-4, 1e-0, log=True), Int("n", 1, 10),
                            Choice("c", ("x", "y", "z", "w")), Boolean("b")])
    assert volume_fraction(original, original) == 1.0
    refined = SearchSpace([Float("a", 0.25, 0.75), Float("lr", 1e-3, 1e-1, log=True), Int("n", 1, 5),
                           Choice("c", ("x", "y")), Fixed("b", True)])
    # 0.5 (width) * 0.5 (2 of 4 decades) * 0.5 (5 of 10 values) * 0.5 (2 of 4 choices) * 0.5 (1 of 2)
    assert volume_fraction(original, refined) == pytest.approx(0.5**5)
    assert contains_any(refined, [{"a": 0.3, "lr": 0.01, "n": 2, "c": "x", "b": True}])
    assert not contains_any(refined, [{"a": 0.9, "lr": 0.01, "n": 2, "c": "x", "b": True}])


def test_the_volume_target_is_20_percent_at_30_trials_and_10_percent_at_60():
    from refiner.bench.summary import check_targets

    def summary(volume: float) -> dict:
        narrowing = {"contains_optimum_share": 1.0, "near_optimum_share": 1.0, "runs_with_known_optimum": 5,
                     "volume_fraction_median": volume, "volume_at_most_10pct_share": 0.0}
        per_budget = lambda value: {b: value for b in ("30", "60")}  # noqa: E731
        return {"mean_rank": per_budget({}), "per_problem": per_budget({}),
                "refiner_narrowing": per_budget(narrowing),
                "orchestration": per_budget({"refiner_over_kt_bayes_geomean": None, "refiner_over_kt_bayes": {}})}

    def volume_lines(volume: float) -> dict[str, bool | None]:
        return {t["target"]: t["met"] for t in check_targets(summary(volume), None, (30, 60)) if "volume" in t["target"]}

    assert volume_lines(0.15) == {"refined volume <= 20% of the original at budget 30": True,
                                  "refined volume <= 10% of the original at budget 60": False}
    assert volume_lines(0.25) == {"refined volume <= 20% of the original at budget 30": False,
                                  "refined volume <= 10% of the original at budget 60": False}
    assert set(volume_lines(0.05).values()) == {True}


def test_the_regret_targets_against_stock_bo_say_where_refiner_is_above_it():
    """Half of stock BO's median regret on 80 % of problems where it can be halved, and never above it."""
    from refiner.bench.summary import check_targets

    def lines(medians: dict[str, tuple[float, float]], floors=None) -> dict[str, tuple[bool, str]]:
        table = {p: {"refiner": {"median": mine}, "kt_bayes": {"median": bo}} for p, (mine, bo) in medians.items()}
        summary = {"mean_rank": {"60": {}}, "per_problem": {"60": table},
                   "refiner_narrowing": {"60": {"contains_optimum_share": None, "volume_fraction_median": None}},
                   "orchestration": {"60": {"refiner_over_kt_bayes_geomean": None, "refiner_over_kt_bayes": {}}}}
        return {t["target"]: (t["met"], t["evidence"]) for t in check_targets(summary, None, (60,), floors)
                if "kt_bayes" in t["target"] and "orchestration" not in t["target"]}

    half, never = ("median regret <= half of kt_bayes on >= 80% of problems at budget 60",
                   "median regret never above kt_bayes's at budget 60")
    got = lines({"a": (0.1, 1.0), "b": (0.2, 1.0), "c": (0.3, 1.0), "d": (0.4, 1.0), "e": (0.0, 0.0)})
    assert got == {half: (True, "4/4 problems (none missed; at the noise floor, left out: e)"),
                   never: (True, "never above on 5 problems")}
    got = lines({"a": (0.1, 1.0), "b": (0.2, 1.0), "c": (0.3, 1.0), "d": (0.9, 1.0), "e": (1.2, 1.0)})
    assert got == {half: (False, "3/5 problems (d, e missed)"), never: (False, "above on e")}
    # One misclassified image (a CV error's floor): stock BO there cannot be halved, so that problem is
    # left out of the share, not counted as missed; above the floor it counts again.
    one_image = {"svc": 1 / 900}
    got = lines({"a": (0.1, 1.0), "b": (0.2, 1.0), "c": (0.3, 1.0), "d": (0.4, 1.0), "svc": (1 / 900, 1 / 900)},
                one_image)
    assert got[half] == (True, "4/4 problems (none missed; at the noise floor, left out: svc)")
    got = lines({"a": (0.1, 1.0), "b": (0.2, 1.0), "c": (0.3, 1.0), "d": (0.9, 1.0), "svc": (2 / 900, 3 / 900)},
                one_image)
    assert got[half] == (False, "3/5 problems (d, svc missed)")


def test_settings_are_validated():
    from refiner.bench.benchmark import BenchSettings

    problems = BenchSettings(budgets=(3,), seeds=0, problems=("nope",), optimizers=("magic",)).validate()
    assert len(problems) == 4
    assert any("cannot fill 3 rounds" in p for p in problems)


def test_cli_rejects_bad_input(capsys):
    from refiner.cli import main

    assert main(["bench", "--budgets", "10,x", "--seeds", "1"]) == 2
    err = capsys.readouterr().err
    assert "refiner: error: --budgets" in err


def test_fast_gp_predict_matches_scikit_learn_bit_for_bit():
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import Matern

    from refiner.bench.optimizers import fast_gp_predict

    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(25, 4)), rng.normal(size=25)
    settings = dict(kernel=Matern(nu=2.5), n_restarts_optimizer=2, normalize_y=True, alpha=1e-4, random_state=1)
    stock = GaussianProcessRegressor(**settings).fit(x, y)
    fast = fast_gp_predict(GaussianProcessRegressor)(**settings).fit(x, y)
    for points in (rng.uniform(size=(1, 4)), rng.uniform(size=(50, 4)), x[:3]):
        m1, s1 = stock.predict(points, return_std=True)
        m2, s2 = fast.predict(points, return_std=True)
        assert np.array_equal(m1, m2) and np.array_equal(s1, s2)
    assert np.array_equal(stock.predict(points), fast.predict(points))  # other calls take the stock path


def test_problem_registry_names_match():
    assert all(name == p.name for name, p in PROBLEMS.items())


def test_reuse_runs_only_refiner_again_and_keeps_the_competitors_runs(smoke, tmp_path):
    from refiner.bench.benchmark import BenchSettings, run_benchmark

    out, first = smoke
    settings = BenchSettings(suite="quick", budgets=(6, 12), seeds=2, out=tmp_path, jobs=1,
                             problems=("branin", "mixed"), optimizers=("refiner", "optuna_random"),
                             analysis_repeats=0, plots=False, reuse=out / "bench.json")
    assert settings.validate() == []
    second = run_benchmark(settings)
    competitor = [r for r in first["runs"] if r["optimizer"] == "optuna_random"]
    assert second["reused"] == {"from": str(out / "bench.json"), "n_runs": len(competitor)} and competitor
    again = [r for r in second["runs"] if r["optimizer"] == "optuna_random"]
    assert sorted(json.dumps(r, sort_keys=True) for r in again) == sorted(json.dumps(r, sort_keys=True) for r in competitor)
    # refiner ran again: same seeds, same method, so the same values, in a new run
    refiner_runs = lambda doc: sorted((r["problem"], r["seed"], r["budget"], tuple(r["values"]))  # noqa: E731
                                      for r in doc["runs"] if r["optimizer"] == "refiner")
    assert refiner_runs(second) == refiner_runs(first)


def test_a_stopped_bench_resumes_keeping_every_run_it_finished(smoke, tmp_path, caplog):
    """A bench stopped after three runs records them in runs.partial.jsonl (the stop may tear a
    last line); `--resume` keeps them, runs the rest, and ends with the runs of a bench never stopped."""
    from refiner.bench.benchmark import PARTIAL_RUNS, BenchSettings, run_benchmark
    from refiner.bench.harness import code_version

    out, first = smoke
    settings = BenchSettings(suite="quick", budgets=(6, 12), seeds=2, out=tmp_path, jobs=1, problems=("branin",),
                             optimizers=("refiner", "optuna_random"), analysis_repeats=0, plots=False)

    class Stop(Exception):
        pass

    def stop_after_three(done: int, total: int, record: dict) -> None:
        if done == 3:
            raise Stop

    with pytest.raises(Stop):
        run_benchmark(settings, stop_after_three)
    assert not (tmp_path / "bench.json").exists()
    lines = (tmp_path / PARTIAL_RUNS).read_text().splitlines()
    assert len(lines) == 3
    assert {json.loads(line)["code"] for line in lines} == {code_version()}  # the commit that made each run
    lines[0] = json.dumps({**json.loads(lines[0]), "code": "0123456789ab"})  # as if made in an earlier session
    (tmp_path / PARTIAL_RUNS).write_text("\n".join(lines) + "\n")
    with open(tmp_path / PARTIAL_RUNS, "a") as fh:
        fh.write('{"problem": "branin", "optimi')  # a line torn by a kill

    with caplog.at_level(logging.WARNING, logger="refiner.bench.benchmark"):
        resumed = run_benchmark(dataclasses.replace(settings, resume=True))
    assert resumed["resumed"] == {"from": str(tmp_path), "n_runs": 3}
    assert f"1 of the 3 kept runs were made by other code (0123456789ab; now {code_version()})" in caplog.text
    assert resumed["code"] == code_version()
    assert not (tmp_path / PARTIAL_RUNS).exists()  # bench.json holds them all now
    key = lambda r: (r["problem"], r["optimizer"], r["seed"], r["budget"], tuple(r["values"]))  # noqa: E731
    assert sorted(map(key, resumed["runs"])) == sorted(key(r) for r in first["runs"] if r["problem"] == "branin")
    kept = [json.loads(line) for line in lines]
    assert all(any(json.dumps(k, sort_keys=True) == json.dumps(r, sort_keys=True) for r in resumed["runs"])
               for k in kept)  # the three finished runs are the ones kept, as they were recorded
    assert {r["jobs"] for r in resumed["runs"]} == {1}
    # A selection that leaves runs out is refused before anything runs: rewriting bench.json would lose them.
    with pytest.raises(RefinerError, match=r"leaves out \(branin/optuna_random/seed1/budget12 and 2 more\)"):
        run_benchmark(dataclasses.replace(settings, resume=True, seeds=1))
    # A method experiment's runs are not the product's: with other refiner settings they run again.
    again = run_benchmark(dataclasses.replace(settings, resume=True, refiner_narrowing={"top_fraction": 0.3}))
    assert again["resumed"]["n_runs"] == 2  # optuna_random's two runs only


def test_reuse_of_a_file_that_is_not_a_bench_json_is_refused(tmp_path):
    from refiner.bench.benchmark import BenchSettings

    bad = tmp_path / "bench.json"
    bad.write_text('{"runs": 3}')
    [problem] = BenchSettings(budgets=(6,), seeds=1, reuse=bad).validate()
    assert problem == f"--reuse: {bad}: not a bench.json (it has no list of runs)"
    [problem] = BenchSettings(budgets=(6,), seeds=1, reuse=tmp_path / "missing.json").validate()
    assert problem.startswith("--reuse: cannot read") and "missing.json" in problem


def test_the_fidelity_suite_gives_every_optimizer_the_same_epochs(tmp_path, capsys):
    """Smoke test of `refiner bench --suite fidelity`: one problem, one seed, 54 epochs, refiner in 2 rounds."""
    from refiner.bench.fidelity import FIDELITY_OPTIMIZERS, LC_PROBLEMS, MAX_EPOCHS
    from refiner.cli import main

    budget = 2 * MAX_EPOCHS
    assert main(["bench", "--suite", "fidelity", "--seeds", "1", "--fidelity-epochs", str(budget), "--problems",
                 "lc_branin", "--refiner-rounds", "2", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "fidelity.json").read_text())
    assert result["budget"] == budget
    runs = {r["optimizer"]: r for r in result["runs"]}
    assert set(runs) == set(FIDELITY_OPTIMIZERS)
    assert budget <= runs["refiner+fidelity"]["epochs"] <= budget + MAX_EPOCHS - 1  # fidelity.total kept
    assert runs["refiner"]["epochs"] == 3 * MAX_EPOCHS  # whole trials, at least the 3 that fill 2 rounds
    for name in ("optuna-tpe", "optuna-random", "optuna-tpe+hyperband"):  # stopped as soon as the budget is reached
        assert budget <= runs[name]["epochs"] < budget + MAX_EPOCHS
    problem = LC_PROBLEMS["lc_branin"]
    assert all(r["best_final"] is None or r["best_final"] >= 0.397887 + problem.scale * MAX_EPOCHS ** -1.5
               for r in result["runs"])  # never below the true floor: scores are final values, not early ones
    assert runs["refiner+fidelity"]["best_final"] is not None  # it trained a configuration to the end
    out = capsys.readouterr().out
    assert f"every optimizer given {budget} epochs" in out and "optuna-tpe+hyperband" in out
    assert main(["bench", "--suite", "fidelity", "--problems", "nope", "--out", str(tmp_path)]) == 2
    assert main(["bench", "--suite", "fidelity", "--fidelity-epochs", "20", "--out", str(tmp_path)]) == 2
    assert "--fidelity-epochs: must be at least 27" in capsys.readouterr().err


@pytest.mark.slow
def test_the_keras_suite_runs_real_models_at_hyperbands_epochs_and_resumes(tmp_path, capsys):
    """Smoke test of `refiner bench --suite keras`: one problem, one seed, max_epochs 3, two tools, in
    a spawned worker (`--jobs 2`); then `--resume`, which keeps the finished unit, and its refusals."""
    from refiner.cli import main

    assert main(["bench", "--suite", "keras", "--seeds", "1", "--problems", "cancer_mlp", "--keras-max-epochs", "3",
                 "--optimizers", "kt_hyperband,refiner+fidelity", "--refiner-rounds", "2", "--no-plots",
                 "--jobs", "2", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "keras.json").read_text())
    assert result["complete"] is True
    runs = {r["optimizer"]: r for r in result["runs"]}
    assert set(runs) == {"kt_hyperband", "refiner+fidelity"}
    budget = runs["kt_hyperband"]["epochs"]
    assert budget > 3 and runs["refiner+fidelity"]["budget"] == budget  # Hyperband's epochs are the budget
    assert runs["refiner+fidelity"]["epochs"] <= max(budget, 3) + 3 - 1  # given as fidelity.total, kept to
    for run in runs.values():
        finished = run["finished"]
        assert finished, run  # at least one model trained to max_epochs
        assert [spent for spent, _ in finished] == sorted(spent for spent, _ in finished)
        assert all(spent <= run["epochs"] for spent, _ in finished)
        within = [score for spent, score in finished if spent <= run["budget"]]
        assert run["best_at_budget"] == (min(within) if within else None)  # models past the budget never count
        assert 0 < run["train_s"] < run["wall_s"] and run["orchestration_s"] >= 0
    out = capsys.readouterr().out
    assert "refiner+fidelity" in out and "Targets:" in out and "orchestration" in out

    assert [r["jobs"] for r in result["runs"]] == [2, 2]  # seconds measured beside another worker
    from refiner.bench.harness import code_version

    assert {r["code"] for r in result["runs"]} == {code_version()}  # a later resume may mix code: each run says

    # --resume keeps the finished unit: nothing runs again, the file is the same.
    resume = ["bench", "--suite", "keras", "--problems", "cancer_mlp", "--keras-max-epochs", "3", "--refiner-rounds",
              "2", "--no-plots", "--resume", "--out", str(tmp_path)]
    assert main([*resume, "--seeds", "1", "--optimizers", "kt_hyperband,refiner+fidelity"]) == 0
    assert json.loads((tmp_path / "keras.json").read_text()) == result
    assert "resuming: 1 of 1 problem-seed units already in" in capsys.readouterr().err
    # Refused, one line, nothing run or written: runs the selection leaves out, or runs that would not compare.
    for refused, says in ((["--seeds", "2", "--optimizers", "kt_hyperband"], "leaves out (cancer_mlp seed 0 "
                                                                             "refiner+fidelity)"),
                          (["--seeds", "2", "--refiner-rounds", "3"], "refiner rounds 2, not 3, 3 and 3")):
        assert main([*resume, *refused]) == 2
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1, err

    assert main(["bench", "--suite", "keras", "--problems", "nope", "--out", str(tmp_path)]) == 2
    assert main(["bench", "--suite", "keras", "--optimizers", "kt_bayes,nope", "--out", str(tmp_path)]) == 2
    assert main(["bench", "--suite", "keras", "--keras-max-epochs", "9", "--resume", "--out", str(tmp_path)]) == 2
    assert "was made with max_epochs 3, factor 3 and refiner rounds 2, not 9, 3 and 3" in capsys.readouterr().err
    assert main(["bench", "--suite", "fidelity", "--resume", "--out", str(tmp_path)]) == 2
    assert "--resume: --suite fidelity does not resume" in capsys.readouterr().err
    assert json.loads((tmp_path / "keras.json").read_text()) == result  # refused: the file is untouched


def test_the_analysis_time_covers_a_whole_round_fit_refine_and_the_audit_of_earlier_cuts():
    from refiner.bench.analysis_time import measure_analysis_time

    timing = measure_analysis_time(repeats=2, n_trials=60)
    assert timing["cuts_audited"] > 0  # the earlier round narrowed something for the audit to judge
    for part in ("fit_surrogate_s", "refine_s", "audit_s"):
        assert len(timing[part]) == 2 and all(s > 0 for s in timing[part])
    totals = [sum(parts) for parts in zip(timing["fit_surrogate_s"], timing["refine_s"], timing["audit_s"])]
    assert timing["total_s_max"] == pytest.approx(max(totals))
