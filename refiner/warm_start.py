"""Start a new run from an earlier one: its trials become evidence, each marked with where it came from.

Users of KerasTuner, Optuna and W&B ask for this (change the space, keep the trials; start a new
search with old runs as priors). The earlier run must have optimised the same objective, and its
parameters must be the new run's (ranges may differ: that is the point): anything else would mix
incomparable scores or configurations, so it is refused naming what differs.

Every trial of the earlier run is imported into the new run folder's ``imported.jsonl`` with
round -1 and a ``source``. Completed trials inside the new space are evidence for the new run's
first surrogate and warm-start its rounds; the others are kept for the audit and the plots.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

from refiner.check import check_run
from refiner.errors import RefinerError, ValidationError
from refiner.space import Fixed, Float, Int, Parameter, SearchSpace
from refiner.store import RunStore
from refiner.trial import IMPORTED_ROUND, Objective, Trial

__all__ = ["earlier_trials", "evidence"]

log = logging.getLogger(__name__)


def earlier_trials(run_dir: str | os.PathLike[str], objective: Objective, space: SearchSpace) -> list[Trial]:
    """Every trial of the run in ``run_dir``, as imported trials of a new run over ``space``.

    Raises:
        ValidationError: (exit 2 from the CLI) ``run_dir`` is not a run folder, optimised another
            objective, or has a parameter the new space lacks (or the other way round, or of
            another kind); one line naming the setting or the parameter.
    """
    root = Path(run_dir)
    store = RunStore(root)
    if not store.exists():
        raise ValidationError(f"warm_start: {root} is not a run folder (no run.json)")
    try:
        check_run(store)
        settings = store.read_run()["settings"]
        trials = [*store.read_imported(), *store.all_trials()]
    except RefinerError as exc:
        raise ValidationError(f"warm_start: {exc}") from None
    earlier = Objective(settings["objective"]["name"], settings["objective"]["direction"])
    if earlier != objective:
        raise ValidationError(f"warm_start: {root} optimised {earlier.name} ({earlier.direction}), this run "
                              f"{objective.name} ({objective.direction}); only trials of the same objective compare")
    problems = _mismatches(SearchSpace.from_dict(settings["initial_space"]), space, root)
    if problems:
        raise ValidationError(problems)
    return [_imported(t, root) for t in trials]


def evidence(trials: Sequence[Trial], space: SearchSpace) -> list[Trial]:
    """The imported trials that count in a run over ``space``: completed, and inside it."""
    return [t for t in trials if t.ok and space.contains(t.hyperparameters)]


def _imported(t: Trial, root: Path) -> Trial:
    # An earlier run's own imports keep their first source: provenance is where a score was measured.
    source = dict(t.source) if t.source is not None else {"run": str(root), "trial_id": t.trial_id, "round": t.round}
    return Trial(trial_id=f"{Path(source['run']).name}/{source['trial_id']}", round=IMPORTED_ROUND,
                 hyperparameters=dict(t.hyperparameters), score=t.score, status=t.status, metrics=dict(t.metrics),
                 duration_s=t.duration_s, message=t.message, source=source)


def _kind(p: Parameter) -> str:
    return "numeric" if isinstance(p, (Float, Int)) else "categorical"


def _mismatches(old: SearchSpace, new: SearchSpace, root: Path) -> list[str]:
    """One line per parameter the two spaces do not share as the same kind of parameter."""
    problems = []
    for name in new.names:
        if name not in old:
            problems.append(f"warm_start: parameter {name!r} is not in {root}'s space, so its trials say nothing "
                            "about it; remove it or start without --warm-start")
    for name in old.names:
        if name not in new:
            problems.append(f"warm_start: parameter {name!r} of {root} is not in this run's space; "
                            "its trials would be scored without it")
    for name in new.names:
        if name in old:
            a, b = old[name], new[name]
            # A fixed parameter is one value of anything (a narrowed range or choice); otherwise a
            # range stays a range and a choice a choice.
            if not isinstance(a, Fixed) and not isinstance(b, Fixed) and _kind(a) != _kind(b):
                problems.append(f"warm_start: parameter {name!r} is {a.type_name} in {root} but {b.type_name} "
                                "in this run; its values do not compare")
    return problems
