"""Named crash points for the crash-and-resume tests (off unless an environment variable asks).

The loop and the store call :func:`checkpoint` at the moments where a crash is most dangerous:
between writing a temporary file and renaming it, halfway through appending a JSON line, after a
trial ran but before it was recorded, between the surrogate, the narrowing and their files.
With ``REFINER_FAILPOINT=N`` the process sends itself SIGKILL at the N-th checkpoint it reaches,
with ``REFINER_FAILPOINT=<name>`` at the first checkpoint of that name (each hit is listed in
``REFINER_FAILPOINT_LOG`` if set), so a test can kill a real ``refiner run``
at chosen moments. Without the variable a checkpoint is one dictionary lookup.

A process that lives through many kill points (a ``refiner worker``, a coordinator that several
workers share a round with) is armed while it runs instead: with ``REFINER_FAILPOINT_FILE=PATH``
each checkpoint reads PATH, and when it holds that checkpoint's name the process renames PATH to
``PATH.<pid>`` (only one of the processes sharing PATH wins the rename) and sends itself SIGKILL.
The test writes the next name into PATH when it is ready for the next kill.

Disk trouble is simulated the same way at every write the store makes: with
``REFINER_DISK_FAULT=ENOSPC:N`` (or ``EROFS:N``, any errno name) the N-th write raises that
``OSError`` as a full disk or a read-only folder would (an append first writes half its line, as a
disk that fills up mid-write does); each write is listed in ``REFINER_DISK_FAULT_LOG`` if set.
:func:`arm_disk_fault` does the same from inside a process (tests).

``REFINER_PAUSE=<name>:<seconds>`` makes :func:`pause` of that name sleep, to widen a race window
(the budget claim of concurrent proposals); :func:`set_pause` does the same from inside a process.
"""

from __future__ import annotations

import errno as _errno
import os
import signal

__all__ = ["checkpoint", "armed", "disk_fault", "arm_disk_fault", "pause", "set_pause"]

_spec = os.environ.get("REFINER_FAILPOINT", "") or ""
_target = int(_spec) if _spec.isdigit() else 0  # die at the N-th checkpoint ...
_target_name = "" if _spec.isdigit() else _spec  # ... or at the first one of this name
_log = os.environ.get("REFINER_FAILPOINT_LOG")
_hits = 0
_arm_file = os.environ.get("REFINER_FAILPOINT_FILE")
_taken = ""  # a file-armed kill point that armed() already claimed for this process


def _kills(name: str, hit: int) -> bool:
    return hit == _target if _target else bool(_target_name) and name == _target_name


def _file_arms(name: str) -> bool:
    try:
        with open(_arm_file, encoding="utf-8") as fh:  # type: ignore[arg-type]
            return fh.read().strip() == name
    except OSError:
        return False


def _take_file_arm(name: str) -> bool:
    """Claim the arm file for this process if it names ``name``; the rename makes one process win."""
    if not _file_arms(name):
        return False
    try:
        os.rename(_arm_file, f"{_arm_file}.{os.getpid()}")  # type: ignore[arg-type]
        return True
    except OSError:
        return False  # another process sharing the file took it first


def armed(name: str) -> bool:
    """Whether the next :func:`checkpoint` call is the one that kills (lets a caller tear a write first)."""
    global _taken
    if bool(_spec) and _kills(name, _hits + 1):
        return True
    if _arm_file and _take_file_arm(name):
        _taken = name  # claimed now, so no other process sharing the file dies in this one's place
        return True
    return False


def checkpoint(name: str) -> None:
    global _hits
    if not _spec and not _log and not _arm_file:
        return
    _hits += 1
    kill = (bool(_spec) and _kills(name, _hits)) or (bool(_arm_file) and (_taken == name or _take_file_arm(name)))
    if _log:
        with open(_log, "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()} {_hits} {name}{' KILL' if kill else ''}\n")
    if kill:
        os.kill(os.getpid(), signal.SIGKILL)


def _parse_disk_fault(spec: str) -> tuple[int, int]:
    name, _, at = spec.partition(":")
    return getattr(_errno, name.strip().upper(), 0), int(at) if at.strip().isdigit() else 0


_fault_errno, _fault_at = _parse_disk_fault(os.environ.get("REFINER_DISK_FAULT", ""))
_fault_log = os.environ.get("REFINER_DISK_FAULT_LOG")
_writes = 0


def arm_disk_fault(error: int, at: int) -> None:
    """Make the ``at``-th write from now raise ``OSError(error)``; ``at=0`` disarms."""
    global _fault_errno, _fault_at, _writes
    _fault_errno, _fault_at, _writes = error, at, 0


def disk_fault(path: os.PathLike[str] | str) -> None:
    """Called by the store before each write of ``path``: raises the armed ``OSError`` at its write."""
    global _writes
    if not _fault_at and not _fault_log:
        return
    _writes += 1
    if _fault_log:
        with open(_fault_log, "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()} {_writes} {path}\n")
    if _fault_at and _writes == _fault_at:
        raise OSError(_fault_errno, os.strerror(_fault_errno), str(path))


_pause_name, _, _pause_s = os.environ.get("REFINER_PAUSE", "").partition(":")
_pauses = {_pause_name: float(_pause_s)} if _pause_name and _pause_s else {}


def set_pause(name: str, seconds: float) -> None:
    """Make :func:`pause` ``name`` sleep ``seconds`` (0 removes it)."""
    if seconds:
        _pauses[name] = seconds
    else:
        _pauses.pop(name, None)


def pause(name: str) -> None:
    if _pauses:
        import time

        time.sleep(_pauses.get(name, 0.0))
