"""One writer per run folder, and which writes may overlap.

The rule:

* **The record has one writer.** ``run.json``, ``events.jsonl`` and every round's space, trials,
  surrogate and decisions are written only by the process holding the *writer lock*
  (``<run>/.writer.lock``): ``refiner run``, ``Refiner.search()``, a resumed coordinator. It holds
  the lock from start to exit; a second writer is refused with :class:`RunLockedError` (exit code 2
  from the CLI) naming the holder and how to stop it.
* **A person's overrides may be saved while a run holds it.** Overrides of round k
  (``rounds/<k>/overrides.json``) are the review app's main use while a run goes on; the run reads
  them once, when it builds round k+1's space. The short *overrides lock* (``<run>/.overrides.lock``,
  held for milliseconds) orders the two: a save lands before round k+1's space is built and is
  applied, or comes after it and is refused ("round k+1 has already started"). The save appends its
  ``overrides_written`` event only when no run holds the writer lock (it then holds it itself for
  that moment), so ``events.jsonl`` never has two writers; a running run records ``overrides_applied``.
* **Readers take no lock**: ``show``, ``export``, ``validate`` and the app's pages read files that
  are replaced atomically.

Both locks are :class:`filelock.SoftFileLease` markers: a file created exclusively that records the
holder's host, pid and process start time, refreshed (its mtime) every ``LEASE_S / 3`` seconds by a
heartbeat thread and deleted on release. A holder on this host whose process is gone (SIGKILL, a
crash) is taken over at once, even if its pid was reused; a holder on another host (the folder on a
shared filesystem) is taken over once its marker has gone :data:`LEASE_S` seconds without a
heartbeat. Beside the writer lock, ``.writer.json`` says what command holds it and since when.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from filelock import SoftFileLease, Timeout

from refiner.errors import DiskWriteError, RunFolderError
from refiner.jsonio import atomic_write_text, now_iso
from refiner.store import OVERRIDES_LOCK, WRITER_INFO, WRITER_LOCK

__all__ = ["RunLock", "RunLockedError", "Holder", "holder", "overrides_lock", "LEASE_S"]

log = logging.getLogger(__name__)

LEASE_S = 30.0
"""Seconds a marker from another host must go unrefreshed before it counts as stale. Every
process that may write a run folder must agree on it (filelock refuses a mismatch)."""

WAIT_S = 3.0
"""How long a writer waits for the lock before refusing: long enough for the app's override save
(milliseconds) to finish, short enough that a second ``refiner run`` is answered at once."""


class RunLockedError(RunFolderError):
    """Another live process holds the run folder's writer lock."""

    def __init__(self, message: str, holder: "Holder | None"):
        super().__init__(message)
        self.holder = holder


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as its marker (and ``.writer.json``) record it."""

    pid: int
    host: str
    command: str | None = None
    since: str | None = None

    def describe(self) -> str:
        what = f"`{self.command}` " if self.command else ""
        since = f", since {self.since}" if self.since else ""
        return f"{what}(pid {self.pid} on host {self.host}{since})"

    @property
    def here(self) -> bool:
        return self.host == socket.gethostname()


def _marker_fields(path: Path) -> dict[str, str]:
    """The ``key=value`` lines of a filelock marker (host, pid, ...); empty if it is gone or unreadable."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def holder(root: str | os.PathLike[str]) -> Holder | None:
    """Who holds the writer lock of run folder ``root`` now, or ``None`` (a stale marker is
    reported too: only acquiring tells a live holder from a dead one)."""
    root = Path(root)
    fields = _marker_fields(root / WRITER_LOCK)
    if not fields.get("pid", "").isdigit():
        return None
    pid, host = int(fields["pid"]), fields.get("host", "?")
    command = since = None
    try:
        info = json.loads((root / WRITER_INFO).read_text(encoding="utf-8"))
        if info.get("pid") == pid:  # written by this holder, not left by an earlier one
            command, since = info.get("command"), info.get("since")
    except (OSError, ValueError, AttributeError):
        pass
    return Holder(pid=pid, host=_host(host), command=command, since=since)


def _host(recorded: str) -> str:
    # filelock adds "?pidns-<inode>" for a process in a container's pid namespace; people know the name.
    return recorded.split("?pidns-")[0]


def _lease(path: Path) -> SoftFileLease:
    return SoftFileLease(str(path), lease_duration=LEASE_S, thread_local=False)


def _acquire(lease: SoftFileLease, path: Path, wait_s: float) -> bool:
    """Take ``lease``; ``False`` if a live holder keeps it. A holder on another host whose marker
    has gone :data:`LEASE_S` without a heartbeat is waited out (filelock must see it unchanged
    for that long on its own clock) and taken over."""
    try:
        lease.acquire(timeout=wait_s, poll_interval=0.05)
        return True
    except Timeout:
        pass
    fields = _marker_fields(path)
    try:
        age = time.time() - path.stat().st_mtime
    except OSError:
        age = 0.0
    # A marker from a container's pid namespace counts as foreign too: its pid cannot be probed from here.
    foreign = fields.get("host", "") not in ("", socket.gethostname())
    if not (foreign and age > LEASE_S):
        return False
    log.warning("%s: held by pid %s on host %s, silent for %.0f s; taking it over after %.0f s unchanged",
                path, fields.get("pid"), fields.get("host"), age, LEASE_S)
    try:
        lease.acquire(timeout=LEASE_S * 1.5, poll_interval=0.2)
        return True
    except Timeout:
        return False


class RunLock:
    """The writer lock of one run folder (see the module's rule); a context manager.

    ``command`` is recorded for the refusal message a second writer gets.
    """

    def __init__(self, root: str | os.PathLike[str], command: str | None = None):
        self.root = Path(root)
        self.command = command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300]
        self._lease: SoftFileLease | None = None
        self._made_root = False

    @property
    def held(self) -> bool:
        return self._lease is not None

    def acquire(self, wait_s: float = WAIT_S) -> "RunLock":
        if self._lease is not None:
            return self
        if not self.root.exists():
            self._made_root = True  # a run refused before it wrote anything leaves no folder behind
        lease = _lease(self.root / WRITER_LOCK)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            taken = _acquire(lease, self.root / WRITER_LOCK, wait_s)
        except OSError as exc:  # a read-only or full filesystem
            raise DiskWriteError(str(self.root / WRITER_LOCK), exc) from exc
        if not taken:
            self._tidy_root()
            who = holder(self.root)
            raise RunLockedError(_refusal(self.root, who), who)
        self._lease = lease
        try:
            atomic_write_text(self.root / WRITER_INFO, json.dumps(
                {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command, "since": now_iso()}) + "\n")
        except BaseException:
            self.release()
            raise
        log.debug("%s: writer lock taken by pid %d", self.root, os.getpid())
        return self

    def release(self) -> None:
        lease, self._lease = self._lease, None
        if lease is None:
            return
        try:
            (self.root / WRITER_INFO).unlink(missing_ok=True)
        except OSError:
            pass  # a read-only folder: the next holder overwrites it, and it names a dead pid anyway
        try:
            lease.release()
        except OSError as exc:  # the folder went read-only: the marker stays, and names a dead process
            log.warning("%s: could not remove the lock (%s); the next run takes it over", self.root / WRITER_LOCK, exc)
        self._tidy_root()

    def _tidy_root(self) -> None:
        if self._made_root:
            try:
                self.root.rmdir()  # only if empty: nothing was recorded
            except OSError:
                pass
            else:
                self._made_root = False

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _refusal(root: Path, who: Holder | None) -> str:
    if who is None:
        return (f"{root}: another refiner process is writing this run folder (it just released or is starting); "
                f"run the command again in a moment")
    stop = f"`kill {who.pid}`" + ("" if who.here else f" on host {who.host}")
    return (f"{root}: another refiner process is writing this run folder: {who.describe()}; "
            f"wait for it to finish, or stop it with {stop} (it stops cleanly and the run can be resumed), "
            f"then run again")


@contextmanager
def overrides_lock(root: str | os.PathLike[str], wait_s: float = 30.0) -> Iterator[None]:
    """Hold ``<root>/.overrides.lock`` while saving overrides or building the next round from them
    (held for milliseconds; see the module's rule)."""
    path = Path(root) / OVERRIDES_LOCK
    lease = _lease(path)
    if not _acquire(lease, path, wait_s):
        fields = _marker_fields(path)
        raise RunFolderError(f"{path}: held for over {wait_s:.0f} s by pid {fields.get('pid', '?')} on host "
                             f"{_host(fields.get('host', '?'))}; if that process is stuck, stop it and try again")
    try:
        yield
    finally:
        lease.release()
