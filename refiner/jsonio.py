"""JSON documents on disk: atomic writes, schema checks on write and read, one-line errors.

Every JSON file refiner writes goes through here (DESIGN.md §3): validated against its schema,
written atomically (temporary file, fsync, ``os.replace``) and with ``allow_nan=False``, so a
reader sees the old file or the whole new one. A file that cannot be read names itself, the rule
it breaks and, for the run folder's files, how to repair it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from refiner import schemas
from refiner.errors import DiskWriteError, RunFolderError
from refiner.failpoints import checkpoint, disk_fault

__all__ = ["atomic_write_text", "damaged", "dumps", "now_iso", "parse_limit_reason", "read_json", "write_json"]


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the umask (read once: reading it means setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_NEW_FILE_MODE = _new_file_mode()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` so that readers see either the old file or the whole new one.

    The file gets the mode it had, or a new file's (as the run's ``.jsonl`` files, opened for
    appending, get theirs): ``mkstemp`` alone would leave it readable by its owner only.

    Raises:
        DiskWriteError: the file could not be written (a full disk, a read-only folder); the old
            file, if any, is unchanged.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = _NEW_FILE_MODE
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                disk_fault(path)
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            checkpoint("before_replace")
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass  # gone already, or a read-only folder; a resume removes it
            raise
    except OSError as exc:
        raise DiskWriteError(str(path), exc) from exc


def dumps(document: Any, indent: int | None = 2) -> str:
    return json.dumps(document, indent=indent, allow_nan=False, sort_keys=False)


def write_json(path: Path, document: Any, schema: str) -> None:
    """Validate ``document`` against ``schema`` and write it atomically."""
    schemas.validate(document, schema, source=str(path))
    atomic_write_text(path, dumps(document) + "\n")


# How to repair each damaged file, appended to the error so a person knows what is safe to do.
_REPAIR = {
    "run.json": "restore it from a backup, or start afresh with --overwrite",
    "surrogate.json": "delete it and run again: refiner recomputes it from the trials",
    "decisions.json": "delete it and run again: refiner recomputes it from the trials (overrides are kept apart)",
    "space.json": "delete it and run again: it is rebuilt from the config or the previous round's decisions",
    "refined_space.json": "delete it and run again: it is rebuilt from the last round's decisions",
    "overrides.json": "fix it in the review app or delete it",
    "trials.jsonl": "fix or delete the damaged line (that trial then runs again)",
    "events.jsonl": "fix or delete the damaged line (the log is informational)",
}


def damaged(path: Path, reason: str) -> RunFolderError:
    hint = _REPAIR.get(path.name)
    return RunFolderError(f"{path}: {reason}" + (f" - to repair, {hint}" if hint else ""))


def read_json(path: Path, schema: str) -> Any:
    """Read and validate; a missing, unparsable or invalid file raises :class:`RunFolderError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise damaged(path, "missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise damaged(path, f"cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise damaged(path, f"line {exc.lineno} column {exc.colno}: not valid JSON ({exc.msg})") from None
    except (ValueError, RecursionError) as exc:  # an integer of over 4300 digits, or absurd nesting
        raise damaged(path, f"not valid JSON ({parse_limit_reason(exc)})") from None
    found = schemas.problems(document, schema)
    if found:
        raise damaged(path, "; ".join(found))
    return document


def parse_limit_reason(exc: BaseException) -> str:
    """Why a parser gave up without a position: Python refuses integers of over 4300 digits with a
    ValueError and absurd nesting with a RecursionError; say which."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return "a number has too many digits" if "digits" in str(exc) else str(exc).splitlines()[0]
