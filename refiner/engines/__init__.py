"""The libraries that run rounds, behind one interface (:class:`~refiner.engines.base.Engine`).

The registry maps an engine's name (``engine = "optuna"`` in a config, ``--engine``, ``run.json``)
to its class. Engines load lazily, so naming one does not import TensorFlow or Optuna; the config
check, the CLI and the loop all read the names from here.

Adding an engine: one module with an :class:`~refiner.engines.base.Engine` subclass, and one line
below (or :func:`register` from your own code). ``tests/test_engine_contract.py`` runs every
registered engine through the same contract.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["REGISTRY", "DEFAULT_ENGINE", "engine_class", "engine_names", "make_engine", "register"]

REGISTRY: dict[str, Any] = {
    "keras-tuner": "refiner.engines.keras_tuner:KerasTunerEngine",
    "optuna": "refiner.engines.optuna:OptunaEngine",
}
"""name -> ``"module:Class"`` (loaded on first use) or the class itself."""

DEFAULT_ENGINE = "keras-tuner"


def engine_names() -> list[str]:
    return list(REGISTRY)


def register(cls: Any) -> Any:
    """Add an engine class under its ``name`` (usable as a class decorator)."""
    REGISTRY[cls.name] = cls
    return cls


def engine_class(name: str) -> Any:
    """The class registered as ``name``; ``ValueError`` naming the choices otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"`engine` must be one of {', '.join(REGISTRY)}, got {name!r}")
    entry = REGISTRY[name]
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = REGISTRY[name] = getattr(importlib.import_module(module), attr)
    return entry


def make_engine(name: str, **options: Any) -> Any:
    """An engine by name, with its options (``storage=...``); options left at ``None`` are not passed,
    and an option the engine does not take is refused in one line."""
    cls = engine_class(name)
    given = {k: v for k, v in options.items() if v is not None}
    try:
        return cls(**given)
    except TypeError:
        import inspect

        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        wrong = sorted(set(given) - accepted)
        if not wrong:
            raise
        raise ValueError(f"`{wrong[0]}` is not an option of the {name} engine"
                         + (f" (it takes {', '.join(sorted(accepted))})" if accepted else " (it takes none)")) from None
