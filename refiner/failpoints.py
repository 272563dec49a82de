"""Named crash points for the crash-and-resume tests (off unless an environment variable asks).

The loop and the store call :func:`checkpoint` at the moments where a crash is most dangerous:
between writing a temporary file and renaming it, halfway through appending a JSON line, after a
trial ran but before it was recorded, between the surrogate, the narrowing and their files.
With ``REFINER_FAILPOINT=N`` the process sends itself SIGKILL at the N-th checkpoint it reaches,
with ``REFINER_FAILPOINT=<name>`` at the first checkpoint of that name (each hit is listed in
``REFINER_FAILPOINT_LOG`` if set), so a test can kill a real ``refiner run``
at chosen moments. Without the variable a checkpoint is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

__all__ = ["checkpoint", "armed"]

_spec = os.environ.get("REFINER_FAILPOINT", "") or ""
_target = int(_spec) if _spec.isdigit() else 0  # die at the N-th checkpoint ...
_target_name = "" if _spec.isdigit() else _spec  # ... or at the first one of this name
_log = os.environ.get("REFINER_FAILPOINT_LOG")
_hits = 0


def _kills(name: str, hit: int) -> bool:
    return hit == _target if _target else bool(_target_name) and name == _target_name


def armed(name: str) -> bool:
    """Whether the next :func:`checkpoint` call is the one that kills (lets a caller tear a write first)."""
    return bool(_spec) and _kills(name, _hits + 1)


def checkpoint(name: str) -> None:
    global _hits
    if not _spec and not _log:
        return
    _hits += 1
    kill = bool(_spec) and _kills(name, _hits)
    if _log:
        with open(_log, "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()} {_hits} {name}{' KILL' if kill else ''}\n")
    if kill:
        os.kill(os.getpid(), signal.SIGKILL)
