"""Narrowing: the bounding-box method and each of its safeguards, on trial sets with a known optimum.

Most tests use a stub surrogate that predicts a known function exactly, so that each safeguard is
tested on its own; one end-to-end test uses the real fitted surrogate.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refiner import schemas
from refiner.encoding import Encoder
from refiner.errors import ValidationError
from refiner.narrowing import Decision, NarrowingConfig, decisions_document, refine
from refiner.space import Boolean, Choice, Condition, Fixed, Float, Int, SearchSpace
from refiner.surrogate import fit_surrogate
from refiner.trial import Objective, Trial, TrialState, best_trial

SPACE = SearchSpace([
    Float("lr", 1e-5, 1e-1, log=True),
    Int("units", 16, 512, step=16),
    Float("dropout", 0.0, 0.5),
    Float("momentum", 0.0, 1.0, step=0.05),
    Choice("activation", ("relu", "tanh", "sigmoid")),
    Boolean("batchnorm"),
    Int("depth", 1, 1000, log=True),
    Fixed("optimizer", "adam"),
])
LR_OPT, UNITS_OPT, MOMENTUM_OPT, DEPTH_OPT = 3e-4, 384, 0.8, 30  # all off-centre


def score(hp: dict) -> float:
    """Accuracy-like (maximised), with its optimum at the constants above, relu and batchnorm on."""
    return (
        -((math.log10(hp["lr"]) - math.log10(LR_OPT)) ** 2)
        - 2.0 * ((hp["units"] - UNITS_OPT) / 496) ** 2
        - 2.0 * (hp["momentum"] - MOMENTUM_OPT) ** 2
        - {"relu": 0.0, "tanh": 0.2, "sigmoid": 1.5}[hp["activation"]]
        - (0.0 if hp["batchnorm"] else 0.8)
        - 0.3 * (math.log10(hp["depth"]) - math.log10(DEPTH_OPT)) ** 2
    )


class StubSurrogate:
    """Predicts ``fn`` of each row's values exactly: a perfectly trusted model.

    With ``on_codes=True``, ``fn`` takes the encoder's codes (arrays of unit positions and value
    indices, all rows at once) instead of one assignment: fast enough for property tests.
    """

    def __init__(self, space: SearchSpace, fn: Callable[[dict], Any], *, cv_score: float = 0.9,
                 importances: dict[str, float] | None = None, model_name: str = "stub", on_codes: bool = False):
        self.encoder = Encoder(space)
        self.fn = fn
        self.on_codes = on_codes
        self.cv_score = cv_score
        self.model_name = model_name
        self.importances = importances if importances is not None else {n: 0.5 for n in space.names}

    def predict(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.on_codes:
            mean = np.asarray(self.fn(self.encoder.codes(matrix)), dtype=float)
        else:
            mean = np.array([self.fn(r) for r in self.encoder.decode(matrix)], dtype=float)
        return mean, np.zeros(len(mean))

    def score(self, hp: dict) -> float:
        """The stub's function at one assignment (to make trials that agree with it)."""
        return float(self.predict(self.encoder.encode([hp]))[0][0])


def make_trials(space: SearchSpace, fn: Callable[[dict], float], n: int, seed: int = 0, noise: float = 0.0) -> list[Trial]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        hp = space.sample(rng)
        out.append(Trial(f"t{i}", 0, hp, fn(hp) + noise * float(rng.normal()), TrialState.COMPLETE))
    return out


def by_name(decisions: list[Decision]) -> dict[str, Decision]:
    return {d.name: d for d in decisions}


def check_document(decisions: list[Decision], n_trials: int = 0) -> dict:
    doc = decisions_document(decisions, round_index=0, n_trials=n_trials, surrogate_trusted=True, config=NarrowingConfig())
    doc = json.loads(json.dumps(doc, allow_nan=False))
    schemas.validate(doc, "decisions")
    return doc


# -- end to end, with the real surrogate ---------------------------------------------------------
@pytest.fixture(scope="module")
def real_round():
    trials = make_trials(SPACE, score, 120, seed=1, noise=0.05)
    surrogate = fit_surrogate(SPACE, trials, "accuracy", seed=0)
    new, decisions = refine(SPACE, trials, surrogate, objective="accuracy", original_space=SPACE, seed=0)
    return trials, surrogate, new, decisions


def test_real_surrogate_keeps_the_optimum_and_shrinks_the_space(real_round):
    trials, surrogate, new, decisions = real_round
    assert surrogate.trusted
    assert [d.name for d in decisions] == SPACE.names
    assert new["lr"].low <= LR_OPT <= new["lr"].high
    assert new["lr"].width < 0.7 * SPACE["lr"].width
    assert new["units"].contains(UNITS_OPT)
    assert new["activation"].contains("relu")
    assert "sigmoid" not in getattr(new["activation"], "values", ("relu",))
    assert by_name(decisions)["activation"].action in ("drop_values", "fix")
    incumbent = best_trial(trials, Objective("accuracy"))
    assert new.contains(incumbent.hyperparameters)
    check_document(decisions, len(trials))


def test_a_second_round_keeps_the_optimum(real_round):
    trials, _, space1, _ = real_round
    more = make_trials(space1, score, 60, seed=2, noise=0.05)
    all_trials = trials + [dataclasses.replace(t, trial_id=f"r1-{t.trial_id}", round=1) for t in more]
    surrogate = fit_surrogate(space1, all_trials, "accuracy", seed=0)
    space2, decisions = refine(space1, all_trials, surrogate, objective="accuracy", original_space=SPACE, seed=0)
    assert space2["lr"].low <= LR_OPT <= space2["lr"].high
    assert space2["units"].contains(UNITS_OPT)
    assert space2["lr"].width <= space1["lr"].width + 1e-12 or by_name(decisions)["lr"].action == "expand"
    assert space2["lr"].width >= 0.1 * SPACE["lr"].width - 1e-9
    check_document(decisions, len(all_trials))


# -- (c) the evidence gate ----------------------------------------------------------------------
def test_too_few_trials_keep_everything_and_say_so():
    trials = make_trials(SPACE, score, 5)
    new, decisions = refine(SPACE, trials, StubSurrogate(SPACE, score), objective="accuracy", original_space=SPACE)
    assert new == SPACE
    assert all(d.action == "keep" for d in decisions)
    assert "only 5 completed trials" in decisions[0].reason and "min_trials=8" in decisions[0].reason
    check_document(decisions)


def test_failed_and_out_of_space_trials_do_not_count():
    trials = make_trials(SPACE, score, 6)
    trials += [Trial(f"f{i}", 0, {"lr": 1e-3}, None, TrialState.FAILED) for i in range(5)]
    trials += [Trial(f"o{i}", 0, {**trials[0].hyperparameters, "lr": 1.0}, 1.0, TrialState.COMPLETE) for i in range(5)]
    _, decisions = refine(SPACE, trials, StubSurrogate(SPACE, score), objective="accuracy")
    assert all(d.action == "keep" for d in decisions)
    assert "only 6 completed trials" in decisions[0].reason


def test_an_untrusted_surrogate_keeps_everything_and_says_so():
    trials = make_trials(SPACE, score, 40)
    stub = StubSurrogate(SPACE, score, cv_score=0.05, model_name="extra_trees")
    new, decisions = refine(SPACE, trials, stub, objective="accuracy", original_space=SPACE)
    assert new == SPACE and all(d.action == "keep" for d in decisions)
    assert "0.050" in decisions[0].reason and "min_cv_score=0.2" in decisions[0].reason
    assert decisions[0].evidence["cv_score"] == 0.05


def test_no_surrogate_keeps_everything():
    trials = make_trials(SPACE, score, 40)
    new, decisions = refine(SPACE, trials, None, objective="accuracy")
    assert new == SPACE and all(d.action == "keep" and "no surrogate" in d.reason for d in decisions)


# -- (a) incumbent, (b) minimum width, (d) log and steps ---------------------------------------
def test_the_incumbent_stays_inside_even_when_the_surrogate_disagrees():
    space = SearchSpace([Float("lr", 1e-5, 1e-1, log=True), Float("x", 0.0, 1.0)])
    trials = make_trials(space, lambda hp: -abs(hp["x"] - 0.5), 30)
    best_hp = {"lr": 1.2e-4, "x": 0.7}
    trials.append(Trial("best", 0, best_hp, 10.0, TrialState.COMPLETE))
    # The model believes the optimum is at lr=1e-2, x=0.2; the best trial says otherwise.
    stub = StubSurrogate(space, lambda hp: -(math.log10(hp["lr"]) + 2) ** 2 - 10 * (hp["x"] - 0.2) ** 2)
    new, decisions = refine(space, trials, stub, objective="accuracy")
    assert new.contains(best_hp)
    # Both ranges narrow towards the model's optimum but stretch exactly to the incumbent.
    assert new["lr"].low == 1.2e-4 and new["x"].high == 0.7
    assert [d.action for d in decisions] == ["narrow", "narrow"]
    assert decisions[0].evidence["incumbent"] == 1.2e-4 and decisions[0].evidence["incumbent_trial"] == "best"


def test_minimum_width_relative_to_the_original_space():
    original = SearchSpace([Float("lr", 1e-5, 1e-1, log=True), Float("x", 0.0, 10.0)])
    current = SearchSpace([Float("lr", 1e-4, 1e-2, log=True), Float("x", 2.0, 8.0)])
    sharp = lambda hp: -abs(math.log10(hp["lr"]) + 3) - abs(hp["x"] - 5.0)  # noqa: E731
    trials = make_trials(current, sharp, 40)
    cfg = NarrowingConfig(top_fraction=0.01, margin=0.0, min_width=0.2)
    new, decisions = refine(current, trials, StubSurrogate(current, sharp), objective="accuracy",
                            original_space=original, config=cfg)
    assert new["lr"].width >= 0.2 * original["lr"].width - 1e-9  # 0.8 decades of the original 4
    assert new["lr"].width < current["lr"].width
    assert new["x"].width >= 0.2 * 10.0 - 1e-9
    assert new["lr"].low < 1e-3 < new["lr"].high and new["x"].low < 5.0 < new["x"].high
    assert all(d.action == "narrow" for d in decisions)


def test_log_ranges_narrow_in_log_space_and_grids_are_kept():
    def fn(hp):  # four terms of similar size, so that none dominates the top candidates
        return (-(math.log10(hp["lr"]) + 3) ** 2 - ((hp["units"] - 100) / 150) ** 2 * 8
                - 10 * (hp["momentum"] - 0.8) ** 2 - 3 * (math.log10(hp["depth"]) - 1.5) ** 2)

    space = SearchSpace([
        Float("lr", 1e-6, 1.0, log=True), Int("units", 10, 510, step=20),
        Float("momentum", 0.0, 1.0, step=0.05), Int("depth", 1, 1000, log=True),
    ])
    trials = make_trials(space, fn, 60)
    cfg = NarrowingConfig(top_fraction=0.05)
    new, decisions = refine(space, trials, StubSurrogate(space, fn), objective="accuracy", config=cfg)
    lr = new["lr"]
    # Symmetric around 1e-3 in log10 (a linear box would hug 1e-6 on the low side).
    assert abs((math.log10(lr.low) + math.log10(lr.high)) / 2 + 3) < 0.35
    # Four parameters share the top 5%, so each marginal box stays fairly wide.
    assert lr.log and lr.width < 0.7 * space["lr"].width
    units = new["units"]
    assert units.step == 20 and (units.low - 10) % 20 == 0 and (units.high - 10) % 20 == 0
    assert units.low <= 100 <= units.high and units.width < space["units"].width
    mom = new["momentum"]
    assert mom.step == 0.05 and mom.contains(0.8)
    for bound in (mom.low, mom.high):
        assert abs(bound / 0.05 - round(bound / 0.05)) < 1e-9
    depth = new["depth"]
    assert isinstance(depth.low, int) and isinstance(depth.high, int) and depth.log
    assert depth.low <= 32 <= depth.high and depth.width < space["depth"].width
    assert {d.action for d in decisions} == {"narrow"}
    check_document(decisions)


# -- (e) choices --------------------------------------------------------------------------------
def test_a_bad_choice_value_is_dropped_with_its_numbers():
    space = SearchSpace([Choice("activation", ("relu", "tanh", "sigmoid")), Boolean("batchnorm"), Float("x", 0.0, 1.0)])

    def fn(hp):
        act = {"relu": 0.0, "tanh": 0.2, "sigmoid": 1.5}[hp["activation"]]
        return -act - (0.0 if hp["batchnorm"] else 1.5) - (hp["x"] - 0.3) ** 2

    trials = make_trials(space, fn, 60, seed=3)
    new, decisions = refine(space, trials, StubSurrogate(space, fn), objective="accuracy")
    d = by_name(decisions)["activation"]
    assert d.action == "drop_values"
    assert new["activation"].values == ("relu", "tanh")
    assert d.evidence["dropped"] == ["sigmoid"]
    sig = next(v for v in d.evidence["values"] if v["value"] == "sigmoid")
    assert sig["n_top"] == 0 and sig["good_share"] < 0.25 / 3 and sig["n_trials"] >= 3
    assert "'sigmoid'" in d.reason and f"{sig['n_trials']} trials" in d.reason
    # batchnorm=False is as clearly worse: a boolean with one value left is fixed.
    b = by_name(decisions)["batchnorm"]
    assert b.action == "fix" and b.after == {"name": "batchnorm", "type": "fixed", "value": True}
    assert isinstance(new["batchnorm"], Fixed)


def test_the_incumbents_value_is_never_dropped():
    space = SearchSpace([Choice("act", ("relu", "tanh", "sigmoid")), Float("x", 0.0, 1.0)])
    fn = lambda hp: -abs(hp["x"] - 0.5) - (2.0 if hp["act"] == "sigmoid" else 0.0)  # noqa: E731
    trials = make_trials(space, fn, 40)
    trials.append(Trial("lucky", 0, {"act": "sigmoid", "x": 0.5}, 5.0, TrialState.COMPLETE))
    new, decisions = refine(space, trials, StubSurrogate(space, fn), objective="accuracy")
    assert "sigmoid" in new["act"].values and decisions[0].action == "keep"
    assert new.contains({"act": "sigmoid", "x": 0.5})


def test_a_value_with_too_few_trials_is_not_dropped():
    space = SearchSpace([Choice("act", ("relu", "tanh", "sigmoid")), Float("x", 0.0, 1.0)])
    fn = lambda hp: -abs(hp["x"] - 0.5) - (2.0 if hp["act"] == "sigmoid" else 0.0)  # noqa: E731
    rng = np.random.default_rng(0)
    trials = []
    for i in range(30):
        act = "sigmoid" if i < 2 else ("relu", "tanh")[i % 2]
        hp = {"act": act, "x": float(rng.uniform())}
        trials.append(Trial(str(i), 0, hp, fn(hp), TrialState.COMPLETE))
    new, decisions = refine(space, trials, StubSurrogate(space, fn), objective="accuracy")
    assert new["act"].values == ("relu", "tanh", "sigmoid")
    assert decisions[0].action == "keep" and "at least 3 trials" in decisions[0].reason


def test_dropping_a_parent_value_updates_and_protects_child_conditions():
    space = SearchSpace([
        Choice("opt", ("sgd", "adam", "rmsprop", "adagrad")),
        Float("momentum", 0.0, 1.0, conditions=[Condition("opt", ("sgd", "rmsprop"))]),
        Float("rho", 0.5, 1.0, conditions=[Condition("opt", ("adagrad",))]),
        Float("x", 0.0, 1.0),
    ])
    penalty = {"sgd": 0.0, "adam": 0.0, "rmsprop": 3.0, "adagrad": 3.0}
    fn = lambda hp: -abs(hp["x"] - 0.5) - penalty[hp["opt"]]  # noqa: E731
    trials = make_trials(space, fn, 80)
    new, decisions = refine(space, trials, StubSurrogate(space, fn), objective="accuracy")
    d = by_name(decisions)
    assert d["opt"].action == "drop_values" and d["opt"].evidence["dropped"] == ["rmsprop"]
    assert new["opt"].values == ("sgd", "adam", "adagrad")  # adagrad alone activates rho
    assert "only value that activates `rho`" in d["opt"].reason
    assert new["momentum"].conditions == (Condition("opt", ("sgd",)),)
    assert "no longer offers 'rmsprop'" in d["momentum"].reason
    assert d["momentum"].after["conditions"] == [{"parent": "opt", "values": ["sgd"]}]
    check_document(decisions)


def test_fixing_a_parent_keeps_children_valid():
    space = SearchSpace([
        Boolean("use_dropout"),
        Float("dropout", 0.0, 0.5, conditions=[Condition("use_dropout", (True,))]),
        Float("x", 0.0, 1.0),
    ])
    fn = lambda hp: -abs(hp["x"] - 0.5) - (0.0 if hp["use_dropout"] else 3.0)  # noqa: E731
    trials = make_trials(space, fn, 60)
    new, decisions = refine(space, trials, StubSurrogate(space, fn), objective="accuracy")
    assert decisions[0].action == "fix" and new["use_dropout"] == Fixed("use_dropout", True)
    assert new["dropout"].conditions == (Condition("use_dropout", (True,)),)


def test_an_ordered_choice_loses_values_only_at_its_ends():
    space = SearchSpace([Choice("batch", (16, 32, 64, 128, 256), ordered=True), Float("x", 0.0, 1.0)])
    bad = {16: 3.0, 32: 0.0, 64: 3.0, 128: 0.0, 256: 0.0}
    fn = lambda hp: -abs(hp["x"] - 0.5) - bad[hp["batch"]]  # noqa: E731
    trials = make_trials(space, fn, 80)
    new, decisions = refine(space, trials, StubSurrogate(space, fn), objective="accuracy")
    assert new["batch"].values == (32, 64, 128, 256) and new["batch"].ordered
    assert decisions[0].evidence["dropped"] == [16]


# -- (f) edges ----------------------------------------------------------------------------------
def test_an_edge_narrowed_earlier_is_reopened_towards_the_original():
    original = SearchSpace([Float("lr", 1e-5, 1e-1, log=True), Int("units", 16, 512, step=16)])
    current = SearchSpace([Float("lr", 1e-3, 1e-2, log=True), Int("units", 128, 256, step=16)])
    fn = lambda hp: -10 * (math.log10(hp["lr"]) + 3.7) ** 2 - ((hp["units"] - 600) / 100) ** 2  # noqa: E731
    trials = make_trials(current, fn, 40)
    new, decisions = refine(current, trials, StubSurrogate(current, fn), objective="accuracy", original_space=original)
    lr, units = by_name(decisions)["lr"], by_name(decisions)["units"]
    assert lr.action == "expand" and "earlier round" in lr.reason
    assert new["lr"].low == pytest.approx(10**-3.5, rel=0.02)  # out by half the current width
    assert new["lr"].low >= original["lr"].low
    assert units.action == "expand"
    assert new["units"].high == 320 and new["units"].step == 16  # 256 + half of 128, on the grid
    assert lr.evidence["beyond_user_bound"] is None


def test_reopening_never_passes_the_original_bound():
    original = SearchSpace([Float("x", 0.0, 10.0)])
    current = SearchSpace([Float("x", 1.0, 5.0)])
    fn = lambda hp: -hp["x"]  # noqa: E731  best at the low edge
    trials = make_trials(current, fn, 30)
    new, decisions = refine(current, trials, StubSurrogate(current, fn), objective="accuracy", original_space=original)
    assert decisions[0].action == "expand" and new["x"].low == 0.0


def test_the_users_own_bound_is_flagged_not_moved():
    space = SearchSpace([Float("lr", 1e-3, 1e-1, log=True), Float("x", 0.0, 1.0)])
    fn = lambda hp: -(math.log10(hp["lr"]) + 4) ** 2 - abs(hp["x"] - 0.5)  # noqa: E731  optimum 1e-4, outside
    trials = make_trials(space, fn, 40)
    new, decisions = refine(space, trials, StubSurrogate(space, fn), objective="accuracy", original_space=space)
    d = decisions[0]
    assert d.evidence["beyond_user_bound"] == "low"
    assert "the optimum may lie beyond this bound" in d.reason
    assert new["lr"].low == 1e-3 and new["lr"].high < 1e-1 and d.action == "narrow"
    assert decisions[1].evidence["beyond_user_bound"] is None


def test_an_optimum_just_inside_the_users_bound_is_not_flagged():
    space = SearchSpace([Float("x", 0.0, 1.0), Float("y", 0.0, 1.0)])
    fn = lambda hp: -((hp["x"] - 0.93) ** 2) - 0.2 * (hp["y"] - 0.5) ** 2  # noqa: E731
    trials = make_trials(space, fn, 40)
    new, decisions = refine(space, trials, StubSurrogate(space, fn), objective="accuracy")
    d = decisions[0]
    assert d.action == "narrow" and new["x"].high == 1.0 and new["x"].contains(0.93)
    assert d.evidence["edge_gain_high"] is not None and d.evidence["edge_gain_high"] < 0
    assert d.evidence["beyond_user_bound"] is None and "beyond" not in d.reason


def test_a_surrogate_fitted_on_another_space_is_fed_its_own_encoding():
    original = SearchSpace([Float("x", 0.0, 10.0), Choice("c", ("a", "b", "z"))])
    current = SearchSpace([Float("x", 2.0, 8.0), Choice("c", ("a", "b"))])
    fn = lambda hp: -abs(hp["x"] - 3.0) - (1.0 if hp["c"] == "b" else 0.0)  # noqa: E731
    trials = make_trials(current, fn, 40)
    new, decisions = refine(current, trials, StubSurrogate(original, fn), objective="accuracy", original_space=original)
    assert new["x"].low < 3.0 < new["x"].high and new["x"].width < 6.0
    assert decisions[0].action == "narrow"


# -- (g) importance, (h) small shrinks, fixed, conditional --------------------------------------
def test_a_negligible_parameter_is_kept():
    trials = make_trials(SPACE, score, 40)
    importances = {n: 0.2 for n in SPACE.names} | {"dropout": 0.01, "lr": 0.02}
    new, decisions = refine(SPACE, trials, StubSurrogate(SPACE, score, importances=importances), objective="accuracy")
    for name in ("dropout", "lr"):
        d = by_name(decisions)[name]
        assert d.action == "keep" and "importance" in d.reason and d.evidence["importance"] < 0.03
        assert new[name] == SPACE[name]
    assert "0.010" in by_name(decisions)["dropout"].reason


def test_a_small_shrink_is_not_worth_it():
    space = SearchSpace([Float("x", 0.0, 1.0)])
    fn = lambda hp: hp["x"]  # noqa: E731
    trials = make_trials(space, fn, 30)
    cfg = NarrowingConfig(top_fraction=1.0, margin=0.02)  # box ~[0.05, 0.95] + 0.02: ~94% of the width
    new, decisions = refine(space, trials, StubSurrogate(space, fn), objective="accuracy", config=cfg)
    d = decisions[0]
    assert new == space and d.action == "keep"
    assert 0.9 < d.evidence["shrink"] < 1.0
    assert f"{d.evidence['shrink']:.0%} of its width" in d.reason and "not worth" in d.reason


def test_fixed_parameters_are_kept():
    trials = make_trials(SPACE, score, 40)
    _, decisions = refine(SPACE, trials, StubSurrogate(SPACE, score), objective="accuracy")
    d = by_name(decisions)["optimizer"]
    assert d.action == "keep" and d.after == d.before == {"name": "optimizer", "type": "fixed", "value": "adam"}


def test_conditional_parameters_use_only_trials_where_they_are_active():
    space = SearchSpace([
        Boolean("use_dropout"),
        Float("dropout", 0.0, 0.5, conditions=[Condition("use_dropout", (True,))]),
    ])
    fn = lambda hp: -abs(hp["dropout"] - 0.4) if "dropout" in hp else -0.3  # noqa: E731
    rng = np.random.default_rng(0)
    trials = []
    for i in range(40):
        on = i % 4 == 0  # 10 trials with dropout active
        # Inactive trials carry a stale dropout value that must be ignored.
        hp = {"use_dropout": on, "dropout": float(rng.uniform(0, 0.5)) if on else 0.01}
        trials.append(Trial(str(i), 0, hp, fn(hp) if on else -0.05, TrialState.COMPLETE))
    new, decisions = refine(space, trials, StubSurrogate(space, fn), objective="accuracy")
    d = decisions[1]
    assert d.evidence["n_trials"] == 10
    assert d.action == "narrow" and new["dropout"].low > 0.2 and new["dropout"].high >= 0.4
    few = [t for t in trials if not t.hyperparameters["use_dropout"]] + trials[:5 * 4:4]
    _, decisions = refine(space, few, StubSurrogate(space, fn), objective="accuracy")
    assert decisions[1].action == "keep" and "only 5 completed trials have `dropout` active" in decisions[1].reason


# -- direction, determinism, documents, config --------------------------------------------------
def test_minimised_objectives_keep_the_lowest_score_inside():
    space = SearchSpace([Float("x", 0.0, 1.0), Float("y", 0.0, 1.0)])
    loss = lambda hp: (hp["x"] - 0.8) ** 2 + (hp["y"] - 0.2) ** 2  # noqa: E731
    trials = make_trials(space, loss, 40)
    stub = StubSurrogate(space, lambda hp: -loss(hp))  # surrogates predict higher-is-better
    new, decisions = refine(space, trials, stub, objective=Objective("val_loss", "min"))
    assert new["x"].low <= 0.8 <= new["x"].high and new["y"].low <= 0.2 <= new["y"].high
    assert new["x"].width < 0.8 and new["y"].width < 0.8
    inc = best_trial(trials, Objective("val_loss", "min"))
    assert decisions[0].evidence["incumbent_trial"] == inc.trial_id


def test_refine_is_deterministic_for_a_seed():
    trials = make_trials(SPACE, score, 50)
    stub = StubSurrogate(SPACE, score)
    a = refine(SPACE, trials, stub, objective="accuracy", seed=4)
    b = refine(SPACE, trials, stub, objective="accuracy", seed=4)
    assert a[0] == b[0] and [d.to_dict() for d in a[1]] == [d.to_dict() for d in b[1]]


def test_decisions_document_allows_proposed_and_override():
    trials = make_trials(SPACE, score, 40)
    new, decisions = refine(SPACE, trials, StubSurrogate(SPACE, score), objective="accuracy")
    doc = check_document(decisions, 40)
    assert doc["next_space"] == new.to_dict()  # the decisions' `after`s are the space refine returned
    assert doc["round"] == 0 and doc["surrogate_trusted"] is True and len(doc["decisions"]) == len(SPACE)
    edited = doc["decisions"][0]
    # A person's edit in the review app: what narrowing proposed is kept beside the override.
    override = {"name": "lr", "type": "float", "low": 1e-4, "high": 1e-2, "log": True}
    edited.update(proposed=edited["after"], override={"after": override, "note": "wider"}, after=override)
    schemas.validate(doc, "decisions")
    edited["override"] = {"after": {"name": "lr", "type": "float"}}  # not a parameter: no low/high
    with pytest.raises(ValidationError, match="override.after"):
        schemas.validate(doc, "decisions")
    edited["override"] = {"after": override}
    doc["decisions"][1]["action"] = "shrink"
    with pytest.raises(ValidationError, match="decisions\\[1\\].action"):
        schemas.validate(doc, "decisions")
    assert Decision.from_dict(doc["decisions"][2]).to_dict() == doc["decisions"][2]
    with pytest.raises(ValueError, match="action"):
        Decision("x", "shrink", {}, {}, "")


def test_config_round_trips_and_rejects_bad_values_by_name():
    cfg = NarrowingConfig.from_dict({"top_fraction": 0.3, "n_candidates": 500})
    assert cfg.top_fraction == 0.3 and cfg.n_candidates == 500 and cfg.min_trials == 8
    assert NarrowingConfig.from_dict(cfg.to_dict()) == cfg
    assert NarrowingConfig.from_dict(None) == NarrowingConfig()
    schemas.validate({"format_version": 1, "round": 0, "n_trials": 0, "surrogate_trusted": False,
                      "decisions": [], "config": cfg.to_dict(),
                      "next_space": {"format_version": 1, "parameters": []}}, "decisions")
    cases = {
        "top_fraction": (1.5, "top_fraction: must be a number in (0, 1], got 1.5"),
        "min_trials": (2.5, "min_trials: must be an integer of at least 1, got 2.5"),
        "margin": (-0.1, "margin: must be a number in [0, 1]"),
        "min_width": (0, "min_width: must be a number in (0, 1]"),
        "n_candidates": (True, "n_candidates: must be an integer from 10 to 10**6, got True"),
        "min_cv_score": (float("nan"), "min_cv_score: must be a number in [-1, 1]"),
    }
    for field, (value, message) in cases.items():
        with pytest.raises(ValueError) as info:
            NarrowingConfig.from_dict({field: value})
        assert message in str(info.value)
    with pytest.raises(ValueError, match="top_fractoin: not a narrowing setting"):
        NarrowingConfig.from_dict({"top_fractoin": 0.2})
    assert isinstance(NarrowingConfig(min_trials=3.0).min_trials, int)


# -- properties ---------------------------------------------------------------------------------
PROP_SPACE = SearchSpace([
    Float("lr", 1e-5, 1e-1, log=True),
    Int("units", 8, 256, step=8),
    Choice("act", ("a", "b", "c")),
    Boolean("flag"),
    Float("child", -1.0, 1.0, conditions=[Condition("act", ("b", "c"))]),
    Int("depth", 1, 100, log=True),
    Choice("size", (1, 2, 4, 8), ordered=True),
])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(0, 60),
    direction=st.sampled_from(["max", "min"]),
    centre=st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4),
    weights=st.lists(st.floats(0.0, 5.0), min_size=4, max_size=4),
)
def test_property_valid_space_incumbent_inside_within_original(seed, n, direction, centre, weights):
    def fn(u: dict) -> np.ndarray:
        parts = [u["lr"], u["units"], u["depth"], u["size"] / 3]
        value = -sum(w * (p - c) ** 2 for w, p, c in zip(weights, parts, centre))
        return value - 0.5 * (u["act"] == 0) - 0.3 * (u["flag"] == 1)

    stub = StubSurrogate(PROP_SPACE, fn, importances={k: 0.3 for k in PROP_SPACE.names}, on_codes=True)
    rng = np.random.default_rng(seed)
    trials = []
    for i in range(n):
        hp = PROP_SPACE.sample(rng)
        raw = stub.score(hp) + 0.3 * float(rng.normal())
        trials.append(Trial(str(i), 0, hp, raw if direction == "max" else -raw, TrialState.COMPLETE))
    cfg = NarrowingConfig(n_candidates=300)
    new, decisions = refine(PROP_SPACE, trials, stub, objective=Objective("m", direction), config=cfg, seed=seed)
    assert isinstance(new, SearchSpace)
    assert [d.name for d in decisions] == PROP_SPACE.names
    assert SearchSpace.from_dict(new.to_dict()) == new
    inc = best_trial(trials, Objective("m", direction))
    if inc is not None:
        assert new.contains(inc.hyperparameters)
    for p in new:
        orig = PROP_SPACE[p.name]
        if isinstance(p, (Float, Int)):
            assert orig.low <= p.low <= p.high <= orig.high
            assert p.width >= 0.1 * orig.width - 1e-9 or p.width == 0
            assert p.step == orig.step and p.log == orig.log
        elif isinstance(p, (Choice, Boolean)):
            assert set(p.values) <= set(orig.values)
    for d in decisions:
        assert d.reason and d.evidence["n_trials"] <= n
        if d.action == "keep":  # a kept range is unchanged (a child's condition may lose values)
            assert {k: v for k, v in d.after.items() if k != "conditions"} == {
                k: v for k, v in d.before.items() if k != "conditions"}
    check_document(decisions, n)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(8, 50),
    cuts=st.lists(st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)), min_size=3, max_size=3),
    centre=st.lists(st.floats(-0.5, 1.5), min_size=3, max_size=3),
)
def test_property_later_rounds_stay_within_the_original_and_on_its_grid(seed, n, cuts, centre):
    from refiner.encoding import values_from_unit

    numeric = [PROP_SPACE["lr"], PROP_SPACE["units"], PROP_SPACE["depth"]]
    narrowed = []
    for p, (a, b) in zip(numeric, cuts):
        low, high = sorted(values_from_unit(p, np.array([a, b])).tolist())
        if low == high:
            low, high = p.low, p.high
        narrowed.append(dataclasses.replace(p, low=type(p.low)(low), high=type(p.high)(high)))
    current = SearchSpace(narrowed + [PROP_SPACE["act"]])
    original = SearchSpace(numeric + [PROP_SPACE["act"]])
    def fn(u: dict) -> np.ndarray:  # optimum anywhere, often outside the current box
        return -sum((u[name] - c) ** 2 for name, c in zip(("lr", "units", "depth"), centre))

    stub = StubSurrogate(original, fn, on_codes=True)  # fitted on the original space's encoding
    trials = make_trials(current, stub.score, n, seed=seed, noise=0.05)
    new, decisions = refine(current, trials, stub, objective="accuracy", original_space=original, seed=seed)
    inc = best_trial(trials, Objective("accuracy"))
    assert new.contains(inc.hyperparameters)
    for p in numeric:
        q = new[p.name]
        assert p.low <= q.low <= q.high <= p.high
        assert q.width >= min(0.1 * p.width, current[p.name].width) - 1e-9
        if isinstance(p, Int) and p.step:
            assert (q.low - p.low) % p.step == 0 and (q.high - p.low) % p.step == 0 and q.step == p.step
        d = by_name(decisions)[p.name]
        if d.action == "expand":
            assert q.low < current[p.name].low or q.high > current[p.name].high
            assert "earlier round" in d.reason
    check_document(decisions, n)


# -- boldness from the surrogate's confidence ------------------------------------------------------
class UncertainStub(StubSurrogate):
    """The stub's exact mean with a constant predicted std: as sure (small) or unsure (large) as asked."""

    def __init__(self, space: SearchSpace, fn: Callable[[dict], Any], std: float, **kwargs: Any):
        super().__init__(space, fn, **kwargs)
        self.std = std

    def predict(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, _ = super().predict(matrix)
        return mean, np.full(len(mean), self.std)


BOWL = SearchSpace([Float("x", 0.0, 1.0), Float("y", 0.0, 1.0)])


def bowl(hp: dict) -> float:
    return -((hp["x"] - 0.3) ** 2) - (hp["y"] - 0.7) ** 2


def bowl_refine(std: float | None, n_trials: int) -> tuple[SearchSpace, list[Decision]]:
    trials = make_trials(BOWL, bowl, n_trials, seed=3)
    surrogate = StubSurrogate(BOWL, bowl) if std is None else UncertainStub(BOWL, bowl, std)
    return refine(BOWL, trials, surrogate, objective="accuracy")


def test_a_sure_surrogate_narrows_further_than_top_fraction():
    fixed, fixed_decisions = bowl_refine(None, 40)  # no uncertainty reported: the top_fraction rule
    sure, sure_decisions = bowl_refine(1e-3, 40)  # 40 trials >= 10 per parameter, tight bounds
    unsure, unsure_decisions = bowl_refine(10.0, 40)  # every candidate could be the optimum
    assert fixed_decisions[0].evidence["n_plausible"] is None
    n_plausible = sure_decisions[0].evidence["n_plausible"]
    assert n_plausible is not None and n_plausible < 40  # fewer than MIN_GOOD_SHARE of 2000
    assert "could still hold the optimum" in sure_decisions[0].reason
    assert unsure_decisions[0].evidence["n_plausible"] == 2000
    assert unsure == fixed  # capped at top_fraction: never more cautious than the fixed rule
    for name, opt in (("x", 0.3), ("y", 0.7)):
        assert sure[name].contains(opt)
        assert sure[name].width < 0.8 * fixed[name].width
    check_document(sure_decisions)


def test_confidence_bounds_need_ten_trials_per_parameter():
    # 15 trials in 2 parameters: too few for the surrogate's bounds to set the boldness.
    few, decisions = bowl_refine(1e-3, 15)
    fixed, _ = bowl_refine(None, 15)
    assert few == fixed
    assert all(d.evidence["n_plausible"] is None for d in decisions)


def test_the_good_set_keeps_at_least_min_good_share():
    from refiner.narrowing_method.constants import MIN_GOOD_SHARE
    from refiner.narrowing_method.steps import good_set_size

    cfg = NarrowingConfig()
    mean = -np.linspace(0.0, 1.0, 1000)  # a sharp, sure ranking: only the first candidate is plausible
    n_good, n_plausible = good_set_size(mean, np.full(1000, 1e-6), mean[:1], np.zeros(1), cfg)
    assert n_plausible == 1 and n_good == math.ceil(MIN_GOOD_SHARE * 1000)
    n_good, _ = good_set_size(mean, np.full(1000, 1e-6), mean[:1], np.zeros(1), cfg, enough=False)
    assert n_good == math.ceil(cfg.top_fraction * 1000)
    # A better lower bound among the trials than among the candidates raises the bar.
    n_good, n_plausible = good_set_size(mean, np.full(1000, 0.1), np.array([0.0]), np.zeros(1), cfg)
    assert n_plausible == int(np.sum(mean + 0.2 >= 0.0))
