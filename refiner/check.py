"""What a run folder's files must agree on, and the repair for each way they can disagree.

:func:`run_problems` lists them (``refiner validate RUN_DIR``, ``show``, the app); :func:`check_run`
refuses a resume that would build on one. Each file is first read against its schema; then the files are held
against each other:

* a trial id recorded twice in a round (two processes wrote the run at once), a trial recorded in
  another round's file, more trials than the round's budget;
* a round's space that is not the one the previous round's decisions (with a person's overrides)
  give, or for round 0 the space the run was started with;
* files missing (a round's trials while a later round has started; a finished run's result) and
  files that are no part of a run folder.

A problem that a resume would build on (``blocks_resume``) refuses the resume; the others (a file
refiner recomputes, a stray file it never reads) are reported and the run carries on.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from refiner.errors import DamagedRunError, RunFolderError, ValidationError
from refiner.jsonio import damaged, read_json
from refiner.overrides import decisions_with_overrides, stored_override_problems
from refiner.space import SearchSpace
from refiner.store import RunStore, is_lock_file

__all__ = ["Problem", "check_run", "run_problems"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_ROOT_FILES = {"run.json", "events.jsonl", "refined_space.json", "rounds", "imported.jsonl",
               # the optuna engine's default SQLite storage, its journal files, KerasTuner's space probe
               "optuna.db", "optuna.db-journal", "optuna.db-wal", "optuna.db-shm", "optuna.db.claims.lock", ".discover"}
_ROUND_FILES = {"space.json", "trials.jsonl", "surrogate.json", "decisions.json", "overrides.json", "audit.json",
                "approval.json",  # refiner.gate: a person let the run go on to the next round
                "kt", "kt-reserve"}
_KEPT_KT = re.compile(r"kt(-reserve)?\.interrupted-\d+")  # an interrupted round's KerasTuner folder, kept by a resume
_AFRESH = "restore the folder from a backup or start afresh with --overwrite"


@dataclass(frozen=True)
class Problem:
    """One line: ``"<file>: <what is wrong> - to repair, <how>"``."""

    message: str
    blocks_resume: bool = True

    def __str__(self) -> str:
        return self.message


class _Broken:
    """Stands for a file that failed its own check, so the cross-file rules skip it."""


BROKEN = _Broken()


def check_run(store: RunStore) -> None:
    """Raise :class:`DamagedRunError` (one line per problem) if the folder has problems a resume
    would build on; log the others (a file refiner recomputes, a stray file it never reads).

    A resume calls this before writing anything, so a damaged run is refused untouched.
    """
    found = run_problems(store)
    for problem in found:
        if not problem.blocks_resume:
            log.warning("%s", problem)
    fatal = [str(p) for p in found if p.blocks_resume]
    if fatal:
        raise DamagedRunError(fatal)


def run_problems(store: RunStore) -> list[Problem]:
    """Every problem of the run folder, files' own first, in folder order; empty when sound."""
    found: list[Problem] = []

    def read(fn: Callable[..., T], *args: Any) -> T | _Broken:
        try:
            return fn(*args)
        except RunFolderError as exc:
            found.append(Problem(str(exc)))
            return BROKEN

    run = read(store.read_run)
    read(store.read_events)
    rounds: dict[int, dict[str, Any]] = {}
    for k in store.rounds():
        files = rounds[k] = {
            "space": read(store.read_space, k) if store.has_space(k) else None,
            "trials": read(store.read_trials, k) if (store.round_dir(k) / "trials.jsonl").exists() else None,
            "surrogate": read(store.read_surrogate, k),
            "decisions": read(store.read_decisions, k),
            "audit": read(store.read_audit, k),
            "next_space": None,
        }
        files["next_space"] = _next_space(store, k, files["decisions"], found)
    refined = read(store.read_refined_space) if store.refined_space_file.exists() else None
    read(store.read_imported)
    if not isinstance(run, _Broken):
        found += _consistency(store, run, rounds, refined)
    found += _stray_files(store, None if isinstance(run, _Broken) else run["settings"]["rounds"])
    return found


def _next_space(store: RunStore, k: int, decisions: Any, found: list[Problem]) -> SearchSpace | _Broken | None:
    """Round k+1's space as the decisions and a person's overrides give it; checks overrides.json."""
    path = store.round_dir(k) / "overrides.json"
    if path.exists():
        try:
            overrides = read_json(path, "overrides")
        except RunFolderError as exc:
            found.append(Problem(str(exc)))
            return BROKEN
        if not isinstance(decisions, _Broken):
            wrong = stored_override_problems(store, k, overrides)
            if wrong:
                found.append(Problem(str(damaged(path, "; ".join(wrong)))))
                return BROKEN
    if decisions is None or isinstance(decisions, _Broken):
        return decisions
    try:
        document = decisions_with_overrides(store, k)
        assert document is not None
        return SearchSpace.from_dict(document["next_space"])
    except (ValidationError, RunFolderError):
        return BROKEN  # already reported with its file


def _consistency(store: RunStore, run: dict[str, Any], rounds: dict[int, dict[str, Any]],
                 refined: Any) -> list[Problem]:
    settings = run["settings"]
    n_rounds = settings["rounds"]
    found: list[Problem] = []
    last_started = max((k for k in rounds if k < n_rounds), default=-1)
    for k, files in sorted(rounds.items()):
        if k >= n_rounds:
            continue  # reported as a stray folder
        round_dir = store.round_dir(k)
        trials = files["trials"]
        if isinstance(trials, list):
            found += _trial_problems(round_dir / "trials.jsonl", k, trials, _budget(settings, k))
        elif trials is None and k < last_started:
            found.append(Problem(f"{round_dir / 'trials.jsonl'}: missing, yet round {last_started} has started "
                                 f"from this round's results - to repair, {_AFRESH}"))
        space = files["space"]
        expected = (SearchSpace.from_dict(settings["initial_space"]) if k == 0
                    else rounds.get(k - 1, {}).get("next_space"))
        if isinstance(space, SearchSpace) and isinstance(expected, SearchSpace) and space != expected:
            source = ("the space the run was started with (run.json settings.initial_space)" if k == 0 else
                      f"the space round {k - 1}'s decisions"
                      f"{' with their overrides' if _has_overrides(store, k - 1) else ''} give")
            found.append(Problem(f"{round_dir / 'space.json'}: not {source} ({_first_difference(space, expected)}); "
                                 f"its trials were drawn from another space - to repair, {_AFRESH}"))
        if k < last_started:
            for name, key in (("space.json", "space"), ("surrogate.json", "surrogate"), ("decisions.json", "decisions")):
                if files[key] is None:
                    found.append(Problem(f"{round_dir / name}: missing - to repair, run again: refiner recomputes it "
                                         f"exactly", blocks_resume=False))
    if run["state"]["status"] == "finished":
        for k in range(n_rounds):
            if k not in rounds:
                found.append(Problem(f"{store.round_dir(k)}: missing, yet run.json says the run finished - to repair, "
                                     f"run again: refiner runs the round again", blocks_resume=False))
        if refined is None:
            found.append(Problem(f"{store.refined_space_file}: missing - to repair, run again: it is rebuilt from the "
                                 f"last round's decisions", blocks_resume=False))
    last = rounds.get(n_rounds - 1, {}).get("decisions")
    if isinstance(refined, SearchSpace) and isinstance(last, dict):
        recorded = SearchSpace.from_dict(last["next_space"])
        if refined != recorded:
            found.append(Problem(f"{store.refined_space_file}: not the space round {n_rounds - 1}'s decisions give "
                                 f"({_first_difference(refined, recorded)}) - to repair, delete it and run again: it "
                                 f"is rebuilt from them", blocks_resume=False))
    return found


def _budget(settings: dict[str, Any], k: int) -> int:
    return settings.get("initial_trials", settings["trials_per_round"]) if k == 0 else settings["trials_per_round"]


def _trial_problems(path: Path, k: int, trials: list[Any], budget: int) -> list[Problem]:
    found = []
    lines: dict[str, list[int]] = defaultdict(list)
    for n, trial in enumerate(trials, start=1):
        lines[trial.trial_id].append(n)
    twice = {tid: ns for tid, ns in lines.items() if len(ns) > 1}
    if twice:
        shown = ", ".join(f"{tid!r} (lines {', '.join(map(str, ns))})" for tid, ns in list(twice.items())[:4])
        more = f" and {len(twice) - 4} more" if len(twice) > 4 else ""
        found.append(Problem(
            f"{path}: {len(twice)} trial ids recorded more than once, {shown}{more}: two processes wrote this run "
            f"at once - to repair, {_AFRESH} (which copy later rounds were built from cannot be told)"))
    elsewhere = [(n, t.round) for n, t in enumerate(trials, start=1) if t.round != k]
    if elsewhere:
        shown = ", ".join(f"line {n} (round {r})" for n, r in elsewhere[:4])
        found.append(Problem(f"{path}: {len(elsewhere)} trials of another round recorded in round {k}'s file, {shown} "
                             f"- to repair, move each line to its own round's trials.jsonl or delete it"))
    if len(trials) > budget:
        found.append(Problem(f"{path}: {len(trials)} trials recorded, more than round {k}'s budget of {budget} "
                             f"- to repair, {_AFRESH}"))
    return found


def _has_overrides(store: RunStore, k: int) -> bool:
    return (store.round_dir(k) / "overrides.json").exists()


def _first_difference(got: SearchSpace, want: SearchSpace) -> str:
    a, b = {p["name"]: p for p in got.to_dict()["parameters"]}, {p["name"]: p for p in want.to_dict()["parameters"]}
    for name in sorted(set(a) | set(b)):
        if a.get(name) != b.get(name):
            if name not in a:
                return f"{name!r} is missing"
            if name not in b:
                return f"{name!r} should not be there"
            return f"{name!r} is {_short(a[name])}, expected {_short(b[name])}"
    return "the parameters are in another order"


def _short(parameter: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in parameter.items() if k != "name")


def _stray_files(store: RunStore, n_rounds: int | None) -> list[Problem]:
    """Files and folders that are no part of a run folder (lock files and interrupted writes' temporaries are)."""
    if not store.root.is_dir():
        return []
    found = []

    def stray(path: Path, why: str) -> None:
        found.append(Problem(f"{path}: {why} - to repair, move it out of the run folder (refiner neither reads "
                             f"nor needs it)", blocks_resume=False))

    def ours(name: str, allowed: set[str]) -> bool:
        return (name in allowed or is_lock_file(name) or (name.startswith(".") and name.endswith(".tmp"))
                or (allowed is _ROUND_FILES and bool(_KEPT_KT.fullmatch(name))))

    for path in sorted(store.root.iterdir()):
        if not ours(path.name, _ROOT_FILES):
            stray(path, "not a file refiner writes")
    rounds_dir = store.root / "rounds"
    if not rounds_dir.is_dir():
        return found
    for path in sorted(rounds_dir.iterdir()):
        if not (path.is_dir() and path.name.isdigit()):
            stray(path, "not a round folder")
        elif n_rounds is not None and int(path.name) >= n_rounds:
            stray(path, f"round {int(path.name)} is beyond the run's {n_rounds} rounds")
        else:
            for inner in sorted(path.iterdir()):
                if not ours(inner.name, _ROUND_FILES):
                    stray(inner, "not a file refiner writes")
    return found
