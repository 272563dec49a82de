"""The audit of earlier cuts: pieces of a cut, verdicts, re-opening, and a person's wrong cut caught in a run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import refiner
from refiner import schemas
from refiner.audit import AuditedCut, _pieces, audit_cuts, audit_document, reopen
from refiner.narrowing import Decision
from refiner.overrides import write_overrides
from refiner.console import run_summary
from refiner.space import Boolean, Choice, Fixed, Float, Int, SearchSpace
from refiner.store import RunStore
from refiner.trial import Objective, Trial, TrialState

APP = Path(__file__).resolve().parent.parent / "app.py"
LOSS = Objective("loss", "min")
SPACE = SearchSpace([Float("x", 0.0, 1.0), Float("y", 0.0, 1.0)])


def bowl(p):
    """Minimum 0 at x = 0.8, y = 0.5."""
    return (p["x"] - 0.8) ** 2 + (p["y"] - 0.5) ** 2


def _trials(fn, n, seed=0, noise=0.0, space=SPACE):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        params = space.sample(rng)
        out.append(Trial(f"0-{i:02d}", 0, params, float(fn(params) + noise * rng.normal()), TrialState.COMPLETE))
    return out


# -- pieces -----------------------------------------------------------------------------------------
def test_a_numeric_cut_has_a_piece_per_side_on_the_grid():
    before = Int("units", 16, 512, step=16)
    pieces = dict(_pieces(before, Int("units", 64, 256, step=16)))
    assert (pieces["low"].low, pieces["low"].high) == (16, 48)
    assert (pieces["high"].low, pieces["high"].high) == (272, 512)
    assert _pieces(before, Int("units", 16, 256, step=16))[0][0] == "high"  # the low side was not cut
    assert _pieces(before, before) == []
    fixed = dict(_pieces(Float("x", 0.0, 1.0), Fixed("x", 0.25)))
    assert (fixed["low"].low, fixed["low"].high, fixed["high"].low, fixed["high"].high) == (0.0, 0.25, 0.25, 1.0)


def test_a_choice_cut_is_the_values_dropped():
    before = Choice("opt", ("sgd", "adam", "rmsprop"))
    [(piece, part)] = _pieces(before, Choice("opt", ("adam", "rmsprop")))
    assert piece == "values" and part.value == "sgd"
    [(_, part)] = _pieces(before, Fixed("opt", "adam"))
    assert part.values == ("sgd", "rmsprop")
    [(_, part)] = _pieces(Boolean("bn"), Fixed("bn", True))
    assert part.value is False


# -- verdicts ---------------------------------------------------------------------------------------
def test_a_cut_that_removed_the_optimum_is_wrong_and_re_opened():
    trials = _trials(bowl, 40)
    cut = AuditedCut(0, "x", SPACE["x"], Float("x", 0.0, 0.4), SPACE)
    [judgement], summary = audit_cuts([cut], trials, SPACE, LOSS, seed=0)
    assert summary["trusted"]
    assert (judgement.piece, judgement.verdict, judgement.reopen) == ("high", "wrong", True)
    assert judgement.best_cut < judgement.best_kept  # a loss: lower is better
    assert 0.4 <= judgement.best_cut_config["x"] <= 1.0
    schemas.validate(audit_document(1, [judgement], summary), "audit")


def test_a_cut_of_a_bad_region_is_safe():
    trials = _trials(bowl, 40)
    cut = AuditedCut(0, "x", SPACE["x"], Float("x", 0.4, 1.0), SPACE)
    [judgement], _ = audit_cuts([cut], trials, SPACE, LOSS, seed=0)
    assert (judgement.piece, judgement.verdict, judgement.reopen) == ("low", "safe", False)


def test_an_untrusted_surrogate_judges_nothing():
    rng = np.random.default_rng(1)
    trials = [Trial(f"0-{i}", 0, SPACE.sample(rng), float(rng.normal()), TrialState.COMPLETE) for i in range(30)]
    cut = AuditedCut(0, "x", SPACE["x"], Float("x", 0.0, 0.4), SPACE)
    [judgement], summary = audit_cuts([cut], trials, SPACE, LOSS, seed=0, min_cv_score=0.99)
    assert not summary["trusted"]
    assert judgement.verdict == "unjudged" and not judgement.reopen and "Not judged" in judgement.reason


def test_one_lucky_noisy_trial_does_not_overturn_a_cut():
    # The cut part is truly worse (a loss of about 1 against 0.5), and noisy; one trial there drew a
    # very lucky score, the best of all. Judging raw scores would call the cut wrong.
    rng = np.random.default_rng(3)
    trials = []
    for i in range(60):
        params = SPACE.sample(rng)
        true = 0.5 if params["x"] < 0.5 else 1.0
        trials.append(Trial(f"0-{i:02d}", 0, params, float(true + 0.1 * rng.normal()), TrialState.COMPLETE))
    trials.append(Trial("0-lucky", 0, {"x": 0.8, "y": 0.3}, 0.05, TrialState.COMPLETE))
    assert min(trials, key=lambda t: t.score).trial_id == "0-lucky"
    cut = AuditedCut(0, "x", SPACE["x"], Float("x", 0.0, 0.5), SPACE)
    [judgement], summary = audit_cuts([cut], trials, SPACE, LOSS, seed=0)
    assert summary["trusted"]
    assert not judgement.reopen, judgement.reason


def test_reopen_restores_the_side_that_was_cut_and_dropped_values():
    space = SearchSpace([Float("x", 0.0, 1.0), Choice("opt", ("a", "b", "c"))])
    decisions = [
        Decision("x", "narrow", {"name": "x", "type": "float", "low": 0.0, "high": 0.4},
                 {"name": "x", "type": "float", "low": 0.1, "high": 0.3}, "Narrowed."),
        Decision("opt", "fix", Choice("opt", ("a", "b")).to_dict(), Fixed("opt", "a").to_dict(), "Fixed."),
    ]
    from refiner.audit import Judgement

    judgements = [
        Judgement(0, "x", "high", {"low": 0.4, "high": 1.0}, "wrong", 0.1, 0.01, 0.3, {"x": 0.8}, True, False, ""),
        Judgement(0, "opt", "values", {"values": ["c"]}, "wrong", 0.1, 0.01, 0.3, None, True, False, ""),
        Judgement(0, "x", "low", {"low": 0.0, "high": 0.0}, "doubtful", 0.1, 0.01, 0.3, None, False, False, ""),
    ]
    cut_before = {(0, "x"): Float("x", 0.0, 1.0), (0, "opt"): space["opt"]}
    x, opt = reopen(decisions, judgements, space, cut_before)
    assert x.action == "expand" and (x.after["low"], x.after["high"]) == (0.1, 1.0)
    assert "Audit: re-opened" in x.reason
    assert opt.action == "expand" and opt.after["values"] == ["a", "c"]


# -- a run ------------------------------------------------------------------------------------------
class Stoppable:
    """``bowl``, but interrupts the run once ``stop_after`` evaluations have happened (a person pausing)."""

    __qualname__ = "Stoppable"

    def __init__(self):
        self.calls = 0
        self.stop_after = None

    def __call__(self, p):
        self.calls += 1
        if self.stop_after is not None and self.calls > self.stop_after:
            raise KeyboardInterrupt
        return bowl(p)


@pytest.mark.slow
def test_a_persons_wrong_cut_is_caught_by_the_audit_and_re_opened(tmp_path, monkeypatch):
    fn = Stoppable()
    settings = dict(function=fn, space=SPACE, objective=LOSS, rounds=3, initial_trials=16, trials_per_round=8,
                    directory=tmp_path, project_name="run", seed=0, target_name="tests:bowl")
    fn.stop_after = 16  # round 0 runs and is analysed; the first trial of round 1 interrupts
    with pytest.raises(KeyboardInterrupt):
        refiner.Refiner(**settings).search()
    store = RunStore(tmp_path / "run")
    assert store.read_decisions(0) is not None and not store.read_trials(1)
    # Round 1 had written its space but run no trial: take it back, as a pause between rounds would.
    shutil.rmtree(store.round_dir(1))
    # The person is sure the optimum has a small x and cuts away everything above 0.3: the wrong side.
    write_overrides(store, 0, [{"name": "x", "action": "edit",
                                "after": {"name": "x", "type": "float", "low": 0.0, "high": 0.3}}])
    fn.stop_after = None
    refiner.Refiner(**settings).search()

    assert store.read_space(1)["x"].high == 0.3  # round 1 searched the person's range
    audit = store.read_audit(1)
    schemas.validate(audit, "audit")
    [caught] = [j for j in audit["judgements"] if j["round"] == 0 and j["name"] == "x" and j["piece"] == "high"]
    assert caught["overridden"] and caught["verdict"] == "wrong" and caught["reopen"], caught["reason"]
    assert "a person's override" in caught["reason"]
    [x_decision] = [d for d in store.read_decisions(1)["decisions"] if d["name"] == "x"]
    assert x_decision["action"] == "expand" and "Audit: re-opened" in x_decision["reason"]
    assert store.read_space(2)["x"].high == 1.0  # the optimum at x = 0.8 is back in the searched space
    best = min((t for t in store.all_trials() if t.ok), key=lambda t: t.score)
    assert best.hyperparameters["x"] > 0.3  # and round 2 found better than round 1 could
    shown = run_summary(store)
    assert "wrong (re-opened)" in shown and "a person's override" in shown
    json.dumps(audit)  # plain JSON

    # The review app shows the same verdict in round 0's decision table, and the reason by the plots.
    monkeypatch.setenv("REFINER_RUNS", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params["run"] = "run"
    at.run()
    at.radio(key="round").set_value(0).run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.table[0].value
    verdicts = dict(zip((p.split("]")[0].lstrip("[") for p in table["parameter"]), table["audit"]))
    assert verdicts["x"].replace("\\", "") == "wrong (re-opened)"
    at.toggle(key="plots-all-0").set_value(True).run()  # the audit's reason is in each parameter's section
    assert not at.exception, [e.value for e in at.exception]
    assert any("Audit (high piece): Wrong" in e.value.replace("\\", "") for e in at.error)
