"""``refiner validate FILE``: check a search-space JSON, a run config, an overrides file or a whole
run folder and list every problem.

The kind of file is detected: ``*.toml`` is a run config; a file named ``overrides.json`` or a
JSON document with ``overrides`` or ``round`` (and no ``parameters``) is a person's overrides,
checked against the decisions beside it when it lies in a run folder; a JSON document with
``parameters`` or ``format_version`` is a search space, one with run-config keys (``name``,
``objective``, ``function``, ...) is a run config written as JSON. Nothing is imported or run.
"""

from __future__ import annotations

import logging
from pathlib import Path

from refiner import schemas
from refiner.check import run_problems
from refiner.config import load_run_config, read_document
from refiner.errors import RunFolderError, ValidationError
from refiner.overrides import stored_override_problems
from refiner.space import SearchSpace
from refiner.store import RunStore

__all__ = ["validate_file", "validate_run_folder", "detect_kind"]

log = logging.getLogger(__name__)

_SPACE_KEYS = {"format_version", "parameters"}
_OVERRIDES_KEYS = {"overrides", "round"}
_CONFIG_KEYS = {"name", "directory", "function", "hypermodel", "space", "data", "objective", "search", "fit", "narrowing"}


def detect_kind(path: Path, document: object) -> str:
    """``"search_space"``, ``"run_config"``, ``"overrides"`` or ``"unknown"`` for a parsed document."""
    if path.suffix.lower() == ".toml":
        return "run_config"
    if path.name == "overrides.json":
        return "overrides"
    if isinstance(document, dict):
        keys = set(document)
        if keys & _OVERRIDES_KEYS and "parameters" not in keys:
            return "overrides"
        if keys & _SPACE_KEYS:
            return "search_space"
        if keys & _CONFIG_KEYS:
            return "run_config"
    return "unknown"


def validate_file(path: str | Path) -> list[str]:
    """Every problem of the file as one ``"<json path>: <rule>"`` line; empty when valid.

    A file that cannot be read or parsed gives one line (with the line and column of a syntax
    error). The file's own name is not repeated in the lines; the caller prints it.
    """
    path = Path(path)
    try:
        document = read_document(path)
    except ValidationError as exc:
        return list(exc.problems)
    kind = detect_kind(path, document)
    log.debug("validating %s as %s", path, kind)
    try:
        if kind == "search_space":
            SearchSpace.from_dict(document)
        elif kind == "run_config":
            load_run_config(path)
        elif kind == "overrides":
            return _overrides_problems(path, document)
        else:
            return ["$: neither a search space (it needs `format_version` and `parameters`) nor a run "
                    "config (it needs `name`, `objective` and `function` or `hypermodel`)"]
    except ValidationError as exc:
        return list(exc.problems)
    return []


def validate_run_folder(path: str | Path) -> list[str]:
    """Every problem of a run folder (:func:`refiner.check.run_problems`), one ``"<file>: <problem> - to repair,
    <how>"`` line each, including those a resume would only warn about; empty when sound."""
    store = RunStore(path)
    if not store.exists():
        return [f"{store.run_file}: missing - not a run folder (give a run folder, a space, a config or overrides)"]
    return [str(p) for p in run_problems(store)]


def _overrides_problems(path: Path, document: object) -> list[str]:
    """Schema problems; then, inside a run folder (``<run>/rounds/<k>/overrides.json``), whether
    the edits apply to round k's decisions, exactly as a resume checks them."""
    found = schemas.problems(document, "overrides")
    folder = path.resolve().parent
    if found or not folder.name.isdigit() or not (folder.parent.parent / "run.json").is_file():
        return found
    try:
        return stored_override_problems(RunStore(folder.parent.parent), int(folder.name), document)  # type: ignore[arg-type]
    except RunFolderError as exc:  # decisions.json itself is damaged
        return [f"$: cannot check against the round's decisions: {exc}"]
