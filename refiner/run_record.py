"""What ``run.json`` records about a run, and how a resume is held against it.

The settings a run was started with are recorded once; a resume compares the settings it is
given with them and refuses any difference, naming each one. Settings added to refiner after a
run was made are filled with their defaults first, so old runs resume as they would have started.
"""

from __future__ import annotations

import platform
from typing import Any, Mapping

from refiner import __version__
from refiner.errors import RefinerError
from refiner.narrowing import NarrowingConfig
from refiner.text import short
from refiner.trial import Trial

__all__ = ["package_versions", "describe_fit", "as_recorded_before_defaults", "changed_settings", "with_defaults",
           "best_record"]


def package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"refiner": __version__, "python": platform.python_version()}
    for dist in ("keras-tuner", "keras", "tensorflow", "optuna", "scikit-learn", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def describe_fit(fit_args: tuple, fit_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-able summary of the fit arguments; arrays by shape and dtype so a changed dataset is noticed."""

    def describe(value: Any) -> Any:
        if isinstance(value, (str, int, float, bool)) or value is None:
            return value
        if hasattr(value, "shape") and hasattr(value, "dtype"):
            return f"array{tuple(int(s) for s in value.shape)} {value.dtype}"
        if isinstance(value, (list, tuple)):
            return [describe(v) for v in value]
        if isinstance(value, Mapping):
            return {str(k): describe(v) for k, v in value.items()}
        return type(value).__name__

    out = {k: describe(v) for k, v in fit_kwargs.items() if k not in ("callbacks", "verbose")}
    if fit_args:
        out["args"] = [describe(v) for v in fit_args]
    return out


def as_recorded_before_defaults(old: Mapping[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` without parameter defaults when the run was recorded before spaces kept them, so a
    hypermodel that declares defaults can still resume its earlier runs."""
    def parameters(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
        return list(settings.get("initial_space", {}).get("parameters", []))

    if any("default" in p for p in parameters(old)) or not any("default" in p for p in parameters(new)):
        return new
    space = dict(new["initial_space"], parameters=[{k: v for k, v in p.items() if k != "default"}
                                                   for p in parameters(new)])
    return {**new, "initial_space": space}


def changed_settings(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    changed = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            before, after = short(old.get(key)), short(new.get(key))
            changed.append(f"{key}: was {before}, now {after}")
    return changed


def with_defaults(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Recorded settings with narrowing settings added since the run started at their defaults,
    so that a run made before a setting existed resumes as it would have started."""
    out = dict(settings)
    if isinstance(out.get("narrowing"), Mapping):
        try:
            out["narrowing"] = NarrowingConfig.from_dict(out["narrowing"]).to_dict()
        except RefinerError:
            pass  # reported as a changed setting below
    return out


def best_record(best: Trial | None) -> dict[str, Any] | None:
    if best is None:
        return None
    return {"trial_id": best.trial_id, "round": best.round, "score": best.score,
            "hyperparameters": dict(best.hyperparameters)}
