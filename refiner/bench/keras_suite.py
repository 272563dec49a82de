"""The Keras suite: small real Keras models, every tool at the epochs of one KerasTuner Hyperband iteration.

What a Keras user pays for is epochs of training, and the tools such a user would otherwise pick
are KerasTuner's ``Hyperband`` and Optuna with a pruner. Each problem here is a hypermodel trained
on data that ships with scikit-learn or is generated (no download):

* ``digits_cnn``: a small CNN on scikit-learn's 8x8 digits (validation cross-entropy);
* ``cancer_mlp``: an MLP on the breast-cancer table, 5 hyperparameters (validation cross-entropy);
* ``diabetes_mlp``: an MLP regressor on the diabetes table (validation mean squared error);
* ``motif_conv1d``: a 1-D convolutional net finding which of three motifs hides in a noisy sequence.

The budget of a problem and seed is the number of epochs KerasTuner ``Hyperband`` spends on one
iteration (``max_epochs`` 27, ``factor`` 3 unless ``--keras-max-epochs`` says otherwise). Every other
tool gets that many epochs: KerasTuner ``BayesianOptimization`` and ``RandomSearch`` and refiner
without fidelity as trials trained to ``max_epochs``; Optuna TPE with ``HyperbandPruner`` reporting
after every epoch until the epochs are spent; refiner with a :class:`~refiner.fidelity.Fidelity`
given the budget itself as its epoch budget (``Fidelity(..., total=budget)``), which it keeps to
within one trial's epochs; the table shows what it spent, and models it finishes beyond the
budget do not count.

Every model trains through one callback (:func:`epoch_ledger_callback`) that counts epochs and training
seconds and records each model that reaches ``max_epochs`` with its validation score there. A
tool's score is the best such score: a configuration stopped or pruned early is never a result.
From the same record come the score-against-epochs curves and the orchestration time (wall time
outside training).

``refiner bench --suite keras [--seeds N] [--problems ...] [--optimizers ...] [--keras-max-epochs 27]``
prints the table, the issue's targets, and writes ``keras.json`` (and ``keras_curves.png`` with
matplotlib).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from refiner.bench.harness import code_version, other_code, worker_pool
from refiner.errors import RefinerError
from refiner.jsonio import atomic_write_text

__all__ = ["KERAS_PROBLEMS", "KERAS_OPTIMIZERS", "epoch_ledger_callback", "run_keras_benchmark", "check_resume",
           "format_keras_report", "keras_targets"]

log = logging.getLogger(__name__)

MAX_EPOCHS = 27  # KerasTuner Hyperband's max_epochs in the comparison: rungs 1, 3, 9, 27
ETA = 3  # Hyperband's factor and refiner's eta
BATCH_SIZE = 64


# -- data (all offline) ----------------------------------------------------------------------------
def _split(x: np.ndarray, y: np.ndarray, seed: int = 0, val_share: float = 0.25) -> dict[str, Any]:
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    n_val = int(len(x) * val_share)
    return {"x": x[n_val:], "y": y[n_val:], "validation_data": (x[:n_val], y[:n_val])}


def _standardised(data: dict[str, Any]) -> dict[str, Any]:
    """Scale features by the training rows' mean and std (the validation rows never leak in)."""
    mean, std = data["x"].mean(axis=0), data["x"].std(axis=0) + 1e-8
    xv, yv = data["validation_data"]
    return {"x": ((data["x"] - mean) / std).astype("float32"), "y": data["y"],
            "validation_data": (((xv - mean) / std).astype("float32"), yv)}


def _digits() -> dict[str, Any]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return _split((d.images / 16.0).astype("float32")[..., None], d.target.astype("int64"))


def _cancer() -> dict[str, Any]:
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    return _standardised(_split(d.data.astype("float32"), d.target.astype("float32")))


def _diabetes() -> dict[str, Any]:
    from sklearn.datasets import load_diabetes

    d = load_diabetes()
    data = _standardised(_split(d.data.astype("float32"), d.target.astype("float32")))
    mean, std = data["y"].mean(), data["y"].std()  # a unit-scale target keeps every learning rate sane
    xv, yv = data["validation_data"]
    return {"x": data["x"], "y": (data["y"] - mean) / std, "validation_data": (xv, (yv - mean) / std)}


MOTIF_LENGTH, SEQUENCE_LENGTH, N_SEQUENCES = 7, 48, 1600


def _motifs() -> dict[str, Any]:
    """Class k: motif k (one of three fixed 7-step shapes) added at a random place to Gaussian noise."""
    rng = np.random.default_rng(7)
    t = np.linspace(0.0, 1.0, MOTIF_LENGTH)
    shapes = np.stack([np.sin(np.pi * t), np.sin(2 * np.pi * t), 1.0 - 2.0 * np.abs(t - 0.5) * 2.0])
    y = rng.integers(0, 3, size=N_SEQUENCES)
    x = rng.normal(0.0, 0.6, size=(N_SEQUENCES, SEQUENCE_LENGTH)).astype("float32")
    starts = rng.integers(0, SEQUENCE_LENGTH - MOTIF_LENGTH, size=N_SEQUENCES)
    for i, (k, s) in enumerate(zip(y, starts)):
        x[i, s:s + MOTIF_LENGTH] += shapes[k]
    return _split(x[..., None], y.astype("int64"))


# -- hypermodels (plain KerasTuner code, as a user writes it) --------------------------------------
def _compile(model: Any, hp: Any, loss: str) -> Any:
    import keras

    lr = hp.Float("learning_rate", 1e-4, 1e-1, sampling="log")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr), loss=loss)
    return model


def _digits_cnn(hp: Any) -> Any:
    import keras

    model = keras.Sequential([
        keras.Input(shape=(8, 8, 1)),
        keras.layers.Conv2D(hp.Int("filters", 8, 64, step=8), hp.Choice("kernel_size", [2, 3]), padding="same",
                            activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(hp.Int("units", 16, 128, step=16), activation="relu"),
        keras.layers.Dropout(hp.Float("dropout", 0.0, 0.6)),
        keras.layers.Dense(10, activation="softmax"),
    ])
    return _compile(model, hp, "sparse_categorical_crossentropy")


def _mlp(hp: Any, inputs: int, outputs: int, activation: str | None, loss: str) -> Any:
    import keras

    l2 = keras.regularizers.L2(hp.Float("l2", 1e-6, 1e-1, sampling="log"))
    units, dropout = hp.Int("units", 8, 256, sampling="log"), hp.Float("dropout", 0.0, 0.6)
    model = keras.Sequential([keras.Input(shape=(inputs,))])
    for _ in range(hp.Int("layers", 1, 3)):
        model.add(keras.layers.Dense(units, activation="relu", kernel_regularizer=l2))
        model.add(keras.layers.Dropout(dropout))
    model.add(keras.layers.Dense(outputs, activation=activation))
    return _compile(model, hp, loss)


def _cancer_mlp(hp: Any) -> Any:
    return _mlp(hp, 30, 1, "sigmoid", "binary_crossentropy")


def _diabetes_mlp(hp: Any) -> Any:
    return _mlp(hp, 10, 1, None, "mse")


def _motif_conv1d(hp: Any) -> Any:
    import keras

    pooling = {"max": keras.layers.GlobalMaxPooling1D, "average": keras.layers.GlobalAveragePooling1D}
    model = keras.Sequential([
        keras.Input(shape=(SEQUENCE_LENGTH, 1)),
        keras.layers.Conv1D(hp.Int("filters", 4, 64, sampling="log"), hp.Int("kernel_size", 3, 11, step=2),
                            activation="relu"),
        pooling[hp.Choice("pooling", ["max", "average"])](),
        keras.layers.Dense(hp.Int("units", 8, 64, step=8), activation="relu"),
        keras.layers.Dense(3, activation="softmax"),
    ])
    return _compile(model, hp, "sparse_categorical_crossentropy")


@dataclass(frozen=True)
class KerasProblem:
    name: str
    description: str
    build: Callable[[Any], Any]
    data: Callable[[], dict[str, Any]]
    objective: str = "val_loss"  # minimised


KERAS_PROBLEMS: dict[str, KerasProblem] = {p.name: p for p in (
    KerasProblem("digits_cnn", "CNN on scikit-learn's 8x8 digits, 6 hyperparameters", _digits_cnn, _digits),
    KerasProblem("cancer_mlp", "MLP on the breast-cancer table, 5 hyperparameters", _cancer_mlp, _cancer),
    KerasProblem("diabetes_mlp", "MLP regressor on the diabetes table, 5 hyperparameters", _diabetes_mlp, _diabetes),
    KerasProblem("motif_conv1d", "1-D conv net on generated motif sequences, 5 hyperparameters", _motif_conv1d,
                 _motifs),
)}


# -- the ledger every model trains through ----------------------------------------------------------
class _Ledger:
    """Epochs, training seconds and the models that reached ``max_epochs`` (with their score there)."""

    def __init__(self, objective: str, max_epochs: int):
        self.objective, self.max_epochs = objective, max_epochs
        self.epochs = 0
        self.train_s = 0.0
        self.finished: list[tuple[int, float]] = []  # (epochs spent so far, score at max_epochs)

    def best(self, epochs: float = math.inf) -> float | None:
        scores = [s for e, s in self.finished if e <= epochs and math.isfinite(s)]
        return min(scores) if scores else None


@functools.lru_cache(maxsize=1)
def epoch_ledger_callback() -> type:
    """The Keras callback class every model of the suite trains with (built once Keras is imported)."""
    import keras

    class EpochLedgerCallback(keras.callbacks.Callback):
        """Counts into the class's current ledger: KerasTuner and refiner copy callbacks per model,
        and a copy must still count into the same record."""

        ledger: _Ledger | None = None

        def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
            self._t0 = time.perf_counter()

        def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
            if self.ledger is not None:
                self.ledger.train_s += time.perf_counter() - self._t0

        def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            ledger = type(self).ledger
            if ledger is None:
                return
            ledger.epochs += 1
            if epoch + 1 == ledger.max_epochs:  # the epoch index counts on when Hyperband resumes a model
                value = float((logs or {}).get(ledger.objective, math.nan))
                ledger.finished.append((ledger.epochs, value if math.isfinite(value) else math.inf))

    return EpochLedgerCallback


# -- the tools -----------------------------------------------------------------------------------------
class _OptunaHP:
    """Optuna's define-by-run API behind KerasTuner's ``hp`` calls, so one hypermodel serves both."""

    def __init__(self, trial: Any):
        self.trial = trial

    def Int(self, name: str, min_value: int, max_value: int, step: int | None = None,  # noqa: N802 - hp's API
            sampling: str | None = None) -> int:
        return self.trial.suggest_int(name, min_value, max_value, step=step or 1, log=sampling == "log")

    def Float(self, name: str, min_value: float, max_value: float, sampling: str | None = None) -> float:  # noqa: N802
        return self.trial.suggest_float(name, min_value, max_value, log=sampling == "log")

    def Choice(self, name: str, values: Sequence[Any]) -> Any:  # noqa: N802
        return self.trial.suggest_categorical(name, list(values))


def _fit_kwargs(data: Mapping[str, Any], callback: Any) -> dict[str, Any]:
    return {"x": data["x"], "y": data["y"], "validation_data": data["validation_data"], "batch_size": BATCH_SIZE,
            "callbacks": [callback], "verbose": 0}


def _kerastuner(kind: str, problem: KerasProblem, data: Mapping[str, Any], callback: Any, seed: int,
                workdir: Path, max_epochs: int, epochs: int) -> None:
    import keras_tuner as kt

    common = {"objective": kt.Objective(problem.objective, "min"), "seed": seed, "directory": str(workdir),
              "project_name": kind, "overwrite": True}
    if kind == "kt_hyperband":
        tuner = kt.Hyperband(problem.build, max_epochs=max_epochs, factor=ETA, hyperband_iterations=1, **common)
        tuner.search(**_fit_kwargs(data, callback))
        return
    trials = max(2, epochs // max_epochs)
    tuner_cls = kt.BayesianOptimization if kind == "kt_bayes" else kt.RandomSearch
    tuner = tuner_cls(problem.build, max_trials=trials, **common)
    tuner.search(epochs=max_epochs, **_fit_kwargs(data, callback))


def _optuna_tpe_hyperband(problem: KerasProblem, data: Mapping[str, Any], callback: Any, seed: int,
                          workdir: Path, max_epochs: int, epochs: int) -> None:
    import keras
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ledger = type(callback).ledger
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs,
                                                                      reduction_factor=ETA))

    class Report(keras.callbacks.Callback):
        """Optuna's Keras pruning callback: report each epoch, stop the model when pruned."""

        def __init__(self, trial: Any):
            super().__init__()
            self.trial, self.pruned = trial, False

        def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            value = float((logs or {}).get(problem.objective, math.inf))
            self.trial.report(value if math.isfinite(value) else 1e30, epoch + 1)
            if self.trial.should_prune():
                self.pruned, self.model.stop_training = True, True

    def objective(trial: Any) -> float:
        keras.backend.clear_session()
        model = problem.build(_OptunaHP(trial))
        report = Report(trial)
        kwargs = _fit_kwargs(data, callback)
        kwargs["callbacks"] = [callback, report]
        history = model.fit(epochs=max_epochs, **kwargs)
        if report.pruned:
            raise optuna.TrialPruned()
        value = history.history[problem.objective][-1]
        return float(value) if math.isfinite(value) else 1e30

    def stop_at_budget(study: Any, trial: Any) -> None:
        if ledger.epochs >= epochs:
            study.stop()

    study.optimize(objective, n_trials=100_000, callbacks=[stop_at_budget], catch=(ValueError, FloatingPointError))


def _refiner(fidelity: bool) -> Callable[..., None]:
    def run(problem: KerasProblem, data: Mapping[str, Any], callback: Any, seed: int, workdir: Path,
            max_epochs: int, epochs: int, rounds: int = 3) -> None:
        from refiner.fidelity import Fidelity
        from refiner.loop import Refiner

        if fidelity:
            # The budget itself: refiner keeps to it within one trial's epochs (refiner.fidelity.EpochBudget).
            # `rounds` rounds, fewer when the budget cannot train a trial to the end in each.
            n = max(1, min(rounds, epochs // max_epochs))
            paid: dict[str, Any] = {"rounds": n, "fidelity": Fidelity("epochs", min=1, max=max_epochs, eta=ETA,
                                                                        total=max(epochs, max_epochs))}
        else:  # as many full trials as the epochs buy, at least enough to fill the rounds
            paid = {"rounds": rounds, "max_trials": max(rounds + 1, round(epochs / max_epochs))}
        tuner = Refiner(problem.build, objective={"name": problem.objective, "direction": "min"}, seed=seed,
                        directory=workdir, project_name="refiner", verbose=0, overwrite=True,
                        target_name=f"bench:{problem.name}", **paid)
        kwargs = _fit_kwargs(data, callback)
        if not fidelity:
            kwargs["epochs"] = max_epochs
        tuner.search(**kwargs)

    return run


_TOOLS: dict[str, Callable[..., None]] = {
    "kt_hyperband": lambda *a: _kerastuner("kt_hyperband", *a),
    "refiner+fidelity": _refiner(True),
    "refiner": _refiner(False),
    "kt_bayes": lambda *a: _kerastuner("kt_bayes", *a),
    "kt_random": lambda *a: _kerastuner("kt_random", *a),
    "optuna_tpe_hyperband": _optuna_tpe_hyperband,
}
KERAS_OPTIMIZERS = tuple(_TOOLS)  # kt_hyperband first: its epochs are everyone's budget


def _run_one(problem: KerasProblem, optimizer: str, seed: int, data: Mapping[str, Any], max_epochs: int,
             epochs: int, rounds: int = 3) -> dict[str, Any]:
    import keras

    callback_cls = epoch_ledger_callback()
    ledger = _Ledger(problem.objective, max_epochs)
    callback_cls.ledger = ledger
    keras.utils.set_random_seed(seed)
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            extra = {"rounds": rounds} if optimizer.startswith("refiner") else {}
            _TOOLS[optimizer](problem, data, callback_cls(), seed, Path(tmp), max_epochs, epochs, **extra)
    finally:
        callback_cls.ledger = None
    wall = time.perf_counter() - started
    return {"problem": problem.name, "optimizer": optimizer, "seed": seed, "epochs": ledger.epochs,
            "best": ledger.best(), "best_at_budget": ledger.best(epochs) if epochs else ledger.best(),
            "finished": ledger.finished, "wall_s": wall, "train_s": ledger.train_s,
            "orchestration_s": max(0.0, wall - ledger.train_s)}


@dataclass(frozen=True)
class _Unit:
    """One problem and seed: KerasTuner Hyperband first (its epochs are the budget), then every other tool."""

    problem: str
    seed: int
    optimizers: tuple[str, ...]
    max_epochs: int
    rounds: int


@functools.lru_cache(maxsize=None)
def _data(problem: str) -> dict[str, Any]:
    return KERAS_PROBLEMS[problem].data()


def _run_unit(unit: _Unit) -> list[dict[str, Any]]:
    problem, data = KERAS_PROBLEMS[unit.problem], _data(unit.problem)
    anchor = _run_one(problem, "kt_hyperband", unit.seed, data, unit.max_epochs, 0)
    budget = anchor["epochs"]
    anchor["best_at_budget"], anchor["budget"] = anchor["best"], budget
    records = [anchor] if "kt_hyperband" in unit.optimizers else []
    log.info("%s seed %d kt_hyperband: %d epochs, best %s, %.0f s", unit.problem, unit.seed, budget, anchor["best"],
             anchor["wall_s"])
    for optimizer in unit.optimizers:
        if optimizer == "kt_hyperband":
            continue
        record = _run_one(problem, optimizer, unit.seed, data, unit.max_epochs, budget, unit.rounds)
        record["budget"] = budget
        records.append(record)
        log.info("%s seed %d %s: %d epochs, best %s at the budget, %.0f s", unit.problem, unit.seed, optimizer,
                 record["epochs"], record["best_at_budget"], record["wall_s"])
    return records


def _finished_units(path: Path, max_epochs: int, rounds: int, names: Sequence[str], seeds: int,
                    chosen: Sequence[str]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """``--resume``: the (problem, seed) units of an earlier ``keras.json`` that hold a run of every
    chosen tool, with their runs. Refused (a one-line :class:`RefinerError`, nothing run or written):
    a file made at another ``max_epochs`` or with other refiner rounds, whose runs would not compare,
    and a file with runs this selection leaves out, which rewriting it would lose."""
    if not path.exists():
        return {}
    try:
        earlier = json.loads(path.read_text())
        runs = earlier["runs"]
        named = [(str(run["problem"]), int(run["seed"]), str(run["optimizer"])) for run in runs]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RefinerError(f"--resume: {path} is not a Keras-suite result ({type(exc).__name__}: {exc})") from None
    made = (earlier.get("max_epochs"), earlier.get("eta", ETA), earlier.get("rounds", 3))
    if made != (max_epochs, ETA, rounds):
        raise RefinerError(f"--resume: {path} was made with max_epochs {made[0]}, factor {made[1]} and refiner rounds "
                           f"{made[2]}, not {max_epochs}, {ETA} and {rounds}; give the same --keras-max-epochs and "
                           f"--refiner-rounds, or another --out")
    outside = sorted({f"{problem} seed {seed} {tool}" for problem, seed, tool in named
                      if problem not in names or seed >= seeds or tool not in chosen})
    if outside:
        raise RefinerError(f"--resume: {path} holds runs this selection leaves out ({outside[0]}"
                           f"{f' and {len(outside) - 1} more' if len(outside) > 1 else ''}), which rewriting it would "
                           f"lose; resume with the --problems, --optimizers and --seeds (or more) it was made with")
    units: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for (problem, seed, _), run in zip(named, runs):
        units.setdefault((problem, seed), []).append(run)
    return {key: rows for key, rows in units.items() if set(chosen) <= {r["optimizer"] for r in rows}}


def check_resume(out: Path, seeds: int, problems: Sequence[str] | None = None,
                 optimizers: Sequence[str] | None = None, max_epochs: int = MAX_EPOCHS, rounds: int = 3) -> None:
    """Raise the :class:`RefinerError` that ``resume=True`` would, before anything runs."""
    chosen = [o for o in KERAS_OPTIMIZERS if optimizers is None or o in optimizers]
    _finished_units(out / "keras.json", max_epochs, rounds, list(problems or KERAS_PROBLEMS), seeds, chosen)


def run_keras_benchmark(seeds: int, problems: Sequence[str] | None = None, optimizers: Sequence[str] | None = None,
                        max_epochs: int = MAX_EPOCHS, out: Path | None = None, rounds: int = 3,
                        plots: bool = True, jobs: int = 1, resume: bool = False) -> dict[str, Any]:
    """Every tool on every problem and seed, at the epochs KerasTuner Hyperband spent on that seed
    (``rounds``: refiner's rounds, ``--refiner-rounds``).

    The units (problem, seed) run in ``jobs`` spawned processes, one thread each (``jobs=1``: here,
    with every core). ``keras.json`` in ``out`` is rewritten after each unit (``"complete": false``
    until the last), so a stopped run loses only the units in flight; ``resume`` keeps the units
    that file already finished and runs the rest (:func:`check_resume` says what it refuses)."""
    chosen = [o for o in KERAS_OPTIMIZERS if optimizers is None or o in optimizers]
    names = list(problems or KERAS_PROBLEMS)
    done = (_finished_units(out / "keras.json", max_epochs, rounds, names, seeds, chosen)
            if resume and out is not None else {})
    todo = [_Unit(name, seed, tuple(chosen), max_epochs, rounds)
            for name in names for seed in range(seeds) if (name, seed) not in done]
    if done:
        log.info("resuming: %d of %d problem-seed units already in %s", len(done), len(done) + len(todo),
                 out / "keras.json")  # type: ignore[operator]
        older = other_code([r for rows in done.values() for r in rows])
        if older:
            log.warning("--resume: %s", older)

    def result(complete: bool) -> dict[str, Any]:
        order = {name: i for i, name in enumerate(names)}
        runs = [r for key in sorted(done, key=lambda k: (order[k[0]], k[1])) for r in done[key]]
        return {"max_epochs": max_epochs, "eta": ETA, "rounds": rounds, "seeds": seeds, "complete": complete,
                "runs": runs,  # each with the --jobs it ran under: a resumed file may mix them
                "rule": "budget = KerasTuner Hyperband's epochs for one iteration; score = best validation value of "
                        "a model trained to max_epochs, at that epoch (stopped or pruned models never count)"}

    def record(unit: _Unit, records: list[dict[str, Any]]) -> None:
        for r in records:
            r["jobs"] = jobs  # its seconds were measured beside jobs - 1 other units
            r["code"] = code_version()  # a later --resume may keep it beside units of newer code
        done[(unit.problem, unit.seed)] = records
        if out is not None:
            atomic_write_text(out / "keras.json", json.dumps(result(complete=False), indent=2) + "\n")

    if jobs <= 1:
        for unit in todo:
            record(unit, _run_unit(unit))
    else:
        from concurrent.futures import as_completed

        with worker_pool(jobs, _run_unit, todo) as futures:
            units = dict(zip(futures, todo))
            for future in as_completed(futures):
                unit = units[future]
                records = future.result()
                for r in records:  # the workers' own log lines stay quiet
                    log.info("%s seed %d %s: %d epochs, best %s at the budget %d, %.0f s", unit.problem, unit.seed,
                             r["optimizer"], r["epochs"], r["best_at_budget"], r["budget"], r["wall_s"])
                record(unit, records)
    final = result(complete=True)
    if out is not None:
        atomic_write_text(out / "keras.json", json.dumps(final, indent=2) + "\n")  # whole or not at all
        plot = _plot(final, out / "keras_curves.png") if plots else None
        if plot:
            final["plot"] = str(plot)
    return final


# -- the report ----------------------------------------------------------------------------------------
def _median(values: Sequence[float | None]) -> float:
    finite = [v if v is not None else math.inf for v in values]
    return statistics.median(finite) if finite else math.nan


def _epochs_to_reach(run: Mapping[str, Any], target: float) -> float:
    """The epochs a run had spent when a model first reached ``target`` at max_epochs (inf: never)."""
    for spent, score in run["finished"]:
        if score <= target:
            return spent
    return math.inf


def keras_targets(result: Mapping[str, Any]) -> list[str]:
    """The issue's four targets, each with its evidence, met or not."""
    runs = result["runs"]
    problems = list(dict.fromkeys(r["problem"] for r in runs))
    by = {(r["problem"], r["optimizer"]): [x for x in runs if x["problem"] == r["problem"]
                                           and x["optimizer"] == r["optimizer"]] for r in runs}
    lines = []
    mine = "refiner+fidelity"

    def med(problem: str, optimizer: str) -> float | None:
        rows = by.get((problem, optimizer))
        return _median([r["best_at_budget"] for r in rows]) if rows else None

    if all((p, mine) in by and (p, "kt_bayes") in by for p in problems):
        ratios = []
        for p in problems:
            target = med(p, "kt_bayes")
            reach = statistics.median(_epochs_to_reach(r, target) for r in by[(p, mine)])
            spent = statistics.median(r["epochs"] for r in by[(p, "kt_bayes")])
            ratios.append((p, reach / spent if spent else math.inf))
        ok = all(r <= 1 / 3 for _, r in ratios)
        lines.append(f"[{'met' if ok else 'NOT met'}] reaches kt_bayes's final median score with <= 1/3 of its "
                     f"epochs: " + ", ".join(f"{p} {r:.2f}x" for p, r in ratios))
    for rival in ("kt_hyperband", "optuna_tpe_hyperband"):
        if all((p, mine) in by and (p, rival) in by for p in problems):
            wins = [p for p in problems if med(p, mine) < med(p, rival)]  # type: ignore[operator]
            need = math.ceil(0.75 * len(problems))
            lines.append(f"[{'met' if len(wins) >= need else 'NOT met'}] median best beats {rival} at equal epochs on "
                         f">= 3 of 4 problems: {len(wins)} of {len(problems)} ({', '.join(wins) or 'none'})")
    if all((p, mine) in by and (p, "kt_random") in by for p in problems):
        worse = [p for p in problems if med(p, mine) > med(p, "kt_random")]  # type: ignore[operator]
        lines.append(f"[{'met' if not worse else 'NOT met'}] never worse than kt_random: "
                     f"{'never' if not worse else 'worse on ' + ', '.join(worse)}")
    if all((p, mine) in by and (p, "kt_hyperband") in by for p in problems):
        pairs = [(p, statistics.median(r["orchestration_s"] for r in by[(p, mine)]),
                  statistics.median(r["orchestration_s"] for r in by[(p, "kt_hyperband")])) for p in problems]
        ok = all(a < b for _, a, b in pairs)
        lines.append(f"[{'met' if ok else 'NOT met'}] orchestration (wall outside training) below kt_hyperband's: "
                     + ", ".join(f"{p} {a:.1f} s vs {b:.1f} s" for p, a, b in pairs))
    return lines


def format_keras_report(result: Mapping[str, Any]) -> str:
    """Per problem and tool: median best validation score at the budget, epochs, wall and orchestration."""
    runs = result["runs"]
    lines = [f"Keras suite: {result['seeds']} seed(s), max_epochs {result['max_epochs']}, factor {result['eta']}; "
             f"every tool at the epochs of one KerasTuner Hyperband iteration (score: validation value at "
             f"max_epochs, lower is better; stopped or pruned models never count)",
             f"{'problem':<14} {'tool':<22} {'median best':>12} {'epochs':>8} {'budget':>8} {'wall s':>8} "
             f"{'orch. s':>8} {'refiner+fidelity better':>24}"]
    for name in dict.fromkeys(r["problem"] for r in runs):
        mine = {r["seed"]: r["best_at_budget"] for r in runs if r["problem"] == name
                and r["optimizer"] == "refiner+fidelity"}
        for optimizer in KERAS_OPTIMIZERS:
            rows = [r for r in runs if r["problem"] == name and r["optimizer"] == optimizer]
            if not rows:
                continue
            wins = sum(1 for r in rows if optimizer != "refiner+fidelity" and r["seed"] in mine
                       and (mine[r["seed"]] if mine[r["seed"]] is not None else math.inf)
                       < (r["best_at_budget"] if r["best_at_budget"] is not None else math.inf))
            lines.append(
                f"{name:<14} {optimizer:<22} {_median([r['best_at_budget'] for r in rows]):>12.4g} "
                f"{statistics.median(r['epochs'] for r in rows):>8.0f} "
                f"{statistics.median(r.get('budget', 0) for r in rows):>8.0f} "
                f"{statistics.median(r['wall_s'] for r in rows):>8.1f} "
                f"{statistics.median(r['orchestration_s'] for r in rows):>8.1f} "
                f"{'' if optimizer == 'refiner+fidelity' or not mine else f'{wins}/{len(rows)}':>24}")
    lines.append("Targets:")
    lines.extend("  " + line for line in keras_targets(result))
    if result.get("plot"):
        lines.append(f"plot: {result['plot']}")
    return "\n".join(lines)


def _plot(result: Mapping[str, Any], path: Path) -> Path | None:
    """Best score against epochs spent, per problem: each tool's median incumbent over seeds."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    runs = result["runs"]
    problems = list(dict.fromkeys(r["problem"] for r in runs))
    fig, axes = plt.subplots(1, len(problems), figsize=(4.5 * len(problems), 3.8), squeeze=False)
    for ax, name in zip(axes[0], problems):
        budget = max((r.get("budget", r["epochs"]) for r in runs if r["problem"] == name), default=1)
        grid = np.linspace(1, max(budget, 1), 60)
        for optimizer in KERAS_OPTIMIZERS:
            rows = [r for r in runs if r["problem"] == name and r["optimizer"] == optimizer]
            if not rows:
                continue
            curves = []
            for r in rows:
                best, curve, i = math.inf, [], 0
                finished = sorted(r["finished"])
                for e in grid:
                    while i < len(finished) and finished[i][0] <= e:
                        best = min(best, finished[i][1])
                        i += 1
                    curve.append(best)
                curves.append(curve)
            median = np.median(np.array(curves), axis=0)
            ax.plot(grid, np.where(np.isfinite(median), median, np.nan), label=optimizer,
                    linewidth=2.2 if optimizer.startswith("refiner") else 1.2)
        ax.set_title(name)
        ax.set_xlabel("epochs spent")
        ax.set_ylabel("best validation loss (median over seeds)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
