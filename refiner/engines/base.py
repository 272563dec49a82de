"""The engine interface: what the loop asks of a library that runs one round of trials.

An engine takes a :class:`RoundSpec` (a space, a budget, the trials already known) and reports
every finished trial through a callback; it never touches the run folder, which the loop alone
writes. Evaluating a trial (calling the function, or building and fitting the Keras model) is
the same for every engine and lives in :mod:`refiner.engines.evaluation`; an engine decides only
*which* configurations to try, in what order, and with which library.

Adding an engine is one module with a subclass of :class:`Engine` and one line in
:data:`refiner.engines.REGISTRY`; ``tests/test_engine_contract.py`` then runs the same contract
suite on it as on the others (as Optuna tests every storage with one suite).
"""

from __future__ import annotations

import abc
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, ContextManager, Sequence

from refiner.space import SearchSpace
from refiner.trial import Objective, Trial

if TYPE_CHECKING:  # the evaluation is built by the loop; engines only call it
    from refiner.engines.evaluation import Evaluation
    from refiner.fidelity import EpochBudget

__all__ = ["Engine", "RoundSpec", "RunContext", "TrialCallback", "ROUND_KINDS"]

TrialCallback = Callable[[Trial], None]

ROUND_KINDS = ("random", "model")
"""Round 0 samples at random; later rounds propose from a model of the trials so far (KerasTuner's
Gaussian process, Optuna's TPE or GP): each engine names its own in :meth:`Engine.round_label`."""


@dataclass(frozen=True)
class RunContext:
    """What an engine may know about the run it serves (never its files)."""

    name: str  # the run's name: the prefix of an engine's studies or projects
    root: Path  # the run folder, for an engine's default storage inside it
    run_id: str  # tells this run from an earlier one of the same name (its start time)
    target: str  # ``module:function`` of the objective, so a worker can check it runs the same one


@dataclass
class RoundSpec:
    """Everything one round needs, the same for every engine."""

    run: RunContext
    round_index: int
    kind: str  # one of ROUND_KINDS
    space: SearchSpace
    objective: Objective
    budget: int  # new trials to run in this round
    evaluation: "Evaluation"  # runs one configuration: a function call or a Keras model's training
    workdir: Path  # a folder the engine may use for its own files (KerasTuner's project folder)
    seed: int | None
    warm_trials: Sequence[Trial] = ()  # ok trials from earlier rounds, inside `space`
    done_trials: Sequence[Trial] = ()  # trials of this round already recorded (resume)
    # The round's exploration reserve: `space` is the declared space, proposals avoid `exclude` (the
    # round's narrowed box, searched by the round's main part), and every trial is recorded with
    # `reserve=True` under trial ids of its own.
    reserve: bool = False
    exclude: SearchSpace | None = None
    # Check the first result for the objective and stop the run if it is missing (set while the
    # run has no completed trial: later, the objective is known to be logged).
    check_objective: bool = False
    # With an epoch budget (fidelity.total): the run's budget, opened by the loop for this part of the
    # round and kept up to date as trials are recorded. Every engine asks :meth:`can_start` before
    # each proposal; while it says no, it proposes nothing and ends the round once no trial is
    # running (in one process that is at the first no). An engine whose rounds other processes join
    # hands them ``epochs.allowance()`` and applies the same rule to their starts (the Optuna engine:
    # shared_study.take_slot, under the claims lock).
    epochs: "EpochBudget | None" = None

    def __post_init__(self) -> None:
        if self.kind not in ROUND_KINDS:
            raise ValueError(f"round kind must be one of {', '.join(ROUND_KINDS)}, got {self.kind!r}")

    def can_start(self, running: int = 0) -> bool:
        """Whether the round may start another trial (always, without an epoch budget)."""
        return self.epochs is None or self.epochs.may_start(running)


class Engine(abc.ABC):
    """One library that runs rounds. Options (a storage URL, ...) go to the constructor, which
    refuses those the engine does not take with a one-line ``ValueError``."""

    name: ClassVar[str]
    """The name in configs, ``run.json`` and ``--engine``."""

    supports_workers: ClassVar[bool] = False
    """Whether ``refiner worker`` processes can join its rounds."""

    @abc.abstractmethod
    def run_round(self, spec: RoundSpec, on_trial: TrialCallback) -> int:
        """Run up to ``spec.budget`` new trials, none proposed once ``spec.can_start()`` says no, passing each finished one to ``on_trial`` as soon
        as it finishes (record first: a resume trusts only what ``on_trial`` received). Failed
        trials are reported too, as FAILED; only :class:`~refiner.engines.evaluation.FirstTrialError`
        may end the round early. Returns how many trials were reported."""

    @abc.abstractmethod
    def round_label(self, round_index: int, space: SearchSpace) -> str:
        """How the round searches, for people: ``"random search"``, ``"Optuna TPE"``."""

    def options(self) -> dict[str, Any]:
        """The engine's settings a resumed run must keep (recorded in ``run.json``)."""
        return {}

    def prepare(self, run_root: Path) -> None:
        """Refuse, before the run folder is touched, what would fail later (an unreachable server)."""

    def running(self, run: RunContext) -> ContextManager[None]:
        """Held for the whole run (the coordinator's heartbeat for workers); nothing by default."""
        return contextlib.nullcontext()

    def close(self, run: RunContext, state: str, message: str | None = None) -> None:
        """The run ``finished`` or ``stopped``: tell whoever takes part (workers); nothing by default."""

    def storage_location(self, run: RunContext) -> str | None:
        """Where the engine keeps state outside the run folder, named in disk-full errors."""
        return None
