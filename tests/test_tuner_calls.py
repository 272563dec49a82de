"""KerasTuner's Tuner calls on a Refiner: a tuner script runs with only its constructor changed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import refiner
from refiner.space import Float, SearchSpace
from refiner.trial import Objective

ROOT = Path(__file__).resolve().parent.parent


def _tiny_data():
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.data[:240] / 16.0).astype("float32"), digits.target[:240]


def build_model(hp):
    import keras

    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(hp.Int("units", 8, 32, step=8), activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(hp.Float("learning_rate", 1e-3, 1e-1, sampling="log")),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def kerastuner_script(make_tuner, x, y, log_file, capsys):
    """A KerasTuner user's script (the seed's workflow): everything but the constructor is fixed."""
    import keras
    import keras_tuner as kt

    class CountModels(keras.callbacks.Callback):
        # Deep-copied per model by the tuner, as in KerasTuner: it reports through a file.
        def __init__(self, path):
            super().__init__()
            self.path = path

        def on_train_begin(self, logs=None):
            with open(self.path, "a") as f:
                f.write("model\n")

    tuner = make_tuner(build_model, kt.Objective("val_accuracy", "max"))
    tuner.search_space_summary()
    space_summary = capsys.readouterr().out
    tuner.search(x, y, epochs=2, validation_split=0.25, batch_size=32, callbacks=[CountModels(str(log_file))])
    search_output = capsys.readouterr().out
    tuner.results_summary(num_trials=3)
    results_summary = capsys.readouterr().out
    best_model = tuner.get_best_models(num_models=1)[0]
    best_hp = tuner.get_best_hyperparameters()[0]
    fresh_model = tuner.hypermodel.build(best_hp)
    best_trials = tuner.oracle.get_best_trials(num_trials=2)
    rows = [(trial.trial_id, dict(trial.hyperparameters.values), trial.metrics.get_best_value("val_accuracy"),
             trial.score) for trial in best_trials]
    x_val, y_val = x[180:], y[180:]  # validation_split=0.25 holds out the last quarter
    _, best_model_accuracy = best_model.evaluate(x_val, y_val, verbose=0)
    return {
        "space_summary": space_summary, "search_output": search_output, "results_summary": results_summary,
        "best_model": best_model, "best_model_accuracy": best_model_accuracy, "best_hp": best_hp,
        "fresh_model": fresh_model, "rows": rows, "models_trained": len(Path(log_file).read_text().splitlines()),
    }


@pytest.mark.slow
def test_a_kerastuner_script_runs_on_refiner_with_only_the_constructor_changed(tmp_path, capsys):
    import keras
    import keras_tuner as kt

    x, y = _tiny_data()
    stock = kerastuner_script(
        lambda build, objective: kt.RandomSearch(build, objective=objective, max_trials=3, executions_per_trial=1,
                                                 directory=str(tmp_path), project_name="kt", seed=1),
        x, y, tmp_path / "kt.log", capsys)
    ours = kerastuner_script(
        lambda build, objective: refiner.Refiner(build, objective=objective, max_trials=5, rounds=2,
                                                 executions_per_trial=1, directory=str(tmp_path),
                                                 project_name="refiner", seed=1),
        x, y, tmp_path / "refiner.log", capsys)

    for result, trials in ((stock, 3), (ours, 5)):
        assert "Search space summary" in result["space_summary"] and "units (Int)" in result["space_summary"]
        assert "learning_rate (Float)" in result["space_summary"]
        assert result["results_summary"].startswith("Results summary")
        assert 'Objective(name="val_accuracy", direction="max")' in result["results_summary"]
        assert result["results_summary"].count("Score: ") == 3
        assert isinstance(result["best_model"], keras.Model) and isinstance(result["fresh_model"], keras.Model)
        assert result["models_trained"] == trials  # the callback ran once per model, from a copy
        (best_id, best_values, best_metric, best_score), second = result["rows"]
        assert best_metric == best_score >= second[3]
        assert result["best_hp"].values == best_values
        # The best model carries the trained weights of the best epoch: it scores what the trial scored.
        assert result["best_model_accuracy"] == pytest.approx(best_score, abs=1e-6)
    # refiner's schedule for max_trials=5 over 2 rounds: the benchmark's split (a small random round).
    run = json.loads((tmp_path / "refiner" / "run.json").read_text())
    assert (run["settings"]["initial_trials"], run["settings"]["trials_per_round"]) == (2, 3)
    assert "Epoch 1/2" in stock["search_output"]  # KerasTuner lets Keras print its bars...
    assert "Epoch" not in ours["search_output"]  # ...refiner only at verbose=2


@pytest.mark.slow
def test_verbose_2_shows_keras_epoch_bars_and_a_hypermodel_object_is_accepted(tmp_path, capfd):
    import keras_tuner as kt

    class Hyper(kt.HyperModel):
        def build(self, hp):
            return build_model(hp)

    x, y = _tiny_data()
    agent = refiner.Refiner(Hyper(), objective="val_accuracy", rounds=1, trials_per_round=1,
                            directory=tmp_path, project_name="v2", verbose=2, seed=0)
    assert isinstance(agent.hypermodel, Hyper)
    agent.search(x, y, epochs=1, validation_split=0.25)
    assert "/step - accuracy" in capfd.readouterr().out  # a Keras progress bar
    assert len(agent.trials) == 1 and agent.trials[0].ok


def test_keras_tuner_objective_is_accepted_and_several_objectives_are_refused(tmp_path):
    import keras_tuner as kt

    agent = refiner.Refiner(function=lambda p: p["x"], space=SearchSpace([Float("x", 0.0, 1.0)]),
                            objective=kt.Objective("val_f1_score", "max"), directory=tmp_path)
    assert agent.objective == Objective("val_f1_score", "max")
    assert Objective.coerce(kt.Objective("val_loss", "min")) == Objective("val_loss", "min")
    with pytest.raises(TypeError, match="one metric"):
        Objective.coerce([kt.Objective("a", "max"), kt.Objective("b", "min")])


@pytest.mark.parametrize("kwargs, expected", [
    ({"max_trials": 30}, (6, 12)),  # the benchmark's split: a fifth random, two equal Bayesian rounds
    ({"max_trials": 60}, (12, 24)),
    ({"max_trials": 30, "trials_per_round": 10}, (10, 10)),
    ({"max_trials": 30, "initial_trials": 10}, (10, 10)),
    ({"max_trials": 30, "initial_trials": 4, "trials_per_round": 13}, (4, 13)),
    ({"max_trials": 7, "rounds": 1}, (7, 7)),
    ({}, (None, 10)),  # without a total, the schedule is as before
])
def test_max_trials_is_split_as_the_benchmark_found_best_unless_a_part_is_given(tmp_path, kwargs, expected):
    agent = refiner.Refiner(function=lambda p: p["x"], space=SearchSpace([Float("x", 0.0, 1.0)]),
                            objective="loss", directory=tmp_path, **kwargs)
    assert (agent.initial_trials, agent.trials_per_round) == expected


@pytest.mark.parametrize("kwargs, message", [
    ({"max_trials": 3}, "`max_trials` must give at least 2 trials"),
    ({"max_trials": 30, "initial_trials": 5}, "must split into 2 equal rounds"),
    ({"max_trials": 30, "trials_per_round": 20}, "too small"),
    ({"max_trials": 30, "initial_trials": 5, "trials_per_round": 5}, "must add up to `max_trials` \\(30\\)"),
    ({"max_trials": 0}, "`max_trials` must be a positive integer"),
    ({"verbose": 3}, "`verbose` must be 0, 1 or 2"),
])
def test_an_impossible_schedule_is_refused_naming_the_settings(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        refiner.Refiner(function=lambda p: p["x"], space=SearchSpace([Float("x", 0.0, 1.0)]),
                        objective="loss", directory=tmp_path, **kwargs)


def test_results_come_back_as_keras_tuner_trials_best_first(tmp_path, capsys):
    agent = refiner.Refiner(function=lambda p: {"loss": (p["x"] - 0.3) ** 2, "other": p["x"]},
                            space=SearchSpace([Float("x", 0.0, 1.0)]), objective=Objective("loss", "min"),
                            rounds=2, max_trials=8, directory=tmp_path, project_name="f", seed=0, verbose=0)
    agent.search()
    ranked = sorted((t for t in agent.trials if t.ok), key=lambda t: t.score)
    best = agent.get_best_trials(3)
    assert [t.trial_id for t in best] == [t.trial_id for t in ranked[:3]]
    assert best[0].score == agent.best_trial.score == best[0].metrics.get_best_value("loss")
    assert best[0].metrics.get_last_value("other") == agent.best_trial.metrics["other"]
    assert best[0].hyperparameters.values == dict(agent.best_trial.hyperparameters)
    assert [t.trial_id for t in agent.oracle.get_best_trials(2)] == [t.trial_id for t in best[:2]]
    assert agent.oracle.objective.name == "loss" and agent.oracle.objective.direction == "min"
    agent.results_summary(num_trials=2)
    out = capsys.readouterr().out
    assert out.count("Score: ") == 2 and f"Trial {best[0].trial_id} summary" in out
    agent.search_space_summary()
    assert "x (Float)" in capsys.readouterr().out
    with pytest.raises(refiner.RefinerError, match="a function run trains no models"):
        agent.get_best_models()


def _progress_script(verbose: int) -> str:
    return textwrap.dedent(f"""
        import refiner
        from refiner.space import Float, SearchSpace
        refiner.Refiner(function=lambda p: (p["x"] - 0.3) ** 2, space=SearchSpace([Float("x", 0.0, 1.0)]),
                        objective="loss", rounds=2, max_trials=6, directory={{d!r}}, project_name="p",
                        engine="optuna", verbose={verbose}).search()
    """)


def test_search_from_python_shows_a_line_per_trial_and_round_without_logging_set_up(tmp_path):
    outputs = {}
    for verbose in (0, 1):
        script = _progress_script(verbose).format(d=str(tmp_path / str(verbose)))
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                                cwd=ROOT)
        assert result.returncode == 0, result.stderr
        outputs[verbose] = result.stderr
    lines = outputs[1].splitlines()
    assert sum(line.startswith("round 0  trial ") for line in lines) == 2
    assert sum(line.startswith("round 1  trial ") for line in lines) == 4
    assert any(line.startswith("round 1: 4 trials") for line in lines)  # the round's table
    assert "round 0  trial" not in outputs[0]
