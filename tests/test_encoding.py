"""Space <-> matrix encoding: columns, values, inactive parameters, vectorised sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refiner.encoding import INACTIVE, Encoder
from refiner.space import Boolean, Choice, Condition, Fixed, Float, Int, SearchSpace


@pytest.fixture
def space() -> SearchSpace:
    return SearchSpace([
        Float("lr", 1e-4, 1e-2, log=True),
        Int("units", 32, 512, step=32),
        Choice("activation", ("relu", "tanh", "gelu")),
        Choice("batch", (16, 32, 64), ordered=True),
        Boolean("use_dropout"),
        Float("dropout", 0.0, 0.5, conditions=[Condition("use_dropout", (True,))]),
        Fixed("optimizer", "adam"),
        Int("layers", 1, 100, log=True),
        Float("momentum", 0.0, 1.0, step=0.25),
    ])


def test_columns_name_features_and_skip_fixed(space):
    enc = Encoder(space)
    assert enc.columns == [
        "lr", "units", "activation=relu", "activation=tanh", "activation=gelu", "batch",
        "use_dropout", "dropout", "layers", "momentum",
    ]
    assert enc.column_slice("optimizer") == slice(8, 8)
    assert enc.column_slice("activation") == slice(2, 5)


def test_encode_values(space):
    enc = Encoder(space)
    row = enc.encode([{
        "lr": 1e-3, "units": 512, "activation": "tanh", "batch": 32, "use_dropout": True,
        "dropout": 0.125, "optimizer": "adam", "layers": 10, "momentum": 0.5,
    }])[0]
    assert row[0] == pytest.approx(0.5)  # 1e-3 is the middle of [1e-4, 1e-2] in log space
    assert row[1] == pytest.approx(1.0)
    assert list(row[2:5]) == [0.0, 1.0, 0.0]
    assert row[5] == pytest.approx(0.5)  # ordered: index 1 of 3 -> 1/2
    assert row[6] == 1.0
    assert row[7] == pytest.approx(0.25)
    assert row[8] == pytest.approx(0.5)  # log int: 10 is the middle of [1, 100]
    assert row[9] == pytest.approx(0.5)


def test_inactive_and_missing_parameters_get_the_constant(space):
    enc = Encoder(space)
    X = enc.encode([{"lr": 1e-3, "use_dropout": False, "dropout": 0.3}, {}])
    assert X[0, enc.column_slice("dropout")].tolist() == [INACTIVE]  # condition fails
    assert np.all(X[1] == INACTIVE)
    assert not (0.0 <= INACTIVE <= 1.0)


def test_values_outside_the_range_encode_outside_the_unit_interval(space):
    enc = Encoder(space)
    X = enc.encode([{"lr": 1e-1, "units": 16, "activation": "selu", "batch": 8}])
    assert X[0, 0] == pytest.approx(1.5)
    assert X[0, 1] < 0
    assert X[0, 2:5].tolist() == [0.0, 0.0, 0.0]  # a value no longer offered: active, no column set
    assert X[0, 5] < 0  # below the smallest ordered value, extrapolated
    codes = enc.codes(X)
    assert codes["activation"][0] == -1
    assert codes["batch"][0] == -1


def test_bad_values_encode_as_missing(space):
    enc = Encoder(space)
    X = enc.encode([{"lr": -1.0, "units": "many", "use_dropout": 1}])
    assert X[0, 0] == INACTIVE and X[0, 1] == INACTIVE and X[0, 6] == INACTIVE


def test_sample_is_inside_the_space_on_grids_and_reproducible(space):
    enc = Encoder(space)
    X, codes = enc.sample(500, np.random.default_rng(3))
    X2, _ = enc.sample(500, np.random.default_rng(3))
    assert np.array_equal(X, X2)
    assert X.shape == (500, len(enc.columns))
    rows = enc.decode(X)
    assert all(space.contains(r) for r in rows)
    assert {r["units"] for r in rows} == set(range(32, 513, 32))  # every grid value, no others
    assert {r["momentum"] for r in rows} == {0.0, 0.25, 0.5, 0.75, 1.0}
    assert all(isinstance(r["layers"], int) for r in rows)
    # The child is active exactly where its condition holds.
    parent_true = codes["use_dropout"] == 1
    assert np.array_equal(~np.isnan(codes["dropout"]), parent_true)
    assert np.all(X[~parent_true, enc.column_slice("dropout")] == INACTIVE)
    # encode(decode(X)) reproduces the matrix.
    assert np.allclose(enc.encode(rows), X)


def test_sample_draws_log_parameters_log_uniformly(space):
    enc = Encoder(space)
    X, codes = enc.sample(4000, np.random.default_rng(0))
    lr = np.array(enc.values("lr", codes["lr"]))
    # Log-uniform on [1e-4, 1e-2]: a quarter below 10**-3.5, half below 1e-3.
    assert np.mean(lr < 1e-3) == pytest.approx(0.5, abs=0.03)
    assert np.mean(lr < 10**-3.5) == pytest.approx(0.25, abs=0.03)
    assert np.allclose(enc.codes(X)["lr"], codes["lr"])


def test_fixed_values_use_common_random_numbers(space):
    enc = Encoder(space)
    X1, c1 = enc.sample(300, np.random.default_rng(7), fixed={"use_dropout": True})
    X2, c2 = enc.sample(300, np.random.default_rng(7), fixed={"use_dropout": False})
    assert np.all(c1["use_dropout"] == 1) and np.all(c2["use_dropout"] == 0)
    assert np.all(~np.isnan(c1["dropout"])) and np.all(np.isnan(c2["dropout"]))
    same = [c for c in space.names if c not in ("use_dropout", "dropout", "optimizer")]
    for name in same:
        assert np.array_equal(c1[name], c2[name], equal_nan=True), name
    X3, c3 = enc.sample(300, np.random.default_rng(7), fixed={"lr": 1e-3, "activation": "gelu"})
    assert np.allclose(c3["lr"], 0.5) and np.all(c3["activation"] == 2)
    with pytest.raises(ValueError, match="selu"):
        enc.sample(3, np.random.default_rng(0), fixed={"activation": "selu"})
    with pytest.raises(KeyError, match="nope"):
        enc.sample(3, np.random.default_rng(0), fixed={"nope": 1})


def test_codes_read_rows_back(space):
    enc = Encoder(space)
    X = enc.encode([
        {"lr": 1e-4, "activation": "gelu", "batch": 64, "use_dropout": False},
        {"lr": 1e-2, "activation": "relu", "batch": 16, "use_dropout": True, "dropout": 0.5},
    ])
    codes = enc.codes(X)
    assert codes["lr"].tolist() == pytest.approx([0.0, 1.0])  # unit positions of numeric parameters
    assert np.isnan(codes["dropout"][0]) and codes["dropout"][1] == 1.0  # inactive: NaN
    assert codes["activation"].tolist() == [2, 0]  # value indices of discrete ones
    assert codes["batch"].tolist() == [2, 0]
    assert codes["use_dropout"].tolist() == [0, 1]
    assert np.isnan(codes["units"]).all()  # missing


def test_conditions_on_choices_and_fixed_parents():
    space = SearchSpace([
        Choice("opt", ("sgd", "adam", "rmsprop")),
        Float("momentum", 0.0, 0.99, conditions=[Condition("opt", ("sgd", "rmsprop"))]),
        Fixed("arch", "cnn"),
        Int("filters", 8, 64, conditions=[Condition("arch", ("cnn",))]),
        Int("never", 1, 3, conditions=[Condition("opt", ("adam",)), Condition("arch", ("cnn",))]),
    ])
    enc = Encoder(space)
    X, codes = enc.sample(400, np.random.default_rng(1))
    assert np.array_equal(~np.isnan(codes["momentum"]), np.isin(codes["opt"], [0, 2]))
    assert np.all(~np.isnan(codes["filters"]))
    assert np.array_equal(~np.isnan(codes["never"]), codes["opt"] == 1)
    assert all(space.contains(r) for r in enc.decode(X))
    assert np.allclose(enc.encode(enc.decode(X)), X)


def test_zero_width_and_single_value_parameters():
    space = SearchSpace([Float("a", 2.0, 2.0), Int("b", 5, 5), Choice("c", ("x",), ordered=True), Choice("d", ("y",))])
    enc = Encoder(space)
    X, _ = enc.sample(5, np.random.default_rng(0))
    assert np.all(X[:, :3] == 0.5) and np.all(X[:, 3] == 1.0)
    assert enc.decode(X)[0] == {"a": 2.0, "b": 5, "c": "x", "d": "y"}


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(0, 60))
def test_sample_decode_encode_roundtrip_property(seed, n):
    space = SearchSpace([
        Float("lr", 1e-5, 1.0, log=True),
        Int("units", 10, 200, step=10),
        Boolean("bn"),
        Choice("act", ("a", "b", "c"), conditions=[Condition("bn", (True,))]),
        Float("alpha", -2.0, 3.0, conditions=[Condition("act", ("b", "c"))]),
        Int("depth", 1, 1000, log=True),
    ])
    enc = Encoder(space)
    X, codes = enc.sample(n, np.random.default_rng(seed))
    rows = enc.decode(X)
    assert all(space.contains(r) for r in rows)
    assert np.allclose(enc.encode(rows), X)
    active = X != INACTIVE
    assert np.all((X[active] >= 0.0) & (X[active] <= 1.0))
    for name, code in enc.codes(X).items():
        assert np.allclose(code, codes[name], equal_nan=True)
    assert all(math.isfinite(v) for v in X.ravel())
