"""A run whose first model shows a mistake stops at once, says what would work, and exits 2."""

from __future__ import annotations

import textwrap
import time

import pytest

from cli_processes import run_cli
import refiner
from refiner.errors import ValidationError
from refiner.space import Float, SearchSpace

MODULE = '''
import keras
import numpy as np


class CountModels(keras.callbacks.Callback):
    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_train_begin(self, logs=None):
        with open(self.path, "a") as f:
            f.write("model\\n")


def build_model(hp):
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(hp.Int("units", 4, 16, step=4), activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(hp.Float("lr", 1e-3, 1e-1, sampling="log")),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def load_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8)).astype("float32")
    return {"x": x, "y": (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0), "callbacks": [CountModels(MODELS_LOG)]}
'''


@pytest.mark.slow
def test_a_misspelled_objective_stops_after_one_model_with_exit_2_and_the_logged_metrics(tmp_path):
    log = tmp_path / "models.log"
    (tmp_path / "tiny.py").write_text(MODULE.replace("MODELS_LOG", repr(str(log))))
    config = tmp_path / "tiny.toml"
    config.write_text(textwrap.dedent("""
        name = "tiny"
        directory = "runs"
        hypermodel = "tiny:build_model"
        data = "tiny:load_data"

        [objective]
        name = "val_acc"
        direction = "max"

        [search]
        rounds = 2
        trials_per_round = 10
        executions_per_trial = 2
        seed = 0

        [fit]
        epochs = 2
        validation_split = 0.25
    """))
    started = time.perf_counter()
    result = run_cli(["run", config], cwd=tmp_path, timeout=600)
    elapsed = time.perf_counter() - started
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("refiner: error:")]
    assert errors == ["refiner: error: objective: 'val_acc' not found in the first model's metrics; logged: "
                      "accuracy, loss, val_accuracy, val_loss (set objective to one of them)"], result.stderr
    assert "Traceback" not in result.stderr
    assert log.read_text().splitlines() == ["model"]  # one model of 2 rounds x 10 trials x 2 executions
    # The run this command created held no trial: it is gone, so the corrected command starts cleanly.
    assert not (tmp_path / "runs" / "tiny").exists()
    print(f"misspelled objective: exit 2 after {elapsed:.1f} s")

    # The corrected command runs (one round of two trials is enough to show it: eight Keras fits were
    # a minute of a loaded machine for nothing this test asserts).
    config.write_text(config.read_text().replace('"val_acc"', '"val_accuracy"').replace("trials_per_round = 10",
                                                                                      "trials_per_round = 2")
                      .replace("rounds = 2", "rounds = 1"))
    fixed = run_cli(["run", config, "--quiet"], cwd=tmp_path, timeout=600)
    assert fixed.returncode == 0, fixed.stderr


@pytest.mark.parametrize("engine", ["keras-tuner", "optuna"])
def test_a_function_missing_the_objective_stops_at_the_first_trial(tmp_path, engine):
    calls = []

    def f(p):
        calls.append(p)
        return {"los": p["x"] ** 2, "accuracy": 1.0}

    agent = refiner.Refiner(function=f, space=SearchSpace([Float("x", -1.0, 1.0)]), objective="loss",
                            rounds=2, trials_per_round=5, directory=tmp_path, project_name="f", engine=engine, verbose=0)
    with pytest.raises(ValidationError, match=r"^objective: 'loss' not found in the first model's metrics; "
                                              r"logged: los, accuracy \(set objective to one of them\)$"):
        agent.search()
    assert len(calls) == 1
    assert not (tmp_path / "f").exists()


def test_an_earlier_run_is_kept_and_marked_failed_when_its_next_round_reveals_the_mistake(tmp_path):
    from refiner.errors import RoundFailedError
    from refiner.store import RunStore

    behaviour = {"raise": True}

    def f(p):
        if behaviour["raise"]:
            raise RuntimeError("diverged")
        return {"other": 1.0}

    def agent():
        return refiner.Refiner(function=f, space=SearchSpace([Float("x", -1.0, 1.0)]), objective="loss", rounds=2,
                               trials_per_round=3, directory=tmp_path, project_name="r", verbose=0)

    with pytest.raises(RoundFailedError):
        agent().search()  # three failed trials recorded: the run is worth keeping
    behaviour["raise"] = False
    with pytest.raises(ValidationError, match="logged: other"):
        agent().search()
    store = RunStore(tmp_path / "r")
    assert len(store.all_trials()) == 3
    state = store.read_run()["state"]
    assert state["status"] == "failed" and "'loss' not found" in state["message"]


@pytest.mark.slow
def test_data_the_first_model_cannot_take_stops_the_run_naming_the_shapes(tmp_path):
    import numpy as np

    from tests.test_tuner_calls import build_model  # takes 64 features

    x = np.zeros((40, 5), dtype="float32")
    y = np.zeros(40, dtype="int64")
    agent = refiner.Refiner(build_model, objective="val_accuracy", rounds=2, trials_per_round=5, directory=tmp_path,
                            project_name="shape", verbose=0)
    with pytest.raises(ValidationError) as info:
        agent.search(x, y, epochs=1, validation_split=0.25)
    message = str(info.value)
    assert message.startswith("data: the first model built but failed before finishing an epoch (")
    assert "expected axis -1 of input shape to have value 64, but received input with shape (None, 5)" in message
    assert "the data loader gave args[0]: array(40, 5) float32, args[1]: array(40,) int64" in message
    assert "\n" not in message
    assert not (tmp_path / "shape").exists()
