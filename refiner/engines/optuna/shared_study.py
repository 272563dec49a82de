"""How several processes share one round's Optuna study: the rules every participant follows.

The coordinator (``refiner run``) and any number of workers (``refiner worker``) take part in the
same round by asking the same study for trials. The storage is the only thing they share, so
every rule below is decided from what the storage holds, by each participant on its own:

* **Where to work.** A *control* study ``<project>-control`` holds one user attribute naming the
  round study that is open (or saying the run is between rounds, or finished). The round study
  holds what a worker needs to take part: the round's space, budget, objective and seeds.
* **The budget.** A trial may be evaluated only once it has *claimed* a slot: under a lock that
  every participant takes (a PostgreSQL or MySQL advisory lock named after the study, a file lock
  beside an SQLite file), it counts the slots held, trials that claimed one and are running or
  finished with a result, and claims one (``refiner_claimed``) only if fewer than ``budget`` are
  held; otherwise it is told as failed and marked ``refiner_surplus``. Counting and claiming
  under one lock means two concurrent proposals can never both take the last slot. A process
  that dies holding the lock releases it with its connection (or file). The coordinator still
  records only the first ``budget`` results, as a second guard.
* **The epoch budget** (``fidelity.total``). The coordinator writes the round's allowance into the
  round study's attributes when it opens the round (``epochs``: the run's cumulative share by the
  end of this round or part, the epochs the run had recorded before, one trial's most: see
  :class:`refiner.fidelity.EpochAllowance`). The claim applies it in the same look, under the same
  lock, as the trial budget: a trial may claim only while the epochs already recorded plus the
  epochs of the results stored in the study (:func:`recorded_epochs`) plus one trial's most for
  every claimed trial still running (:func:`running_count`) stay below that share; otherwise the
  trial is told as failed, marked ``refiner_surplus``, and the participant waits. Without an
  allowance nothing is read or counted for it.
* **No repeats.** A configuration already finished, or running with a claimed slot, is told as
  failed (``refiner_duplicate``) and replaced by a fresh random point. This is checked in the same
  look at the study as the budget, under the claims lock (:func:`take_slot`), and the claim writes
  the configuration's key with the slot in one transaction, so of two proposals of one
  configuration the later claimant always sees the earlier one.
* **Dead workers.** Each running trial gets a heartbeat thread; any participant that is waiting
  calls Optuna's ``fail_stale_trials``, which fails trials whose heartbeat stopped. A failed trial
  without a result frees its slot, so the round still completes its budget.
* **A dead coordinator.** The coordinator beats too: a counter in the control study
  (``refiner_coordinator``: who, beat, interval), every heartbeat interval for its whole life,
  rounds and analysis alike. A worker times the counter on its own clock (hosts' clocks need not
  agree); silent for three intervals while the run is open means the coordinator died. The worker
  keeps the open round going while it has slots (the results wait in the study, and a resumed
  coordinator records them instead of running them again), then stops with one line saying so.
* **A resumed coordinator** first sets the control to ``resuming`` (no claim succeeds in the earlier
  attempt after that: :func:`claim` checks the control under the claims lock), waits until the
  earlier attempt's claimed trials have stored a result or gone stale, and only then copies their
  results, so no stored result is left behind; then it opens a fresh attempt.
* **Results.** A participant stores the finished trial's record (the ``trials.jsonl`` line) in the
  trial's ``refiner_record`` attribute before telling Optuna. The coordinator copies records into
  the run folder, which stays the single record the app and ``refiner export`` read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import warnings
import weakref
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from refiner.errors import RefinerError
from refiner.failpoints import checkpoint, pause

if TYPE_CHECKING:
    from refiner.fidelity import EpochAllowance

__all__ = [
    "KEY", "RECORD", "KNOWN", "DUPLICATE", "INSIDE_BOX", "OUTSIDE_REGIONS", "SURPLUS", "CLAIMED", "EXHAUSTED",
    "open_storage", "normalise_url", "quiet_heartbeat_warnings", "control_study_name", "read_control", "write_control",
    "claim", "take_slot", "claims_lock", "set_trial_attrs", "tell", "is_duplicate", "records", "result_count", "live_count",
    "running_count", "recorded_epochs", "may_start", "round_attrs", "Heartbeat",
    "CoordinatorBeat", "CoordinatorWatch",
]

log = logging.getLogger(__name__)

# User attributes refiner sets on study trials.
KEY = "refiner_key"  # the configuration, as canonical JSON
RECORD = "refiner_record"  # the finished trial's trials.jsonl record
KNOWN = "refiner_known"  # added from the run's record (warm start or resume), not run in this study
CLAIMED = "refiner_claimed"  # holds a slot of the budget (set under the claims lock); its value: who (host:pid)
DUPLICATE = "refiner_duplicate"
INSIDE_BOX = "refiner_inside_box"  # an exploration-reserve proposal inside the round's box: replaced like a duplicate
OUTSIDE_REGIONS = "refiner_outside_regions"  # a proposal outside the round's regions: replaced by the nearest point inside
SURPLUS = "refiner_surplus"
EXHAUSTED = "refiner_exhausted"  # study attribute: every configuration of the round's space was tried
CONTROL_ATTR = "refiner"
COORDINATOR_ATTR = "refiner_coordinator"
ROUND_ATTR = "refiner_round"


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg2 to SQLAlchemy; use psycopg 3 when that is what is installed."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        import importlib.util

        if importlib.util.find_spec("psycopg2") is None and importlib.util.find_spec("psycopg") is not None:
            return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def open_storage(url: str, heartbeat_interval: int | None = None) -> Any:
    """An Optuna RDB storage; with a heartbeat interval, trials whose heartbeat stops for three
    intervals are stale."""
    import optuna

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Several processes on one SQLite file wait for each other's writes instead of failing.
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    if heartbeat_interval is not None:
        kwargs.update(heartbeat_interval=heartbeat_interval, grace_period=3 * heartbeat_interval)
    try:
        with quiet_heartbeat_warnings():
            storage = optuna.storages.RDBStorage(normalise_url(url), **kwargs)
    except Exception as exc:  # a wrong URL, a server that is down, a missing driver
        raise RefinerError(f"storage: cannot open {url!r} ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    if not url.startswith("sqlite"):
        _ping_idle_connections(storage.engine)
    return storage


PING_IDLE_S = 1.0


def _ping_idle_connections(engine: Any) -> None:
    """Test a pooled connection before use only if it sat idle for :data:`PING_IDLE_S` or longer.

    A worker keeps its connections for hours, across rounds and long evaluations, and a server
    restart or an idle timeout may have closed them meanwhile: those are pinged, and a dead one is
    replaced (SQLAlchemy's ``DisconnectionError`` at checkout). ``pool_pre_ping`` would ping before
    every checkout instead, and Optuna checks a connection out for every storage call: about twenty
    extra round trips per trial, where this pings the two or three connections once after each
    evaluation. What it gives up: a server that drops a connection within a second of its last use
    fails that one storage call (SQLAlchemy then renews the whole pool), as it would mid-query.
    """
    import time

    from sqlalchemy import event, exc

    @event.listens_for(engine, "checkin")
    def _checkin(dbapi_connection: Any, record: Any) -> None:
        record.info["refiner_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("refiner_idle_since")
        if since is None or time.monotonic() - since < PING_IDLE_S:
            return  # just opened, or in use a moment ago
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception:
            alive = False
        if not alive:
            raise exc.DisconnectionError("refiner: a pooled connection did not answer a ping")  # the pool reconnects


@contextlib.contextmanager
def quiet_heartbeat_warnings() -> Iterator[None]:
    """Optuna calls heartbeats experimental and warns when they are used outside ``optimize``;
    refiner runs its own heartbeat thread around ask/tell (:class:`Heartbeat`), on purpose."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used", category=UserWarning)
        yield


# -- the control record -------------------------------------------------------------------------
def control_study_name(project: str) -> str:
    return f"{project}-control"


_control_ids: "weakref.WeakKeyDictionary[Any, dict[str, int]]" = weakref.WeakKeyDictionary()


def read_control(storage: Any, project: str) -> dict[str, Any] | None:
    """The control record, or None while no run of that name has opened a round in the storage.

    One query once the control study's id is known (remembered per storage: it never changes while
    the study exists); workers read the control on every wait and every claim."""
    import optuna

    known = _control_ids.setdefault(storage, {})
    study_id = known.get(project)
    if study_id is not None:
        try:
            return storage.get_study_user_attrs(study_id).get(CONTROL_ATTR)
        except KeyError:  # the study was deleted (and may have been made again): look it up by name
            known.pop(project, None)
    try:
        study_id = storage.get_study_id_from_name(control_study_name(project))
    except KeyError:
        return None
    except optuna.exceptions.StorageInternalError:
        return None
    known[project] = study_id
    return storage.get_study_user_attrs(study_id).get(CONTROL_ATTR)


def write_control(storage: Any, project: str, control: Mapping[str, Any]) -> None:
    storage.set_study_user_attr(_control_study_id(storage, project), CONTROL_ATTR, dict(control))


def _control_study_id(storage: Any, project: str) -> int:
    import optuna

    name = control_study_name(project)
    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        try:
            return storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], name)
        except optuna.exceptions.DuplicatedStudyError:
            return storage.get_study_id_from_name(name)


class CoordinatorBeat:
    """The coordinator's heartbeat: a counter in the control study, raised every ``interval`` s."""

    def __init__(self, storage: Any, project: str, interval: float, who: str):
        self._storage, self._project, self._interval, self._who = storage, project, interval, who
        self._stop = threading.Event()
        self._beat(0)
        self._thread = threading.Thread(target=self._run, name="coordinator-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self, n: int) -> None:
        study_id = _control_study_id(self._storage, self._project)
        self._storage.set_study_user_attr(study_id, COORDINATOR_ATTR,
                                          {"who": self._who, "beat": n, "interval": self._interval})

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self._interval):
            n += 1
            try:
                self._beat(n)
            except Exception as exc:  # a missed beat is not fatal; three in a row make workers stop
                log.warning("coordinator heartbeat failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class CoordinatorWatch:
    """A worker's watch on the coordinator's heartbeat, timed on the worker's own clock."""

    def __init__(self) -> None:
        self._seen: tuple[Any, Any] | None = None
        self._since = 0.0

    def gone(self, storage: Any, project: str) -> dict[str, Any] | None:
        """The coordinator's last beat if it has not changed for three of its intervals, else None."""
        import time

        try:
            beat = storage.get_study_user_attrs(storage.get_study_id_from_name(control_study_name(project))).get(
                COORDINATOR_ATTR)
        except KeyError:
            return None
        if not beat:
            return None  # a coordinator that does not beat (an older refiner): nothing to judge by
        key, now = (beat.get("who"), beat.get("beat")), time.monotonic()
        if key != self._seen:
            self._seen, self._since = key, now
            return None
        silent = now - self._since
        return dict(beat, silent_s=silent) if silent > 3 * float(beat.get("interval") or 10) else None


def round_attrs(study: Any) -> dict[str, Any]:
    return study.user_attrs.get(ROUND_ATTR) or {}


# -- reading a round study ----------------------------------------------------------------------
def _storage_id(trial: Any) -> int:
    return trial._trial_id  # unique and increasing across processes; numbers are not


def _has_result(trial: Any) -> bool:
    return RECORD in trial.user_attrs and not trial.user_attrs.get(KNOWN)


def _is_live(trial: Any) -> bool:
    """Holds a slot of the budget: claimed and running, or finished with a result. A running
    trial that has not claimed yet (between ``ask`` and :func:`claim`) holds none."""
    import optuna

    if any(trial.user_attrs.get(attr) for attr in (KNOWN, DUPLICATE, INSIDE_BOX, OUTSIDE_REGIONS, SURPLUS)):
        return False
    return _has_result(trial) or (trial.state == optuna.trial.TrialState.RUNNING and bool(trial.user_attrs.get(CLAIMED)))


def claim(storage: Any, study: Any, trial: Any, budget: int, project: str | None = None) -> bool:
    """Claim a slot of the budget for running ``trial`` (an ``optuna.Trial``) if fewer than ``budget``
    are held; ``False`` if none is left. Counting and claiming happen under :func:`claims_lock`.
    With ``project``, also ``False`` once the control record no longer has this study open (a
    resumed coordinator is reading the study's results: nothing may claim there after it)."""
    return take_slot(storage, study, trial, budget, project=project)[0] == "claimed"


def take_slot(storage: Any, study: Any, trial: Any, budget: int, *, project: str | None = None,
              key: str | None = None, who: str | bool = True,
              epochs: "EpochAllowance | None" = None) -> tuple[str, list[Any]]:
    """:func:`claim`, and with ``key`` the check for a repeat in the same look at the study: returns
    ``"claimed"``, ``"duplicate"`` (another trial holds ``key``: see :func:`is_duplicate`),
    ``"full"`` (no slot left, or the round is no longer open) or, with ``epochs`` (the round's
    epoch allowance), ``"spent"`` (:func:`may_start` says no), with the trials it saw.

    All are decided under :func:`claims_lock`, and a claim writes the key and the slot (marked
    with ``who``) in one transaction, so of two participants that proposed the same configuration
    the second to get the lock always sees the first's claim, and two cannot both take the last
    epochs of the allowance; and the trials are read once per proposal instead of once for each
    check."""
    with claims_lock(storage, study.study_name):
        if project is not None:
            control = read_control(storage, project)
            if control is not None and (control.get("state") != "open" or control.get("study") != study.study_name):
                return "full", []
        trials = study.get_trials(deepcopy=False)
        if key is not None:
            mine = next(t for t in trials if _storage_id(t) == trial._trial_id)
            if is_duplicate(trials, mine, key):
                return "duplicate", trials
        if live_count(trials) >= budget:
            return "full", trials
        if not may_start(epochs, trials):
            return "spent", trials
        pause("claim")  # tests widen the window between counting and claiming here
        checkpoint("optuna_claiming")  # dies holding the claims lock: its connection's end releases it
        set_trial_attrs(storage, trial._trial_id, {CLAIMED: who} if key is None else {KEY: key, CLAIMED: who})
        return "claimed", trials


def set_trial_attrs(storage: Any, trial_id: int, attrs: Mapping[str, Any]) -> None:
    """Set several user attributes of one trial in one transaction.

    Optuna's ``set_trial_user_attr`` opens a transaction per attribute (a connection checkout, a
    read of the trial, the write, a commit); a claim writes two. On an RDB storage this writes
    them with Optuna's own per-attribute step inside one of its sessions, so either all are stored
    or none; any other storage (in memory), or an Optuna without that step, gets them one by one.
    """
    backend = getattr(storage, "_backend", storage)  # study._storage wraps the RDB storage in a cache
    try:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        write, sessions = backend._set_trial_attr_without_commit, backend.scoped_session
    except (ImportError, AttributeError):  # an in-memory storage, or an Optuna without those steps
        for name, value in attrs.items():
            storage.set_trial_user_attr(trial_id, name, value)
        return
    with _create_scoped_session(sessions, True) as session:
        for name, value in attrs.items():
            write(session, models.TrialUserAttributeModel, trial_id, name, value)


def tell(study: Any, trial: Any, value: float | None = None, state: Any = None) -> None:
    """``study.tell`` without reading the trial back afterwards.

    ``Study.tell`` returns a deep copy of the told trial, read again from the storage (six
    statements on an RDB storage); refiner never uses it. ``study.optimize`` tells through the
    same inner function this calls; an Optuna without it gets ``study.tell``."""
    try:
        from optuna.study._tell import _tell_with_warning
    except ImportError:
        study.tell(trial, value, state=state)
        return
    _tell_with_warning(study=study, trial=trial, value_or_values=value, state=state)


@contextlib.contextmanager
def claims_lock(storage: Any, name: str) -> Iterator[None]:
    """Held by one participant at a time, across processes and hosts, for the study ``name``."""
    engine = getattr(storage, "engine", None)  # an in-memory storage has none, and lives in one process
    dialect = engine.dialect.name if engine is not None else ""
    if dialect in ("postgresql", "mysql"):
        from sqlalchemy import text

        # Session-level advisory locks: released by the unlock below, or by the server when the
        # holder's connection dies with its process.
        key = zlib.crc32(f"refiner-claims:{name}".encode())
        take, give = (("SELECT pg_advisory_lock(:k)", "SELECT pg_advisory_unlock(:k)") if dialect == "postgresql"
                      else ("SELECT GET_LOCK(CONCAT('refiner-', :k), -1)", "SELECT RELEASE_LOCK(CONCAT('refiner-', :k))"))
        with engine.connect() as connection:
            # Autocommit: a session lock needs no transaction, and none saves a BEGIN and a ROLLBACK.
            connection.execution_options(isolation_level="AUTOCOMMIT")
            connection.execute(text(take), {"k": key})
            try:
                yield
            finally:
                connection.execute(text(give), {"k": key})
        return
    database = engine.url.database if engine is not None and dialect == "sqlite" else None
    if database and database != ":memory:":
        from filelock import FileLock

        # Every process on one SQLite file shares its filesystem; flock is released when a holder dies.
        with FileLock(f"{database}.claims.lock"):
            yield
        return
    yield  # an in-memory database lives in one process, which claims one trial at a time


def is_duplicate(trials: Sequence[Any], mine: Any, key: str) -> bool:
    """Another trial holds this configuration: known, finished with a result, running with a claimed
    slot, or running under a smaller id with its key set (a participant of an older refiner, which
    set the key before claiming)."""
    import optuna

    for t in trials:
        if _storage_id(t) == _storage_id(mine) or t.user_attrs.get(KEY) != key:
            continue
        if any(t.user_attrs.get(attr) for attr in (DUPLICATE, INSIDE_BOX, OUTSIDE_REGIONS, SURPLUS)):
            continue
        if t.user_attrs.get(KNOWN) or RECORD in t.user_attrs or t.state == optuna.trial.TrialState.COMPLETE:
            return True
        if t.state == optuna.trial.TrialState.RUNNING and (t.user_attrs.get(CLAIMED) or _storage_id(t) < _storage_id(mine)):
            return True
    return False


def records(trials: Sequence[Any]) -> list[dict[str, Any]]:
    """The results stored in a round study, in claim order (storage id)."""
    found = [t for t in trials if _has_result(t) and not t.user_attrs.get(SURPLUS)]
    return [json.loads(t.user_attrs[RECORD]) for t in sorted(found, key=_storage_id)]


def result_count(trials: Sequence[Any]) -> int:
    return sum(1 for t in trials if _has_result(t) and not t.user_attrs.get(SURPLUS))


def live_count(trials: Sequence[Any]) -> int:
    return sum(1 for t in trials if _is_live(t))


def running_count(trials: Sequence[Any]) -> int:
    """Trials that hold a slot and have no result yet: claimed and still running somewhere."""
    return live_count(trials) - result_count(trials)


def recorded_epochs(trials: Sequence[Any]) -> int:
    """The epochs of the results stored in a round study (what the coordinator records from it)."""
    from refiner.fidelity import trial_epochs

    return sum(trial_epochs(record) for record in records(trials))


def may_start(epochs: "EpochAllowance | None", trials: Sequence[Any]) -> bool:
    """Whether the round's epoch allowance lets one more trial start, as the study's trials stand
    (always without one, at no cost). The rule itself is :meth:`refiner.fidelity.EpochAllowance.may_start`."""
    return epochs is None or epochs.may_start(running_count(trials), recorded_epochs(trials))


# -- heartbeat ----------------------------------------------------------------------------------
class Heartbeat:
    """Beats for one running trial until stopped, so a participant that dies is noticed."""

    def __init__(self, storage: Any, trial_id: int, interval: float | None):
        self._storage = storage
        self._trial_id = trial_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if interval is None:
            return
        storage.record_heartbeat(trial_id)  # a trial with no heartbeat at all is never found stale
        self._thread = threading.Thread(target=self._run, args=(interval,), name=f"heartbeat-{trial_id}", daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self._storage.record_heartbeat(self._trial_id)
            except Exception as exc:  # a missed beat is not fatal; three in a row make the trial stale
                log.warning("heartbeat for trial %d failed: %s", self._trial_id, exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> "Heartbeat":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
