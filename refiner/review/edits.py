"""A person's edits and the exported space: building overrides, checking an edited range, export downloads.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping


from refiner.errors import RunFolderError
from refiner.export import FORMATS, SUFFIXES, render
from refiner.overrides import refined_space
from refiner.space import Float, Int, Parameter
from refiner.store import RunStore
from refiner.text import fmt


__all__ = [
    "EXPORT_FORMATS", "build_override", "merge_overrides", "export_bytes", "safe_stem", "export_filename",
    "check_edit", "check_json_edit",
]


EXPORT_FORMATS = {"json": "JSON", "keras-tuner": "KerasTuner code", "optuna": "Optuna code"}


assert set(EXPORT_FORMATS) == set(FORMATS)


def build_override(name: str, action: str, after: Mapping[str, Any] | None = None, note: str = "") -> dict[str, Any]:
    """One override entry as :func:`refiner.overrides.write_overrides` takes it."""
    entry: dict[str, Any] = {"name": name, "action": action}
    if action == "edit":
        entry["after"] = dict(after or {})
    if note.strip():
        entry["note"] = note.strip()
    return entry


def merge_overrides(existing: Mapping[str, Any] | None, entry: Mapping[str, Any] | None,
                    name: str) -> list[dict[str, Any]]:
    """The round's overrides with ``name``'s replaced by ``entry`` (or removed when ``entry`` is None)."""
    kept = [dict(o) for o in (existing or {}).get("overrides", []) if o["name"] != name]
    if entry is not None:
        kept.append(dict(entry))
    return kept


def export_bytes(store: RunStore, fmt_name: str) -> bytes:
    """Exactly what ``refiner export RUN --format fmt_name`` prints, as UTF-8 bytes.

    Raises:
        RunFolderError: the run has not finished (no ``refined_space.json``).
        ValidationError: the format is unknown, or KerasTuner cannot express the space's conditions.
    """
    if not store.refined_space_file.exists():
        raise RunFolderError(f"{store.refined_space_file}: missing - the run has not finished, "
                             f"so there is no refined space to export yet")
    return render(refined_space(store), fmt_name).encode("utf-8")


def safe_stem(run_name: str) -> str:
    """A file-name stem from a run name (anything unusual becomes '_')."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_name).strip("._") or "run"


def export_filename(run_name: str, fmt_name: str) -> str:
    safe = safe_stem(run_name)
    kind = {"json": "space", "keras-tuner": "space_keras_tuner", "optuna": "space_optuna"}[fmt_name]
    return f"{safe}_{kind}{SUFFIXES[fmt_name]}"


def _number(text: str, integer: bool) -> float | int:
    value = float(text)  # ValueError for anything but a number
    if not math.isfinite(value):
        raise ValueError
    if integer:
        if not re.fullmatch(r"\s*[+-]?\d+\s*", text):
            raise ValueError
        return int(text)
    return value


def check_edit(declared: Parameter | None, base: Parameter, low_text: str, high_text: str,
               beyond: bool = False) -> tuple[dict[str, Any] | None, list[str]]:
    """An edited numeric range from the page's two text fields: the parameter document, or why not.

    Rules: numbers (whole numbers for an int), low below high (a zero-width range searches one
    value: fix it with the JSON editor instead), positive for a log scale, and inside the range
    the run declared unless ``beyond`` says widening past it is meant.
    """
    assert isinstance(base, (Float, Int))
    integer = isinstance(base, Int)
    kind = "a whole number (int parameter)" if integer else "a number"
    values: dict[str, float | int] = {}
    problems = []
    for field_name, text in (("low", low_text), ("high", high_text)):
        try:
            values[field_name] = _number(str(text).strip(), integer)
        except ValueError:
            problems.append(f"{base.name}: {field_name} must be {kind}, got {str(text).strip()!r}")
    if problems:
        return None, problems
    low, high = values["low"], values["high"]
    if low >= high:
        problems.append(f"{base.name}: low must be below high, got low={fmt(low)}, high={fmt(high)}"
                        + (" (a zero-width range; to fix one value, edit the parameter as JSON)" if low == high else ""))
    if base.log and low <= 0:
        problems.append(f"{base.name}: low must be above 0 on a log scale, got {fmt(low)}")
    if declared is not None and isinstance(declared, (Float, Int)) and not beyond and not problems \
            and (low < declared.low or high > declared.high):
        problems.append(f"{base.name}: [{fmt(low)}, {fmt(high)}] reaches outside the declared range "
                        f"[{fmt(declared.low)}, {fmt(declared.high)}]; tick 'go beyond the declared range' "
                        f"to widen it on purpose")
    if problems:
        return None, problems
    doc = base.to_dict()
    doc.update(low=low, high=high)
    return doc, []


def check_json_edit(declared: Parameter | None, doc: Any, beyond: bool = False) -> list[str]:
    """The same range rules for a parameter edited as JSON (its own schema is checked on save)."""
    if not isinstance(doc, dict) or doc.get("type") not in ("int", "float") or declared is None:
        return []
    low, high = doc.get("low"), doc.get("high")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        return []
    name = doc.get("name", declared.name)
    if doc["type"] == "int" and not all(float(v).is_integer() for v in (low, high)):
        return [f"{name}: low and high must be whole numbers (int parameter), got {low}, {high}"]
    if low == high:
        return [f"{name}: low equals high (a zero-width range); use type \"fixed\" to fix one value"]
    if isinstance(declared, (Float, Int)) and not beyond and (low < declared.low or high > declared.high):
        return [f"{name}: [{fmt(low)}, {fmt(high)}] reaches outside the declared range "
                f"[{fmt(declared.low)}, {fmt(declared.high)}]; tick 'go beyond the declared range' to widen it on purpose"]
    return []
