"""Is anyone still writing a run folder? (a run whose status says "running" may have been killed)

``run.json`` says what a run was doing when it last wrote; a SIGKILL, a power cut or a lost
machine leaves it at ``running`` (or ``awaiting_review``) for ever. The writer lock
(:mod:`refiner.lock`) records the holder's host and pid and is refreshed by a heartbeat, so:

* no lock marker: nobody holds the folder (the writer exited without recording a stop, or was
  killed and its marker removed);
* a marker from this host: the holder lives if its pid does;
* a marker from another host: the holder lives if its heartbeat touched the marker within
  :data:`refiner.lock.LEASE_S` seconds.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from refiner.lock import LEASE_S, Holder, holder
from refiner.store import WRITER_LOCK

__all__ = ["Liveness", "writer_liveness", "resume_command", "ACTIVE_STATUSES"]

ACTIVE_STATUSES = ("running", "awaiting_review")
"""Statuses that claim a live writer; any other status is a stop the run recorded itself."""


@dataclass(frozen=True)
class Liveness:
    alive: bool
    holder: Holder | None
    reason: str  # one line, for a person


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def writer_liveness(root: str | os.PathLike[str]) -> Liveness:
    """Whether a live process holds ``root``'s writer lock, and who."""
    root = Path(root)
    who = holder(root)
    if who is None:
        return Liveness(False, None, "no refiner process holds the run folder")
    if who.here:
        if _pid_alive(who.pid):
            return Liveness(True, who, f"written by pid {who.pid} on this host")
        return Liveness(False, who, f"its writer (pid {who.pid} on host {who.host}) is gone")
    try:
        age = time.time() - (root / WRITER_LOCK).stat().st_mtime
    except OSError:
        return Liveness(False, who, "no refiner process holds the run folder")
    if age <= LEASE_S:
        return Liveness(True, who, f"written by pid {who.pid} on host {who.host} (heartbeat {age:.0f} s ago)")
    return Liveness(False, who, f"its writer (pid {who.pid} on host {who.host}) has been silent for {age:.0f} s")


def resume_command(settings: dict, run_dir: str | os.PathLike[str]) -> str:
    """The command that resumes a run: the CLI's if it came from a config, else the Python call."""
    config = settings.get("config")
    if config:
        return f"refiner run {config} --run-dir {run_dir}"
    return "call search() on the same Refiner (same directory and project_name) again"


def stopped_note(root: str | os.PathLike[str], run: dict) -> str | None:
    """For a run whose status claims a live writer that is gone: one line saying so and how to resume."""
    if run["state"]["status"] not in ACTIVE_STATUSES:
        return None
    live = writer_liveness(root)
    if live.alive:
        return None
    return f"stopped ({live.reason}); resume with `{resume_command(run['settings'], root)}`"
