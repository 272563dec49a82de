"""Regions: a search space that is a union of boxes, found by grouping the good set (issue 12).

The space (contains, sample, JSON, validation, volume), the narrowing step (two separated modes
make two regions, one mode none), the exports (the generated KerasTuner and Optuna code run, and
every point they draw lies in the union), and real short runs on both engines.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_narrowing import StubSurrogate, make_trials

from refiner import schemas
from refiner.bench.regions import contains_any, holds_near_optimum, volume_fraction
from refiner.errors import ValidationError
from refiner.export import render
from refiner.narrowing import NarrowingConfig, decisions_document, propose, refine
from refiner.narrowing_method.constants import MAX_UNION_SHARE, MIN_SILHOUETTE
from refiner.narrowing_method.regions import groups
from refiner.space import Choice, Condition, Float, Int, SearchSpace
from refiner.space.regions import union_fraction

st_settings = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BOX = SearchSpace([Float("x", 0.0, 1.0), Float("y", 0.0, 1.0)])
CENTRES = [(0.2, 0.25), (0.8, 0.7)]  # two narrow wells of equal depth


def wells(hp: dict, width: float = 0.05) -> float:
    """Maximised: two equal narrow Gaussian wells, far apart."""
    return sum(math.exp(-((hp["x"] - cx) ** 2 + (hp["y"] - cy) ** 2) / (2 * width**2)) for cx, cy in CENTRES)


def one_well(hp: dict) -> float:
    return -((hp["x"] - 0.3) ** 2 + (hp["y"] - 0.6) ** 2)


MIXED = SearchSpace([
    Float("lr", 1e-4, 1e-1, log=True),
    Int("units", 16, 256, step=16),
    Float("x", 0.0, 1.0),
    Choice("act", ("relu", "tanh")),
    Float("drop", 0.0, 0.5, conditions=(Condition("act", ("relu",)),)),
])
MIXED_REGIONS = [{"lr": [1e-4, 1e-3], "units": [16, 64]}, {"lr": [1e-2, 1e-1], "x": [0.5, 1.0]}]


def in_gap() -> dict:
    return {"lr": 1e-2, "units": 16, "x": 0.2, "act": "tanh"}  # in the box, in neither region


# -- the space ---------------------------------------------------------------------------------------
def test_json_round_trip_is_exact_and_old_files_still_read():
    space = MIXED.with_regions(MIXED_REGIONS)
    text = space.to_json()
    again = SearchSpace.from_json(text)
    assert again == space and hash(again) == hash(space) and again.to_json() == text
    assert json.loads(text)["regions"] == MIXED_REGIONS
    assert SearchSpace.from_json(MIXED.to_json()).regions == ()  # no `regions`: a plain box, as before
    assert "regions" not in MIXED.to_dict()
    assert schemas.problems(space.to_dict(), "search_space") == []
    assert MIXED.with_regions(MIXED_REGIONS[::-1]) != space  # regions take part in equality
    assert space.without_regions() == MIXED


def test_contains_needs_one_region_and_the_ranges_keep_the_enclosing_box():
    space = MIXED.with_regions(MIXED_REGIONS)
    assert space["lr"] == MIXED["lr"]  # code reading ranges sees the enclosing box
    point = in_gap()
    assert MIXED.contains(point) and not space.contains(point)
    assert space.contains({**point, "units": 48, "lr": 5e-4}) and space.region_of({**point, "units": 48, "lr": 5e-4}) == 0
    assert space.contains({**point, "x": 0.7}) and space.region_of({**point, "x": 0.7}) == 1
    assert not space.contains({**point, "x": 0.7, "lr": 0.5})  # outside the enclosing box


def test_sample_stays_in_the_union_and_draws_regions_by_volume():
    space = MIXED.with_regions(MIXED_REGIONS)
    rng = np.random.default_rng(0)
    points = [space.sample(rng) for _ in range(3000)]
    assert all(space.contains(p) for p in points)
    share0 = np.mean([space.region_of(p) == 0 for p in points])
    volumes = space.region_volumes()  # lr: 1/3 of the log width each; units 4/16, x 1/2
    assert volumes == pytest.approx([1 / 3 * 4 / 16, 1 / 3 * 0.5])
    assert share0 == pytest.approx(volumes[0] / sum(volumes), abs=0.03)


def test_sample_is_uniform_over_overlapping_regions():
    space = BOX.with_regions([{"x": [0.0, 0.6]}, {"x": [0.4, 1.0]}])  # the union is the whole box
    rng = np.random.default_rng(1)
    xs = np.array([space.sample(rng)["x"] for _ in range(6000)])
    counts = np.histogram(xs, bins=5, range=(0, 1))[0] / len(xs)
    assert counts == pytest.approx([0.2] * 5, abs=0.02)  # the overlap is not drawn twice as often


@pytest.mark.parametrize("regions, problem", [
    ([{"x": [0.9, 0.2]}, {"x": [0.0, 1.0]}], "regions[0].x: low 0.9 is above high 0.2"),
    ([{"x": [0.0, 1.0]}, {"x": [0.5, 1.5]}], "regions[1].x: high 1.5 is outside the range of 'x' [0.0, 1.0]"),
    ([{"z": [0.0, 1.0]}, {"x": [0.0, 1.0]}], "regions[0].z: must name a parameter of the space, got 'z'"),
    ([{"act": [0, 1]}, {"x": [0.0, 1.0]}], "regions[0].act: must name a float or int parameter"),
    ([{"drop": [0.0, 0.1]}, {"x": [0.0, 1.0]}], "regions[0].drop: must name an unconditional parameter"),
    ([{"units": [20, 64]}, {"x": [0.0, 1.0]}], "regions[0].units: low 20 is not a value of 'units'"),
    ([{"x": [0.0, 1.0]}], "regions: must hold at least 2 regions"),
    ([{}, {"x": [0.0, 1.0]}], "regions[0]: must bound at least one numeric parameter"),
])
def test_bad_regions_get_one_line_errors_naming_field_and_rule(regions, problem):
    with pytest.raises(ValidationError) as info:
        MIXED.with_regions(regions)
    assert any(p.startswith(problem) for p in info.value.problems), info.value.problems
    assert all("\n" not in p for p in info.value.problems)
    document = {**MIXED.to_dict(), "regions": regions}
    with pytest.raises(ValidationError) as info:
        SearchSpace.from_dict(document, source="space.json")
    assert any(problem.split(":")[0] in p for p in info.value.problems)


def test_schema_refuses_malformed_regions():
    document = {**BOX.to_dict(), "regions": [{"x": [0.1]}, {"x": "a"}]}
    found = schemas.problems(document, "search_space")
    assert any(p.startswith("regions[0].x") for p in found) and any(p.startswith("regions[1].x") for p in found)


def test_override_with_carries_regions_and_drops_those_it_overrides():
    space = MIXED.with_regions(MIXED_REGIONS)
    assert MIXED.override_with(space) == space  # a refined space file with regions keeps them
    assert space.override_with(SearchSpace([Float("x", 0.0, 0.9)])).regions == ()  # x set anew: no regions
    kept = space.override_with(SearchSpace([Choice("act", ("relu", "tanh", "gelu"))]))
    assert kept.regions == space.regions


def test_nearest_in_regions():
    space = MIXED.with_regions(MIXED_REGIONS)
    moved = space.nearest_in_regions({**in_gap(), "lr": 2e-3, "units": 80})
    assert space.contains(moved) and moved["lr"] == pytest.approx(1e-3) and moved["units"] == 64
    assert space.nearest_in_regions({**in_gap(), "x": 0.7}) == {**in_gap(), "x": 0.7}  # already inside


# -- volume --------------------------------------------------------------------------------------------
def test_union_volume_of_overlapping_regions_is_exact():
    # [0, .5]^2 and [.25, .75]^2 overlap in [.25, .5]^2: 0.25 + 0.25 - 0.0625 (inclusion-exclusion).
    space = BOX.with_regions([{"x": [0.0, 0.5], "y": [0.0, 0.5]}, {"x": [0.25, 0.75], "y": [0.25, 0.75]}])
    assert union_fraction({p.name: p for p in space}, space.regions) == pytest.approx(0.4375)
    rng = np.random.default_rng(0)
    mc = np.mean([space.contains(BOX.sample(rng)) for _ in range(20000)])
    assert mc == pytest.approx(0.4375, abs=0.015)  # Monte Carlo agrees
    three = BOX.with_regions([{"x": [0.0, 0.5]}, {"x": [0.25, 0.75]}, {"x": [0.5, 1.0]}])
    assert union_fraction({p.name: p for p in three}, three.regions) == pytest.approx(1.0)


def test_bench_volume_fraction_and_contains_any_honour_regions():
    original = SearchSpace([Float("x", 0.0, 2.0), Float("y", 0.0, 1.0)])
    refined = SearchSpace([Float("x", 0.0, 1.0), Float("y", 0.0, 1.0)],
                          [{"x": [0.0, 0.25]}, {"x": [0.75, 1.0], "y": [0.0, 0.5]}])
    assert volume_fraction(original, refined.without_regions()) == pytest.approx(0.5)
    assert volume_fraction(original, refined) == pytest.approx(0.5 * (0.25 + 0.125))
    assert contains_any(refined, [{"x": 0.1, "y": 0.9}])
    assert not contains_any(refined, [{"x": 0.5, "y": 0.1}, {"x": 0.9, "y": 0.9}])  # the gap, and beside region 1


# -- the narrowing step --------------------------------------------------------------------------------
def test_two_separated_modes_make_two_regions_one_per_mode():
    trials = make_trials(BOX, wells, 40)
    proposal = propose(BOX, trials, StubSurrogate(BOX, wells), objective="accuracy")
    space, regions = proposal.space, proposal.regions
    assert regions is not None and len(space.regions) == 2
    holders = sorted(space.region_of({"x": cx, "y": cy}) for cx, cy in CENTRES)
    assert holders == [0, 1]  # each mode in its own region
    assert not space.contains({"x": 0.5, "y": 0.5})  # the gap between them is cut
    assert regions.silhouette >= MIN_SILHOUETTE and regions.share <= MAX_UNION_SHARE
    assert regions.reason.startswith("2 regions: the good configurations form 2 separate groups in x, y")
    assert [d.name for d in proposal.decisions] == ["x", "y"]  # still one decision per parameter
    best = max(trials, key=lambda t: t.score)
    assert space.contains(best.hyperparameters)
    document = decisions_document(proposal.decisions, round_index=0, n_trials=40, surrogate_trusted=True,
                                  config=NarrowingConfig(), regions=regions.to_dict())
    document = json.loads(json.dumps(document, allow_nan=False))
    assert schemas.problems(document, "decisions") == []
    assert SearchSpace.from_dict(document["next_space"]) == space
    assert refine(BOX, trials, StubSurrogate(BOX, wells), objective="accuracy")[0] == space


def test_one_mode_makes_no_regions_and_changes_nothing():
    trials = make_trials(BOX, one_well, 40)
    on = propose(BOX, trials, StubSurrogate(BOX, one_well), objective="accuracy")
    off = propose(BOX, trials, StubSurrogate(BOX, one_well), objective="accuracy", config=NarrowingConfig(max_regions=1))
    assert on.regions is None and on.space.regions == ()
    assert on.space == off.space and [d.to_dict() for d in on.decisions] == [d.to_dict() for d in off.decisions]


def test_max_regions_one_switches_regions_off():
    trials = make_trials(BOX, wells, 40)
    proposal = propose(BOX, trials, StubSurrogate(BOX, wells), objective="accuracy",
                       config=NarrowingConfig(max_regions=1))
    assert proposal.regions is None and proposal.space.regions == ()
    with pytest.raises(ValidationError, match="max_regions: must be an integer from 1 to 3"):
        NarrowingConfig(max_regions=4)


def test_grouping_needs_separate_groups():
    rng = np.random.default_rng(0)
    two = np.vstack([rng.normal(0.2, 0.03, (60, 2)), rng.normal(0.8, 0.03, (60, 2))])
    found = groups(two, 120, 3)
    assert found is not None and len(set(found[0])) == 2
    assert set(found[0][:60]) != set(found[0][60:])
    blob = rng.uniform(0.3, 0.6, (120, 2))
    assert groups(blob, 120, 3) is None  # one blob split in two scores below MIN_SILHOUETTE
    small = np.vstack([rng.normal(0.2, 0.03, (60, 2)), rng.normal(0.8, 0.03, (3, 2))])
    assert groups(small, 63, 3) is None  # a group of 3 is no region


# -- exports -------------------------------------------------------------------------------------------
def _run_module(text: str) -> dict:
    namespace: dict = {}
    exec(compile(text, "<export>", "exec"), namespace)  # noqa: S102 - our own generated code
    return namespace


def test_keras_tuner_code_of_a_union_draws_only_inside_it():
    import keras_tuner as kt

    space = MIXED.with_regions(MIXED_REGIONS)
    hp = _run_module(render(space, "keras-tuner"))["hp"]
    oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("score", "max"), hyperparameters=hp,
                                           max_trials=500, seed=3)
    seen = set()
    for _ in range(300):
        values = dict(oracle._random_values())
        region = values.pop("region")
        assert space.contains(values), values
        assert space.region_space(region).contains(values)
        seen.add(region)
    assert seen == {0, 1}
    assert SearchSpace.from_keras_tuner(space.to_keras_tuner()) == space  # the method's form reads back as regions
    assert SearchSpace.from_keras_tuner(hp) == space


def test_optuna_code_of_a_union_draws_only_inside_it():
    import optuna

    space = MIXED.with_regions(MIXED_REGIONS)
    module = _run_module(render(space, "optuna"))
    assert module["REGIONS"] == MIXED_REGIONS
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = []

    def objective(trial):
        params = module["suggest"](trial)
        drawn.append((trial.params["region"], params))
        return 0.0

    study.optimize(objective, n_trials=200)
    assert {r for r, _ in drawn} == {0, 1}
    for region, params in drawn:
        assert "region" not in params and space.contains(params), params
        assert space.region_space(region).contains(params)
    with pytest.raises(ValidationError, match="regions: Optuna distributions cannot hold"):
        space.to_optuna()


def test_json_export_is_exact():
    space = MIXED.with_regions(MIXED_REGIONS)
    assert SearchSpace.from_json(render(space, "json")) == space


# -- review figures and `refiner show` ------------------------------------------------------------------
def _rects(fig) -> list:
    return [s for s in fig.layout.shapes if s.type == "rect"]


def test_contour_draws_each_region_as_its_own_box():
    from refiner.review import contour_figure
    from refiner.trial import Objective

    trials = make_trials(BOX, wells, 30)
    space = BOX.with_regions([{"x": [0.0, 0.4], "y": [0.0, 0.5]}, {"x": [0.6, 1.0], "y": [0.5, 1.0]}])
    surrogate = {"importances": {"x": 0.5, "y": 0.5}, "trusted": True}
    fig, _ = contour_figure(trials, BOX, surrogate, Objective("accuracy", "max"), regions=space)
    assert sorted((s.x0, s.x1, s.y0, s.y1) for s in _rects(fig)) == [(0.0, 0.4, 0.0, 0.5), (0.6, 1.0, 0.5, 1.0)]
    plain, _ = contour_figure(trials, BOX, surrogate, Objective("accuracy", "max"))
    assert _rects(plain) == []


# -- real short runs -----------------------------------------------------------------------------------
RUN_WIDTH = 0.12  # wells wide enough for 30 random trials to find both on these seeds
RUN_CENTRES = [(0.25, 0.25), (0.75, 0.75)]


def run_wells(p: dict) -> float:
    """Minimised: two separated Gaussian wells of equal depth."""
    return -sum(math.exp(-((p["x"] - cx) ** 2 + (p["y"] - cy) ** 2) / (2 * RUN_WIDTH**2)) for cx, cy in RUN_CENTRES)


@pytest.mark.slow
# Seeds whose 30 random trials land in both wells: regions need that evidence (keras-tuner's seeds
# 0 and 1 found only one well, and then rightly made one box).
@pytest.mark.parametrize("engine, seed", [("optuna", 0), ("keras-tuner", 3)])
def test_a_run_on_two_basins_searches_and_exports_their_union(tmp_path, engine, seed):
    import refiner
    from refiner.console import run_summary
    from refiner.review import load_run, range_history_figure
    from refiner.store import RunStore

    agent = refiner.Refiner(function=run_wells, space=BOX, objective=refiner.Objective("loss", "min"), rounds=3,
                            trials_per_round=8, initial_trials=30, directory=tmp_path, project_name="wells",
                            seed=seed, engine=engine, verbose=0)
    agent.search()
    store = RunStore(tmp_path / "wells")
    for k in (1, 2):  # the Bayesian rounds
        space = store.read_space(k)
        assert len(space.regions) == 2, (k, space)
        assert sorted(space.region_of({"x": cx, "y": cy}) for cx, cy in RUN_CENTRES) == [0, 1]  # a basin each
        trials = store.read_trials(k)
        assert len(trials) == 8 and all(space.contains(t.hyperparameters) for t in trials)
    refined = agent.refined_space
    assert len(refined.regions) == 2
    assert sorted(refined.region_of({"x": cx, "y": cy}) for cx, cy in RUN_CENTRES) == [0, 1]
    decisions = store.read_decisions(2)
    assert decisions["regions"]["reason"].startswith("2 regions:")
    assert schemas.problems(decisions, "decisions") == []
    shown = run_summary(store)
    assert "region 1 of 2" in shown and "region 2 of 2" in shown and "2 regions: the good configurations" in shown
    if engine == "optuna":  # workers read the round's space from its study: the regions travel with it
        import optuna

        from refiner.engines.optuna.shared_study import ROUND_ATTR

        study = optuna.load_study(study_name="wells-round-1", storage=f"sqlite:///{tmp_path / 'wells' / 'optuna.db'}")
        assert SearchSpace.from_dict(study.user_attrs[ROUND_ATTR]["space"]) == store.read_space(1)
    view = load_run(tmp_path, "wells")
    fig = range_history_figure("x", view.rounds, view.objective)
    assert len(_rects(fig)) == 3 + 2 * 2  # a box per round, and one per region in rounds 1 and 2


@pytest.mark.parametrize("engine", ["optuna", pytest.param("keras-tuner", marks=pytest.mark.slow)])
def test_a_space_given_as_regions_is_searched_inside_them_from_round_0(tmp_path, engine):
    import refiner
    from refiner.store import RunStore

    # Narrow regions (8% of the box): stock random and Bayesian proposals would mostly fall outside.
    space = BOX.with_regions([{"x": [0.0, 0.2], "y": [0.0, 0.2]}, {"x": [0.8, 1.0], "y": [0.8, 1.0]}])
    agent = refiner.Refiner(function=run_wells, space=space, objective=refiner.Objective("loss", "min"), rounds=2,
                            trials_per_round=6, initial_trials=6, directory=tmp_path, project_name="given",
                            seed=1, engine=engine, verbose=0, narrowing={"min_trials": 100})  # no narrowing: same space
    agent.search()
    store = RunStore(tmp_path / "given")
    trials = [t for k in (0, 1) for t in store.read_trials(k)]
    assert len(trials) == 12 and all(space.contains(t.hyperparameters) for t in trials)
    assert {space.region_of(t.hyperparameters) for t in trials} == {0, 1}
    assert store.read_space(1) == space and agent.refined_space == space


def test_overrides_keep_regions_unless_they_set_a_bounded_range():
    from refiner.overrides import apply_overrides

    trials = make_trials(BOX, wells, 40)
    proposal = propose(BOX, trials, StubSurrogate(BOX, wells), objective="accuracy")
    decisions = [*proposal.decisions, *refine(SearchSpace([Float("z", 0.0, 1.0)]), [], None, objective="accuracy")[1]]
    document = decisions_document(decisions, round_index=0, n_trials=40, surrogate_trusted=True,
                                  regions=proposal.regions.to_dict())
    assert len(SearchSpace.from_dict(document["next_space"]).regions) == 2

    def override(name: str) -> dict:
        return {"format_version": 1, "round": 0,
                "overrides": [{"name": name, "action": "reject", "timestamp": "2026-11-27T00:00:00Z"}]}

    assert len(SearchSpace.from_dict(apply_overrides(document, override("z"))["next_space"]).regions) == 2
    assert SearchSpace.from_dict(apply_overrides(document, override("x"))["next_space"]).regions == ()


@st_settings
@given(data=st.data())
def test_any_valid_regions_round_trip_and_sample_inside(data):
    """Property: regions drawn at random on MIXED's grids read back equal and sample inside."""
    units = MIXED["units"].values()
    regions = []
    for _ in range(data.draw(st.integers(2, 3))):
        region = {}
        if data.draw(st.booleans()):
            a, b = sorted(data.draw(st.lists(st.sampled_from(units), min_size=2, max_size=2)))
            region["units"] = [a, b]
        if data.draw(st.booleans()) or not region:
            a, b = sorted(data.draw(st.lists(st.floats(1e-4, 1e-1), min_size=2, max_size=2)))
            region["lr"] = [a, b]
        regions.append(region)
    space = MIXED.with_regions(regions)
    assert SearchSpace.from_json(space.to_json()) == space
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    assert all(space.contains(space.sample(rng)) for _ in range(20))
    assert 0.0 <= union_fraction({p.name: p for p in space}, space.regions) <= 1.0


def test_near_optimum_counts_a_space_that_holds_a_point_within_one_percent_of_the_range_of_f_star():
    from refiner.bench.problems import get_problem

    branin = get_problem("branin")  # f* 0.398 at three points; its range over the box is about 300
    x1, x2 = branin.space["x1"], branin.space["x2"]
    beside = SearchSpace([Float("x1", 3.3, 3.5), Float("x2", 2.4, 2.6)])  # next to (pi, 2.275), not on it
    far = SearchSpace([Float("x1", x1.low, x1.low + 1.0), Float("x2", x2.low, x2.low + 1.0)])  # f about 300
    assert not contains_any(beside, branin.optima)
    assert holds_near_optimum(beside, branin)
    assert not holds_near_optimum(far, branin)
    # With regions, only the union counts: the far box with the near one as a second region holds it.
    both = SearchSpace([Float("x1", x1.low, 3.5), Float("x2", x2.low, 2.6)],
                       regions=[{"x1": [x1.low, x1.low + 1.0], "x2": [x2.low, x2.low + 1.0]},
                                {"x1": [3.3, 3.5], "x2": [2.4, 2.6]}])
    assert holds_near_optimum(both, branin)
