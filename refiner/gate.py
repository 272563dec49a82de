"""The review gate: a run that waits for a person between rounds (``review = "each-round"``).

After writing round k's decisions (k before the last round) the run sets its status to
``awaiting_review`` and waits until ``rounds/<k>/approval.json`` appears. A person writes it with
the review app's "Approve and continue" button or ``refiner approve RUN_DIR [--round K]``, after
saving any overrides; with ``review_timeout`` the run writes it itself (``by: "timeout"``) and goes
on with refiner's proposals (and any overrides already saved). Round k+1 is then built from the
decisions with the overrides applied, exactly as without a gate.

Who writes what follows :mod:`refiner.lock`'s rule: ``approval.json`` may be written by anyone, under
the short overrides lock, and only once; ``run.json`` and ``events.jsonl`` only by the writer-lock
holder. So the waiting run records ``review_approved`` when it sees the file; an approval given
while no run is going (the run was killed while waiting) takes the writer lock for that moment and
records it itself. A resumed run whose round k has decisions but no approval waits again.

The last round has no gate: nothing runs after it, and its decisions can be edited after the run
finished (the export applies them).
"""

from __future__ import annotations

import getpass
import logging
import math
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from refiner.errors import RefinerError
from refiner.lock import RunLock, RunLockedError, overrides_lock
from refiner.jsonio import now_iso, read_json, write_json
from refiner.overrides import read_overrides
from refiner.store import RunStore

__all__ = ["ReviewGate", "REVIEW_MODES", "APPROVAL_FILE", "read_approval", "pending_round", "approve",
           "wait_for_approval", "approval_line"]

log = logging.getLogger(__name__)

REVIEW_MODES = ("off", "each-round")
APPROVAL_FILE = "approval.json"
POLL_S = 0.5  # how often a waiting run looks for the approval (a file test: cheap)


@dataclass(frozen=True)
class ReviewGate:
    """``mode`` is recorded in run.json's settings; ``timeout_s`` is how long this process waits."""

    mode: str = "each-round"
    timeout_s: float | None = None

    @classmethod
    def coerce(cls, review: "ReviewGate | str | bool | None", timeout_s: float | None = None) -> "ReviewGate | None":
        """``None``/``False``/``"off"``: no gate; ``True``/``"each-round"``: a gate. Bad values raise ValueError."""
        if isinstance(review, ReviewGate):
            return review
        if timeout_s is not None and (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float))
                                      or not math.isfinite(timeout_s) or timeout_s <= 0):
            raise ValueError(f"`review_timeout` must be a positive number of seconds or None, got {timeout_s!r}")
        if review is None or review is False or review == "off":
            if timeout_s is not None:
                raise ValueError("`review_timeout` needs `review` = \"each-round\"")
            return None
        if review is True:
            review = "each-round"
        if review not in REVIEW_MODES:
            raise ValueError(f"`review` must be one of {', '.join(map(repr, REVIEW_MODES))}, got {review!r}")
        return cls(str(review), None if timeout_s is None else float(timeout_s))


def _path(store: RunStore, k: int):
    return store.round_dir(k) / APPROVAL_FILE


def read_approval(store: RunStore, k: int) -> dict[str, Any] | None:
    path = _path(store, k)
    return read_json(path, "approval") if path.exists() else None


def _gated(store: RunStore, run: dict[str, Any]) -> bool:
    return run["settings"].get("review", "off") != "off"


def pending_round(store: RunStore) -> int | None:
    """The round whose decisions the run waits (or, resumed, will wait) to have approved; ``None`` if none."""
    run = store.read_run()
    if not _gated(store, run):
        return None
    last = run["settings"]["rounds"] - 1
    for k in reversed(store.rounds()):
        if k < last and store.read_decisions(k) is not None and not store.has_space(k + 1) \
                and read_approval(store, k) is None:
            return k
    return None


def _refusal(store: RunStore, run: dict[str, Any], k: int | None) -> str | None:
    """Why round ``k`` (or the pending one) cannot be approved now; ``None`` if it can."""
    root, n = store.root, run["settings"]["rounds"]
    if not _gated(store, run):
        return f"{root}: the run does not wait for review (it was started without review = \"each-round\")"
    if k is None:
        if pending_round(store) is None:
            return f"{root}: the run is not waiting for review (status {run['state']['status']})"
        return None
    if not 0 <= k < n:
        return f"--round {k}: the run has rounds 0 to {n - 1}"
    approval = read_approval(store, k)
    if approval is not None:
        return f"--round {k}: round {k} was already approved ({approval['by']}, {approval['approved_at']})"
    if k == n - 1:
        return (f"--round {k}: the last round has no gate (nothing runs after it); its decisions can be edited "
                f"in the app and the export applies them")
    if store.has_space(k + 1):
        return f"--round {k}: round {k + 1} has already started"
    if store.read_decisions(k) is None:
        return f"--round {k}: round {k} has no decisions yet, so there is nothing to approve"
    return None


def _overridden(store: RunStore, k: int) -> list[str]:
    overrides = read_overrides(store, k)
    return [o["name"] for o in (overrides or {}).get("overrides", [])]


def _document(store: RunStore, k: int, by: str, note: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"format_version": 1, "round": k, "by": by, "approved_at": now_iso()}
    if by != "timeout":
        try:
            doc["user"] = getpass.getuser()[:200]
        except (KeyError, OSError):  # no user name for this uid (a container)
            doc["user"] = str(os.getuid())
    doc["host"] = socket.gethostname()[:300]
    doc["overrides"] = _overridden(store, k)
    if note:
        doc["note"] = note[:2000]
    return doc


def approve(store: RunStore, k: int | None = None, *, by: str = "cli", note: str = "") -> dict[str, Any]:
    """Approve round ``k`` (default: the one the run waits for); returns the approval document.

    Raises:
        RefinerError: one line saying why nothing was approved (not a waiting run, no such round, ...).
    """
    writer = RunLock(store.root, command=f"refiner approve ({by})")
    try:
        writer.acquire(wait_s=0)  # no run is going: this approval is the writer for a moment
    except RunLockedError:
        pass  # the waiting run records the approval when it sees it
    try:
        with overrides_lock(store.root):
            run = store.read_run()
            problem = _refusal(store, run, k)
            if problem:
                raise RefinerError(problem)
            if k is None:
                k = pending_round(store)
                assert k is not None
            document = _document(store, k, by, note)
            write_json(_path(store, k), document, "approval")
            if writer.held:  # the run is not going: record it now, and say how to carry on
                _record(store, k, document)
                store.update_state(status="interrupted", message=(
                    f"round {k} approved; the run is not running - resume it to start round {k + 1}"))
        return document
    finally:
        writer.release()


def _record(store: RunStore, k: int, document: dict[str, Any]) -> None:
    store.event("review_approved", round=k, **{key: v for key, v in document.items()
                                                if key in ("by", "user", "host", "overrides", "note")})


def wait_for_approval(store: RunStore, k: int, gate: ReviewGate, poll_s: float = POLL_S) -> dict[str, Any] | None:
    """Block until round ``k`` is approved (by a person, or by the timeout); called by the run's writer."""
    if store.has_space(k + 1):
        return None  # resumed past this gate
    approval = read_approval(store, k)
    if approval is not None:
        if not any(e.get("event") == "review_approved" and e.get("round") == k for e in store.read_events()):
            _record(store, k, approval)  # approved just before a crash: the log still says so
        return approval
    timeout = f", or goes on with refiner's proposals after {gate.timeout_s:g} s" if gate.timeout_s else ""
    store.update_state(status="awaiting_review", current_round=k,
                       message=f"round {k}'s decisions await review: approve in the app or with "
                               f"`refiner approve {store.root}`{timeout}")
    store.event("review_requested", round=k, timeout_s=gate.timeout_s)
    log.info("round %d: waiting for review - approve in the app or run `refiner approve %s`%s",
             k, store.root, timeout)
    deadline = None if gate.timeout_s is None else time.monotonic() + gate.timeout_s
    while True:
        approval = read_approval(store, k)
        if approval is None and deadline is not None and time.monotonic() >= deadline:
            with overrides_lock(store.root):
                approval = read_approval(store, k)  # a person may have approved this very moment
                if approval is None:
                    approval = _document(store, k, "timeout", "")
                    write_json(_path(store, k), approval, "approval")
        if approval is not None:
            break
        time.sleep(poll_s)
    _record(store, k, approval)
    store.update_state(status="running", message=None)
    log.info("round %d approved (%s%s)", k, approval["by"], f", by {approval['user']}" if approval.get("user") else "")
    return approval


def approval_line(store: RunStore, k: int) -> str | None:
    """One line for ``refiner show``: who approved round ``k``, or that it waits."""
    approval = read_approval(store, k)
    if approval is None:
        return None
    who = {"app": "in the review app", "cli": "with refiner approve", "timeout": "by the review timeout"}[approval["by"]]
    user = f" by {approval['user']}" if approval.get("user") else ""
    changed = f", overrides: {', '.join(approval['overrides'])}" if approval.get("overrides") else ""
    return f"approved {who}{user} at {approval['approved_at']}{changed}"
