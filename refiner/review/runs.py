"""Which runs there are and what one holds: listing by name, loading, the view model the page lays out.

A run is picked by *name* from the listing of the runs folder (:func:`list_runs`,
:func:`resolve_run`); a name from the URL is checked against that listing and never joined to a
path before it has been found there. A run that cannot be read raises :class:`RunFolderError`
with one line, so the app can say what is wrong with that run and keep the others usable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from refiner.check import run_problems
from refiner.console import latest_judgements
from refiner.errors import RefinerError, RunFolderError, ValidationError
from refiner.overrides import decisions_with_overrides, read_overrides
from refiner.space import SearchSpace
from refiner.store import RunStore
from refiner.text import fmt
from refiner.trial import Objective, Trial, best_trial


__all__ = [
    "RunNameError", "list_runs", "latest_run", "check_run_name", "resolve_run", "run_signature",
    "RoundView", "RunView", "load_run", "runs_overview_frame",
]


class RunNameError(RefinerError):
    """A run name that is unsafe or is not in the runs folder's listing."""


_NAME_RULE = re.compile(r"^[^/\\\x00-\x1f]{1,255}$")


def _safe_name(name: str) -> bool:
    # One path component, not hidden, not "." or "..": nothing that could step out of the folder.
    return (isinstance(name, str) and bool(_NAME_RULE.match(name)) and not name.startswith(".")
            and name.strip() == name)


def list_runs(runs_dir: str | Path) -> list[str]:
    """Names of the run folders (sub-folders holding ``run.json``) in ``runs_dir``, sorted."""
    base = Path(runs_dir)
    if not base.is_dir():
        return []
    inside = base.resolve()
    names = []
    for entry in base.iterdir():
        # A symlink may point anywhere: only real folders that lie inside the runs folder count.
        if _safe_name(entry.name) and not entry.is_symlink() and entry.is_dir() \
                and (entry / "run.json").is_file() and entry.resolve().parent == inside:
            names.append(entry.name)
    return sorted(names)


def latest_run(runs_dir: str | Path, names: Sequence[str] | None = None) -> str | None:
    """The listed run whose ``run.json`` changed last (the one a user most likely wants to see)."""
    names = list_runs(runs_dir) if names is None else list(names)
    if not names:
        return None

    def mtime(name: str) -> float:
        try:
            return (Path(runs_dir) / name / "run.json").stat().st_mtime
        except OSError:
            return 0.0

    return max(names, key=lambda n: (mtime(n), n))


def check_run_name(runs_dir: str | Path, name: str) -> str:
    """``name`` if it is one of :func:`list_runs`; else :class:`RunNameError` saying why not."""
    if not _safe_name(name):
        raise RunNameError(f"run name {name!r} is not allowed: a run is picked by its folder name "
                           f"(no '/', '\\', leading '.' or control characters)")
    if name not in list_runs(runs_dir):
        raise RunNameError(f"no run named {name!r} in {runs_dir}")
    return name


def resolve_run(runs_dir: str | Path, name: str) -> Path:
    """The folder of run ``name``, checked against the listing first."""
    return Path(runs_dir) / check_run_name(runs_dir, name)


def run_signature(root: str | Path) -> tuple[tuple[str, int, int], ...]:
    """(file, mtime_ns, size) of every file the app reads: a cache key that changes when the run does.

    The store replaces JSON files atomically and the app ignores torn JSON-lines tails, so keying
    the cache on this never shows a half-written document; it only decides when to read again.
    """
    root = Path(root)
    files = [root / "run.json", root / "refined_space.json", root / "events.jsonl"]
    base = root / "rounds"
    if base.is_dir():
        for d in sorted(base.iterdir(), key=lambda p: p.name):
            if d.name.isdigit():
                files += [d / f for f in ("space.json", "trials.jsonl", "surrogate.json", "decisions.json",
                                          "overrides.json", "audit.json", "approval.json")]
    out = []
    for f in files:
        try:
            st = f.stat()
        except OSError:
            continue
        out.append((str(f.relative_to(root)), st.st_mtime_ns, st.st_size))
    return tuple(out)


@dataclass(frozen=True)
class RoundView:
    """Everything recorded for round ``k``; later parts are None while the round is running."""

    k: int
    space: SearchSpace | None
    trials: tuple[Trial, ...]
    surrogate: dict[str, Any] | None
    decisions: dict[str, Any] | None  # refiner's proposal with any overrides applied
    overrides: dict[str, Any] | None
    next_started: bool  # round k+1 has its space, so an override of round k can no longer reach it
    audit: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)  # name -> latest judgements of its cut

    @property
    def kind(self) -> str:
        return "random" if self.k == 0 else "Bayesian"

    def decision(self, name: str) -> dict[str, Any] | None:
        if self.decisions is None:
            return None
        return next((d for d in self.decisions["decisions"] if d["name"] == name), None)


@dataclass(frozen=True)
class RunView:
    """One run as the app shows it (read once per change of :func:`run_signature`)."""

    name: str
    root: Path
    run: dict[str, Any]
    rounds: tuple[RoundView, ...]
    has_refined_space: bool
    events: tuple[dict[str, Any], ...] = field(default=())
    imported: tuple[Trial, ...] = field(default=())  # a warm start's trials, each with its source
    problems: tuple[str, ...] = field(default=())  # refiner.check.run_problems(): files that disagree, missing, stray
    signature: tuple = field(default=())  # run_signature() when it was read: the key of the page's caches

    @property
    def store(self) -> RunStore:
        return RunStore(self.root)

    @property
    def objective(self) -> Objective:
        o = self.run["settings"]["objective"]
        return Objective(o["name"], o["direction"])

    @property
    def status(self) -> str:
        return self.run["state"]["status"]

    @property
    def trials(self) -> list[Trial]:
        return [t for r in self.rounds for t in r.trials]

    @property
    def best(self) -> Trial | None:
        return best_trial(self.trials, self.objective)

    def round(self, k: int) -> RoundView:
        return next(r for r in self.rounds if r.k == k)


def load_run(runs_dir: str | Path, name: str, events: int = 50) -> RunView:
    """Read and validate run ``name`` of ``runs_dir``.

    Raises:
        RunNameError: ``name`` is not a run of the listing.
        RunFolderError: a file of the run is missing, unparsable or breaks its schema (one line).
    """
    root = resolve_run(runs_dir, name)
    store = RunStore(root)
    try:
        run = store.read_run()
        numbers = store.rounds()
        judged = latest_judgements(store)
        rounds = []
        for k in numbers:
            overrides_path = store.round_dir(k) / "overrides.json"
            try:
                decisions = decisions_with_overrides(store, k)
            except ValidationError as exc:
                raise RunFolderError(f"{overrides_path}: {'; '.join(exc.problems)}") from None
            rounds.append(RoundView(
                k=k,
                space=store.read_space(k) if store.has_space(k) else None,
                trials=tuple(store.read_trials(k)),
                surrogate=store.read_surrogate(k),
                decisions=decisions,
                overrides=read_overrides(store, k),
                next_started=store.has_space(k + 1),
                audit=judged.get(k, {}),
            ))
        has_refined = store.refined_space_file.exists()
        if has_refined:
            store.read_refined_space()  # validate now, so a broken result shows as this run's problem
        recent = tuple(store.read_events()[-events:]) if events else ()
        imported = tuple(store.read_imported())
        # Every file passed its own check; now whether they agree (a trial recorded twice, ...).
        problems = tuple(str(p) for p in run_problems(store))
    except RunFolderError:
        raise
    except ValidationError as exc:
        raise RunFolderError(str(exc)) from None
    except (ValueError, KeyError, TypeError) as exc:  # a record that passed its schema but not its type
        raise RunFolderError(f"{root}: cannot be read ({type(exc).__name__}: {exc})") from None
    return RunView(name=name, root=root, run=run, rounds=tuple(rounds), has_refined_space=has_refined,
                   events=recent, imported=imported, problems=problems)


def runs_overview_frame(runs_dir: str | Path, names: Sequence[str]) -> pd.DataFrame:
    """One row per run: status (a killed writer said so), engine, best, trials, dates; unreadable runs say why."""
    from refiner.liveness import stopped_note

    rows = []
    for name in names:
        store = RunStore(Path(runs_dir) / name)
        try:
            run = store.read_run()
            settings, state = run["settings"], run["state"]
            status = state["status"]
            if stopped_note(store.root, run):
                status = "stopped (writer gone)"
            best = (state.get("best") or {}).get("score")
            n = sum(len(store._complete_lines(store.round_dir(k) / "trials.jsonl")) for k in store.rounds())
            rows.append({"run": name, "status": status, "engine": settings.get("engine", "keras-tuner"),
                         "objective": f"{settings['objective']['name']} ({settings['objective']['direction']})",
                         "best": fmt(best), "trials": n, "rounds": f"{len(store.rounds())} of {settings['rounds']}",
                         "review": settings.get("review", "off"), "started": run["created_at"],
                         "last change": run["updated_at"]})
        except (RefinerError, KeyError, TypeError, ValueError) as exc:
            rows.append({"run": name, "status": f"unreadable: {str(exc)[:120]}"})
    return pd.DataFrame(rows, columns=["run", "status", "engine", "objective", "best", "trials", "rounds", "review",
                                       "started", "last change"]).fillna("")
