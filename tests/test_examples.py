"""The shipped examples: their configs load and validate, and their code does what they say."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from refiner.config import load_run_config, resolve
from refiner.space import Boolean, Condition, Float, Int, SearchSpace
from refiner.trial import Objective
from refiner.validate import validate_file

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(autouse=True)
def _restore_import_state():
    # resolve() puts examples/ first on sys.path; keep that from leaking into other test modules.
    path = list(sys.path)
    yield
    sys.path[:] = path
    for name in ("branin", "digits_cnn"):
        sys.modules.pop(name, None)


# -- Branin ---------------------------------------------------------------------------------------------
def test_branin_config_loads():
    config = load_run_config(EXAMPLES / "branin.toml")
    assert config.name == "branin" and config.mode == "function"
    assert config.objective == Objective("loss", "min")
    assert (config.rounds, config.trials_per_round, config.seed) == (3, 10, 0)
    assert config.space == SearchSpace([Float("x1", -5.0, 10.0), Float("x2", 0.0, 15.0)])
    assert validate_file(EXAMPLES / "branin.toml") == []
    assert validate_file(EXAMPLES / "branin_space.json") == []


@pytest.mark.parametrize("x1, x2", [(-math.pi, 12.275), (math.pi, 2.275), (9.42478, 2.475)])
def test_branin_has_its_known_minima(x1, x2):
    branin = load_run_config(EXAMPLES / "branin.toml").resolve_target()
    assert branin({"x1": x1, "x2": x2}) == pytest.approx(0.397887, abs=1e-6)


def test_branin_minimum_is_the_minimum_of_a_grid():
    branin = resolve("branin:branin", EXAMPLES)
    grid = [branin({"x1": a, "x2": b}) for a in np.linspace(-5, 10, 61) for b in np.linspace(0, 15, 61)]
    assert min(grid) > 0.397887 - 1e-9
    assert branin({"x1": -5.0, "x2": 0.0}) == pytest.approx(308.1291, abs=1e-3)  # the domain's worst corner


# -- digits CNN -----------------------------------------------------------------------------------------
def test_digits_config_loads():
    config = load_run_config(EXAMPLES / "digits_cnn.toml")
    assert config.name == "digits_cnn" and config.mode == "hypermodel"
    assert config.hypermodel == "digits_cnn:build_model" and config.data == "digits_cnn:load_data"
    assert config.space is None
    assert config.objective == Objective("val_accuracy", "max")
    assert (config.rounds, config.trials_per_round, config.executions_per_trial, config.seed) == (3, 10, 1, 0)
    assert config.fit == {"epochs": 8, "validation_split": 0.2, "batch_size": 32}
    assert validate_file(EXAMPLES / "digits_cnn.toml") == []


def test_digits_load_data_shapes(monkeypatch):
    monkeypatch.delenv("REFINER_DIGITS_USE_MNIST", raising=False)
    data = resolve("digits_cnn:load_data", EXAMPLES)()
    x, y = data["x"], data["y"]
    assert set(data) == {"x", "y"}
    assert x.shape == (1797, 8, 8, 1) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() == 1.0
    assert y.shape == (1797,) and set(np.unique(y)) == set(range(10))
    # validation_split takes the last 20% unshuffled: every class must be there.
    assert set(np.unique(y[-len(y) // 5:])) == set(range(10))


def test_digits_build_model_compiles_on_keras_tuner_hyperparameters():
    kt = pytest.importorskip("keras_tuner")
    build_model = resolve("digits_cnn:build_model", EXAMPLES)
    hp = kt.HyperParameters()
    model = build_model(hp)
    assert model.input_shape == (None, 8, 8, 1) and model.output_shape == (None, 10)
    assert model.optimizer is not None and model.loss == "sparse_categorical_crossentropy"
    assert SearchSpace.from_keras_tuner(hp) == SearchSpace([
        Int("conv_1_filter", 16, 64, step=16),
        Boolean("use_conv_2", default=True),  # declared in build_model, so KerasTuner builds two blocks first
        Int("conv_2_filter", 32, 128, step=32, conditions=[Condition("use_conv_2", (True,))]),
        Int("dense_units", 32, 256, step=32),
        Float("dropout", 0.0, 0.5),
        Float("learning_rate", 1e-4, 1e-2, log=True),
    ])
    convs = lambda m: sum(type(layer).__name__ == "Conv2D" for layer in m.layers)  # noqa: E731
    assert convs(model) == 2  # default use_conv_2=True
    hp.values["use_conv_2"] = False
    assert convs(build_model(hp)) == 1


def test_digits_uses_a_local_mnist_only_when_asked(monkeypatch, tmp_path, caplog):
    load_data = resolve("digits_cnn:load_data", EXAMPLES)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("REFINER_DIGITS_USE_MNIST", "1")
    assert load_data()["x"].shape == (1797, 8, 8, 1)  # asked, but no local copy: never downloads
    assert "does not exist" in caplog.text
    datasets = tmp_path / ".keras" / "datasets"
    datasets.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savez(datasets / "mnist.npz", x_train=rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
             y_train=np.arange(6), x_test=np.zeros((1, 28, 28), np.uint8), y_test=np.zeros(1))
    data = load_data()
    assert data["x"].shape == (6, 28, 28, 1) and data["x"].dtype == np.float32 and data["x"].max() <= 1.0
    assert sorted(data["y"]) == list(range(6))
    assert resolve("digits_cnn:input_shape", EXAMPLES)() == (28, 28, 1)
    monkeypatch.setenv("REFINER_DIGITS_USE_MNIST", "0")
    assert load_data()["x"].shape == (1797, 8, 8, 1)


@pytest.mark.slow
def test_digits_model_learns_in_two_epochs():
    kt = pytest.importorskip("keras_tuner")
    build_model = resolve("digits_cnn:build_model", EXAMPLES)
    hp = kt.HyperParameters()
    hp.Fixed("learning_rate", 3e-3)
    model = build_model(hp)
    history = model.fit(**resolve("digits_cnn:load_data", EXAMPLES)(), epochs=2, validation_split=0.2,
                        batch_size=32, verbose=0)
    assert history.history["val_accuracy"][-1] > 0.5


@pytest.mark.slow
def test_digits_random_search_runs(tmp_path):
    kt = pytest.importorskip("keras_tuner")
    # KerasTuner's stock run_trial imports tensorboard, which tensorflow>=2.21 no longer installs.
    pytest.importorskip("tensorboard", reason="KerasTuner's Tuner.run_trial needs tensorboard")
    tuner = kt.RandomSearch(resolve("digits_cnn:build_model", EXAMPLES), objective="val_accuracy",
                            max_trials=2, directory=tmp_path, project_name="t", overwrite=True, seed=0)
    tuner.search(**resolve("digits_cnn:load_data", EXAMPLES)(), epochs=1, validation_split=0.2, verbose=0)
    trials = list(tuner.oracle.trials.values())
    assert len(trials) == 2 and all(t.score is not None and 0.0 <= t.score <= 1.0 for t in trials)


def test_the_optuna_example_is_valid_and_uses_the_optuna_engine():
    assert validate_file(EXAMPLES / "branin_optuna.toml") == []
    config = load_run_config(EXAMPLES / "branin_optuna.toml")
    assert config.engine == "optuna" and config.function == load_run_config(EXAMPLES / "branin.toml").function
