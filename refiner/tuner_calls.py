"""KerasTuner's ``Tuner`` calls on a :class:`~refiner.loop.Refiner`, answered from the run folder.

A KerasTuner script keeps working when only its constructor changes::

    tuner = refiner.Refiner(build_model, objective="val_accuracy", max_trials=30,
                            directory="my_dir", project_name="mnist_cnn")
    tuner.search(x, y, epochs=10, validation_split=0.2)
    tuner.results_summary()
    model = tuner.get_best_models()[0]
    trials = tuner.oracle.get_best_trials(5)       # keras_tuner Trial objects

Results are KerasTuner's own objects (``keras_tuner.engine.trial.Trial``, ``HyperParameters``),
built from ``trials.jsonl``, so everything a script reads from them (``trial.score``,
``trial.hyperparameters.values``, ``trial.metrics.get_best_value(name)``, ``trial.summary()``)
behaves as it does on a stock tuner. ``results_summary`` and ``search_space_summary`` print, as
KerasTuner's do: they are display calls a user makes, not library progress (that is logged).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from refiner.engines.evaluation import build_model, derive_seed
from refiner.errors import RefinerError
from refiner.trial import Trial

if TYPE_CHECKING:  # keras_tuner imports TensorFlow: only when a call needs it
    import keras_tuner

__all__ = ["KerasTunerCalls", "FunctionHyperModel", "OracleView"]

CHECKPOINT = "checkpoint.weights.h5"  # KerasTuner's name for a trial's best-epoch weights (Keras 3)


class FunctionHyperModel:
    """A ``build_model(hp)`` function with KerasTuner's ``HyperModel.build(hp)``."""

    def __init__(self, build: Callable[[Any], Any]):
        self._build = build

    def build(self, hp: Any) -> Any:
        return self._build(hp)

    __call__ = build

    def __repr__(self) -> str:
        return f"FunctionHyperModel({getattr(self._build, '__qualname__', self._build)!r})"


class OracleView:
    """``tuner.oracle`` as far as scripts read it: best trials, the objective, the space."""

    def __init__(self, owner: "KerasTunerCalls"):
        self._owner = owner

    @property
    def objective(self) -> "keras_tuner.Objective":
        import keras_tuner as kt

        return kt.Objective(self._owner.objective.name, self._owner.objective.direction)

    def get_best_trials(self, num_trials: int = 1) -> list[Any]:
        return self._owner.get_best_trials(num_trials)

    def get_space(self) -> "keras_tuner.HyperParameters":
        return self._owner._searched_space().to_keras_tuner()

    @property
    def trials(self) -> dict[str, Any]:
        return {t.trial_id: self._owner._kt_trial(t) for t in self._owner._trials}

    def get_trial(self, trial_id: str) -> Any:
        for t in self._owner._trials:
            if t.trial_id == trial_id:
                return self._owner._kt_trial(t)
        raise KeyError(f"no trial {trial_id!r} in this run")


class KerasTunerCalls:
    """Mixin for :class:`~refiner.loop.Refiner`; reads ``_trials``, ``objective``, ``store``,
    ``_hypermodel``, ``seed`` and ``_fit`` (the last ``search()``'s data) from it."""

    _trials: list[Trial]
    _hypermodel: Any
    _fit: tuple[tuple, dict[str, Any]] | None

    # -- KerasTuner's calls --------------------------------------------------------------------
    @property
    def oracle(self) -> OracleView:
        return OracleView(self)

    def get_best_trials(self, num_trials: int = 1) -> list[Any]:
        """The best trials as ``keras_tuner`` ``Trial`` objects, best first; failed trials fill up
        the list when fewer completed (as ``oracle.get_best_trials`` does)."""
        return [self._kt_trial(t) for t in self._ranked()[:num_trials]]

    def get_best_models(self, num_models: int = 1) -> list[Any]:
        """The best trials' models, best first: rebuilt with ``build(hp)`` and given the weights
        KerasTuner saved for the trial's best epoch; where none were kept (the Optuna engine),
        rebuilt and trained again on the last ``search()``'s data, seeded."""
        if self._hypermodel is None:
            raise RefinerError("get_best_models: a function run trains no models; use get_best_hyperparameters()")
        best = [t for t in self._ranked() if t.ok][:num_models]
        return [self._model(t) for t in best]

    def results_summary(self, num_trials: int = 10) -> None:
        """Print the best ``num_trials`` trials, in KerasTuner's layout."""
        print("Results summary")
        print(f"Results in {self.store.root}")  # type: ignore[attr-defined]
        print(f"Showing {num_trials} best trials")
        print(f'Objective(name="{self.objective.name}", direction="{self.objective.direction}")')  # type: ignore[attr-defined]
        for trial in self.get_best_trials(num_trials):
            print()
            trial.summary()

    def search_space_summary(self, extended: bool = False) -> None:
        """Print the space searched first, in KerasTuner's layout, then the refined space if any."""
        space = self._searched_space()
        hp = space.to_keras_tuner()
        print("Search space summary")
        print(f"Default search space size: {len(hp.space)}")
        for p in hp.space:
            config = p.get_config()
            name = config.pop("name")
            print(f"{name} ({p.__class__.__name__})")
            print(config)
        store = self.store  # type: ignore[attr-defined]
        if store.refined_space_file.exists():
            print(f"Refined space ({store.refined_space_file}):")
            for p in self.refined_space:  # type: ignore[attr-defined]
                print(f"{p.name}: {p.type_name} {p.describe()}")

    # -- helpers -------------------------------------------------------------------------------
    def _ranked(self) -> list[Trial]:
        ok = sorted((t for t in self._trials if t.ok), key=lambda t: t.score,  # type: ignore[arg-type, return-value]
                    reverse=self.objective.direction == "max")  # type: ignore[attr-defined]
        return ok + [t for t in self._trials if not t.ok]

    def _searched_space(self) -> Any:
        store = self.store  # type: ignore[attr-defined]
        return store.read_space(0) if store.has_space(0) else self._initial_space()  # type: ignore[attr-defined]

    def _hyperparameters(self, t: Trial) -> Any:
        store = self.store  # type: ignore[attr-defined]
        space = store.read_space(t.round) if store.has_space(t.round) else self._searched_space()
        hp = space.without_regions().to_keras_tuner()  # holds the trial values, no region choice
        hp.values = dict(t.hyperparameters)
        return hp

    def _kt_trial(self, t: Trial) -> Any:
        import keras_tuner as kt

        status = kt.engine.trial.TrialStatus
        trial = kt.engine.trial.Trial(self._hyperparameters(t), trial_id=t.trial_id,
                                      status=status.COMPLETED if t.ok else status.FAILED, message=t.message)
        objective = self.objective  # type: ignore[attr-defined]
        for name, value in t.metrics.items():
            trial.metrics.register(name, direction=objective.direction if name == objective.name else None)
            trial.metrics.update(name, value)
        trial.score = t.score
        return trial

    def _model(self, t: Trial) -> Any:
        hp = self._hyperparameters(t)
        checkpoint = self._checkpoint(t)
        if checkpoint is not None:
            model = build_model(self._hypermodel, hp)
            build_config = checkpoint.with_name("build_config.json")
            if not model.built and build_config.exists():
                model.build_from_config(json.loads(build_config.read_text()))
            model.load_weights(str(checkpoint))
            return model
        if self._fit is None:
            raise RefinerError(
                f"get_best_models: trial {t.trial_id} kept no weights, and there is no training data to train it "
                "again: call search() with the data first (on a finished run it trains nothing new)"
            )
        import keras

        fit_args, fit_kwargs = self._fit
        if self.seed is not None:  # type: ignore[attr-defined]
            keras.utils.set_random_seed(derive_seed(self.seed, t.trial_id, "best model"))  # type: ignore[attr-defined]
        model = build_model(self._hypermodel, hp)
        kwargs = {**fit_kwargs, "verbose": 0, "callbacks": copy.deepcopy(list(fit_kwargs.get("callbacks") or []))}
        fit = getattr(self._hypermodel, "fit", None)
        if callable(fit):
            fit(hp, model, *fit_args, **kwargs)
        else:
            model.fit(*fit_args, **kwargs)
        return model

    def _checkpoint(self, t: Trial) -> Path | None:
        """The weights KerasTuner kept for ``t``: in the round's ``kt/`` folder, or in a folder an
        interrupted round left (newest first: a re-run trial reuses its id only in a later folder)."""
        round_index, _, kt_id = t.trial_id.partition("-")
        kt_dir = self.store.kt_dir(t.round)  # type: ignore[attr-defined]
        interrupted = sorted(kt_dir.parent.glob(f"{kt_dir.name}.interrupted-*"),
                             key=lambda p: int(p.name.rsplit("-", 1)[1]) if p.name.rsplit("-", 1)[1].isdigit() else 0,
                             reverse=True)
        for folder in [kt_dir, *interrupted]:
            trial_dir = folder / f"trial_{kt_id}"
            checkpoint = trial_dir / CHECKPOINT
            if checkpoint.exists() and _same_values(trial_dir / "trial.json", t):
                return checkpoint
        return None


def _same_values(trial_json: Path, t: Trial) -> bool:
    """Whether KerasTuner's ``trial.json`` holds the trial's values (guards against a stale folder)."""
    try:
        values = json.loads(trial_json.read_text())["hyperparameters"]["values"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return all(values.get(k) == v for k, v in t.hyperparameters.items())
