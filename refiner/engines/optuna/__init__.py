"""The Optuna engine: each round an Optuna study, with workers on any machine that reaches its storage.

* :mod:`~refiner.engines.optuna.engine`: :class:`OptunaEngine`, a round as a study (warm start,
  no repeats, determinism, recovery of a dead coordinator's results);
* :mod:`~refiner.engines.optuna.shared_study`: the rules every process taking part in a round follows;
* :mod:`~refiner.engines.optuna.worker`: ``refiner worker``, a process that joins a run's rounds.
"""

from refiner.engines.optuna.engine import OptunaEngine, default_storage

__all__ = ["OptunaEngine", "default_storage"]
