"""The run folder (DESIGN.md §3): the single source of truth for the loop, resume, CLI and app.

::

    <run>/run.json                  settings (fixed at start) and state
    <run>/events.jsonl              append-only log of what happened
    <run>/rounds/<k>/space.json     the space searched in round k
    <run>/rounds/<k>/trials.jsonl   one line per finished trial of round k
    <run>/rounds/<k>/surrogate.json the regressor chosen, CV scores, importances, partial dependence
    <run>/rounds/<k>/decisions.json one decision per hyperparameter -> the next space
    <run>/rounds/<k>/audit.json     every earlier cut judged again with all trials so far (round 1 on)
    <run>/rounds/<k>/kt/            KerasTuner's own project folder for the round
    <run>/rounds/<k>/kt-reserve/    ... and for its exploration reserve (round 1 on)
    <run>/refined_space.json        the result

Every JSON document is checked against its schema on write and on read, written atomically
(temporary file, fsync, ``os.replace``) and with ``allow_nan=False``. JSON-lines files are
appended one fsync'ed line at a time; a torn last line (a crash mid-write) is ignored on read
and cut off before the next append, so a reader never sees half a record.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Sequence

from refiner import schemas
from refiner.errors import DiskWriteError, ValidationError
from refiner.failpoints import armed, checkpoint, disk_fault
from refiner.jsonio import atomic_write_text, damaged, dumps, now_iso, parse_limit_reason, read_json, write_json
from refiner.space import SearchSpace
from refiner.trial import Trial

__all__ = ["RunStore", "WRITER_LOCK", "WRITER_INFO", "OVERRIDES_LOCK", "is_lock_file"]

log = logging.getLogger(__name__)

# The locks of refiner.lock live in the run folder but are no part of the record: a check does
# not report them and --overwrite keeps them (the process that overwrites holds the writer lock).
WRITER_LOCK = ".writer.lock"
WRITER_INFO = ".writer.json"
OVERRIDES_LOCK = ".overrides.lock"


def is_lock_file(name: str) -> bool:
    """A lock marker, its holder note, or filelock's short-lived takeover files (``<marker>.break.…``)."""
    return name == WRITER_INFO or name.startswith((WRITER_LOCK, OVERRIDES_LOCK))


class RunStore:
    """Reads and writes one run folder. Holds no state of its own beyond the path."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    # -- paths ----------------------------------------------------------------------------------
    @property
    def run_file(self) -> Path:
        return self.root / "run.json"

    @property
    def events_file(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def refined_space_file(self) -> Path:
        return self.root / "refined_space.json"

    @property
    def imported_file(self) -> Path:
        """Trials imported from an earlier run (a warm start), each with its ``source``."""
        return self.root / "imported.jsonl"

    def round_dir(self, k: int) -> Path:
        return self.root / "rounds" / str(k)

    def kt_dir(self, k: int, reserve: bool = False) -> Path:
        """KerasTuner's folder for round ``k`` (``kt-reserve`` for its exploration reserve)."""
        return self.round_dir(k) / ("kt-reserve" if reserve else "kt")

    def exists(self) -> bool:
        return self.run_file.exists()

    def rounds(self) -> list[int]:
        """Round numbers that have a folder, in order."""
        base = self.root / "rounds"
        if not base.is_dir():
            return []
        return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())

    def clear(self) -> None:
        """Delete everything in the folder but the lock files (``--overwrite``, under the writer lock)."""
        for path in self.root.iterdir():
            if is_lock_file(path.name):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()

    def remove_stale_temporaries(self) -> int:
        """Delete temporary files a crash left between writing and renaming (never part of the record)."""
        removed = 0
        for path in self.root.rglob(".*.tmp"):
            if any(part.startswith("kt") for part in path.relative_to(self.root).parts[:-1]):
                continue  # KerasTuner's folder is not ours to tidy
            path.unlink(missing_ok=True)
            removed += 1
        if removed:
            log.info("removed %d temporary files left by an interrupted write in %s", removed, self.root)
        return removed

    # -- run.json -------------------------------------------------------------------------------
    def read_run(self) -> dict[str, Any]:
        return read_json(self.run_file, "run")

    def write_run(self, run: dict[str, Any]) -> None:
        run = dict(run, updated_at=now_iso())
        write_json(self.run_file, run, "run")

    def update_state(self, **changes: Any) -> dict[str, Any]:
        run = self.read_run()
        run["state"] = {**run["state"], **changes}
        self.write_run(run)
        return run

    # -- events ---------------------------------------------------------------------------------
    def event(self, name: str, /, **data: Any) -> None:
        self._append_line(self.events_file, {"time": now_iso(), "event": name, **data})

    def read_events(self) -> list[dict[str, Any]]:
        events = []
        for n, line in enumerate(self._complete_lines(self.events_file), start=1):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise damaged(self.events_file, f"line {n}: not valid JSON ({exc.msg})") from None
            except (ValueError, RecursionError) as exc:
                raise damaged(self.events_file, f"line {n}: not valid JSON ({parse_limit_reason(exc)})") from None
        return events

    # -- rounds ---------------------------------------------------------------------------------
    def write_space(self, k: int, space: SearchSpace) -> None:
        write_json(self.round_dir(k) / "space.json", space.to_dict(), "search_space")

    def read_space(self, k: int) -> SearchSpace:
        path = self.round_dir(k) / "space.json"
        return _space_from(read_json(path, "search_space"), path)

    def has_space(self, k: int) -> bool:
        return (self.round_dir(k) / "space.json").exists()

    def append_trial(self, trial: Trial) -> None:
        record = trial.to_dict()
        path = self.round_dir(trial.round) / "trials.jsonl"
        schemas.validate(record, "trial", source=str(path))
        self._append_line(path, record)

    def write_imported(self, trials: Sequence[Trial]) -> None:
        """Record a warm start's trials at once (atomically): a run holds all of them or none."""
        lines = []
        for trial in trials:
            record = trial.to_dict()
            schemas.validate(record, "trial", source=str(self.imported_file))
            lines.append(dumps(record, indent=None) + "\n")
        atomic_write_text(self.imported_file, "".join(lines))

    def read_imported(self) -> list[Trial]:
        """The trials a warm start imported (none for a run without one, or made before warm starts)."""
        return self._read_trial_lines(self.imported_file)

    def read_trials(self, k: int) -> list[Trial]:
        return self._read_trial_lines(self.round_dir(k) / "trials.jsonl")

    def _read_trial_lines(self, path: Path) -> list[Trial]:
        trials = []
        for n, line in enumerate(self._complete_lines(path), start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise damaged(path, f"line {n}: not valid JSON ({exc.msg})") from None
            except (ValueError, RecursionError) as exc:
                raise damaged(path, f"line {n}: not valid JSON ({parse_limit_reason(exc)})") from None
            found = schemas.problems(record, "trial")
            if found:
                raise damaged(path, f"line {n}: " + "; ".join(found))
            trials.append(Trial.from_dict(record))
        return trials

    def all_trials(self) -> list[Trial]:
        return [t for k in self.rounds() for t in self.read_trials(k)]

    def write_surrogate(self, k: int, report: dict[str, Any]) -> None:
        write_json(self.round_dir(k) / "surrogate.json", report, "surrogate")

    def read_surrogate(self, k: int) -> dict[str, Any] | None:
        path = self.round_dir(k) / "surrogate.json"
        return read_json(path, "surrogate") if path.exists() else None

    def write_decisions(self, k: int, document: dict[str, Any]) -> None:
        write_json(self.round_dir(k) / "decisions.json", document, "decisions")

    def read_decisions(self, k: int) -> dict[str, Any] | None:
        path = self.round_dir(k) / "decisions.json"
        return read_json(path, "decisions") if path.exists() else None

    def write_audit(self, k: int, document: dict[str, Any]) -> None:
        write_json(self.round_dir(k) / "audit.json", document, "audit")

    def read_audit(self, k: int) -> dict[str, Any] | None:
        path = self.round_dir(k) / "audit.json"
        return read_json(path, "audit") if path.exists() else None

    def write_refined_space(self, space: SearchSpace) -> None:
        write_json(self.refined_space_file, space.to_dict(), "search_space")

    def read_refined_space(self) -> SearchSpace:
        return _space_from(read_json(self.refined_space_file, "search_space"), self.refined_space_file)

    # -- JSON lines -----------------------------------------------------------------------------
    def _complete_lines(self, path: Path) -> Iterable[str]:
        """Lines that end in a newline; a torn last line from a crash is left out."""
        try:
            data = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        lines = data.split("\n")
        # The piece after the last newline is either "" or a torn write.
        return [line for line in lines[:-1] if line.strip()]

    def _append_line(self, path: Path, record: dict[str, Any]) -> None:
        data = (dumps(record, indent=None) + "\n").encode("utf-8")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a+b") as fh:
                _drop_torn_tail(fh, path)
                if armed("torn_append"):
                    # A crash test asked to die here: leave half a line behind, as a power cut would.
                    fh.write(data[: len(data) // 2])
                    fh.flush()
                checkpoint("torn_append")
                try:
                    disk_fault(path)
                except OSError as exc:
                    if exc.errno == errno.ENOSPC:  # a disk that fills up mid-line keeps part of it
                        fh.write(data[: len(data) // 2])
                        fh.flush()
                    raise
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            # A torn line left behind is ignored on read and cut off before the next append.
            raise DiskWriteError(str(path), exc) from exc


def _drop_torn_tail(fh: Any, path: Path) -> None:
    """Cut a last line that has no newline (left by a crash mid-append) before appending."""
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    if size == 0:
        return
    fh.seek(size - 1)
    if fh.read(1) == b"\n":
        return
    fh.seek(0)
    data = fh.read()
    keep = data.rfind(b"\n") + 1
    log.warning("%s: dropping a torn last line (%d bytes) left by an interrupted write", path, size - keep)
    fh.truncate(keep)
    fh.seek(0, os.SEEK_END)


def _space_from(document: dict[str, Any], path: Path) -> SearchSpace:
    try:
        return SearchSpace.from_dict(document)
    except ValidationError as exc:
        raise damaged(path, "; ".join(exc.problems)) from None
