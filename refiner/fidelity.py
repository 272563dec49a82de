"""Paying in epochs: a trial's fidelity (how much it trains) and the rule that stops hopeless ones early.

With a :class:`Fidelity`, a Keras trial trains for at most ``max`` epochs and reports its
objective after every epoch; a plain function is called as ``f(params, budget)`` at each rung's
budget in turn (its value after ``budget`` epochs, as a learning curve gives it). At the *rungs*
``min, min*eta, min*eta**2, ... , max`` the :class:`StoppingRule` compares the trial with every
trial that reached the same rung before it and stops it unless it is in the best ``1/eta`` of
them: the stopping variant of asynchronous successive halving (ASHA; Li et al., MLSys 2020,
Algorithm 2 with "stop" for "do not promote"; Optuna's ``SuccessiveHalvingPruner`` is the same
rule). Asynchronous, it needs no brackets and no synchronisation, so it works the same inside a
KerasTuner or an Optuna round and with workers.

A stopped trial is recorded with status ``stopped``, the fidelity it reached and its curve. It is
never reported as best. It is evidence for the surrogate at the value it had when stopped: a
lagging trial's early value is worse than the finished trials' values, so it ranks low, which is
what its stopping already said (BOHB, Falkner et al. ICML 2018, also models budgets separately;
this simpler reading is measured in the README).

**An epoch budget.** ``Fidelity(..., total=N)`` caps what the whole run trains: the loop spreads
``N`` over the rounds as it spreads trials (:class:`EpochBudget`), and a new trial starts only
while the epochs recorded so far plus those committed to trials still running stay below the
round's cumulative share. Every trial starts with at most ``N - 1`` epochs spent (committed ones
included), so the run ends with at most ``N - 1 + M`` epochs recorded, ``M`` being one trial's most
(``max * executions_per_trial * (1 + trial_retries)``). ``refiner worker`` processes are held by the
same rule (:class:`EpochAllowance`), checked under the claims lock of the round they share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["Fidelity", "StoppingRule", "EpochBudget", "EpochAllowance", "MIN_PEERS", "trial_epochs"]

MIN_PEERS = 3
"""A rung judges a trial only once this many trials (itself included) have reached it: with fewer,
"the best third" is noise. ASHA promotes nothing until ``eta`` trials sit at a rung, for the same
reason; 3 is ``eta``'s usual value."""


@dataclass(frozen=True)
class Fidelity:
    """How much a trial trains: ``max`` epochs at most, judged at rungs ``min * eta**k``.

    Args:
        name: what the budget counts; ``"epochs"`` for a Keras hypermodel.
        min: the first rung (the least a trial trains before it can be stopped).
        max: the most a trial trains (a Keras trial's ``epochs``).
        eta: the rungs' ratio; a trial continues past a rung when it is in the best ``1/eta``.
        total: the epochs the whole run may train (every trial, every execution, every round);
            ``None``: no cap beyond the trial counts. See :class:`EpochBudget` for the guarantee.
    """

    name: str = "epochs"
    min: int = 1
    max: int = 27
    eta: int = 3
    total: int | None = None

    def __post_init__(self) -> None:
        for field_name in ("min", "max", "eta"):
            value = getattr(self, field_name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"fidelity.{field_name}: must be a positive integer, got {value!r}")
        if self.min > self.max:
            raise ValueError(f"fidelity.min: must not exceed fidelity.max ({self.max}), got {self.min}")
        if self.eta < 2:
            raise ValueError(f"fidelity.eta: must be at least 2 (each rung keeps the best 1/eta), got {self.eta}")
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"fidelity.name: must be a non-empty string, got {self.name!r}")
        if self.total is not None:
            if not isinstance(self.total, int) or isinstance(self.total, bool) or self.total < 1:
                raise ValueError(f"fidelity.total: must be a positive integer (epochs for the whole run), "
                                 f"got {self.total!r}")
            if self.total < self.max:
                raise ValueError(f"fidelity.total: must be at least fidelity.max ({self.max}) so one trial can "
                                 f"train to the end, got {self.total}")

    @property
    def rungs(self) -> list[int]:
        """``min, min*eta, ...`` below ``max``, then ``max``: where a trial may be stopped (not at ``max``)."""
        out, budget = [], self.min
        while budget < self.max:
            out.append(budget)
            budget *= self.eta
        return [*out, self.max]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "min": self.min, "max": self.max, "eta": self.eta}
        if self.total is not None:
            out["total"] = self.total  # absent without one, as in runs made before it existed
        return out

    @classmethod
    def coerce(cls, value: "Fidelity | Mapping[str, Any] | None") -> "Fidelity | None":
        if value is None or isinstance(value, Fidelity):
            return value
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - {"name", "min", "max", "eta", "total"})
            if unknown:
                raise ValueError(f"fidelity.{unknown[0]}: not a fidelity setting (name, min, max, eta, total)")
            return cls(**dict(value))
        raise ValueError(f"`fidelity` must be a refiner.Fidelity or a dict, got {value!r}")


class StoppingRule:
    """ASHA's rung rule over every curve seen so far (finished and stopped trials alike).

    ``observe`` takes a finished trial's curve; ``should_stop`` judges a running trial at a rung.
    The comparison counts the trials *already* at that rung plus the one being judged, so a trial
    is never stopped by its own later values and a resumed round decides as the first run did.
    """

    def __init__(self, fidelity: Fidelity, direction: str):
        self.fidelity = fidelity
        self.direction = direction
        self._at: dict[int, list[float]] = {b: [] for b in fidelity.rungs}

    def observe(self, curve: Iterable[Sequence[float]] | None) -> None:
        """Record a finished trial's ``[[budget, value], ...]`` at the rungs it reached."""
        for budget, value in curve or ():
            budget = int(budget)
            if budget in self._at and math.isfinite(value):
                self._at[budget].append(float(value))

    def should_stop(self, budget: int, value: float) -> bool:
        """Whether a trial whose objective is ``value`` after ``budget`` stops there."""
        if budget not in self._at or budget >= self.fidelity.max:
            return False  # only rungs below the last one judge
        if not math.isfinite(value):
            return True  # diverged: nothing to wait for
        peers = [*self._at[budget], value]
        if len(peers) < MIN_PEERS:
            return False
        keep = max(1, len(peers) // self.fidelity.eta)  # the best 1/eta continue (ASHA's top_k)
        ranked = sorted(peers, reverse=self.direction == "max")
        threshold = ranked[keep - 1]
        return value < threshold if self.direction == "max" else value > threshold


def trial_epochs(trial: Any) -> int:
    """The epochs a recorded trial trained: its ``epochs`` (every execution and retry, failed trials
    too), or for a record made before that field existed the fidelity it reached. ``trial``: a
    :class:`~refiner.trial.Trial` or its record as a dict (a ``trials.jsonl`` line)."""
    if isinstance(trial, Mapping):
        epochs, fidelity = trial.get("epochs"), trial.get("fidelity")
    else:
        epochs, fidelity = getattr(trial, "epochs", None), getattr(trial, "fidelity", None)
    return int(epochs) if epochs is not None else int(fidelity or 0)


@dataclass(frozen=True)
class EpochAllowance:
    """What one part of a round may spend, as every participant in it applies the rule.

    ``limit``: the run's cumulative share by the end of the part; ``spent``: the run's epochs
    recorded when the part opened; ``per_trial``: one trial's most. :meth:`may_start` is *the*
    rule of the epoch budget: the loop's :class:`EpochBudget` asks it with the epochs it has
    recorded since (nothing, as it folds them into ``spent``), and every claim in an Optuna round,
    the coordinator's and each ``refiner worker``'s, with the epochs of the results stored in the
    round's shared study and the claimed trials still running there, under the claims lock
    (:func:`refiner.engines.optuna.shared_study.may_start`).
    """

    limit: int
    spent: int
    per_trial: int

    def may_start(self, running: int = 0, recorded: int = 0) -> bool:
        """Whether a new trial may start with ``recorded`` epochs recorded since the part opened and
        ``running`` trials still training (each may train ``per_trial`` epochs)."""
        return self.spent + int(recorded) + max(0, int(running)) * self.per_trial < self.limit

    def to_dict(self) -> dict[str, int]:
        return {"limit": self.limit, "spent": self.spent, "per_trial": self.per_trial}

    @classmethod
    def from_dict(cls, value: Mapping[str, Any] | None) -> "EpochAllowance | None":
        if not value:
            return None
        return cls(int(value["limit"]), int(value["spent"]), int(value["per_trial"]))


class EpochBudget:
    """The run's epoch budget (``fidelity.total``), spread over the rounds, and the rule that starts trials.

    Round ``k`` may bring the run's epochs up to its cumulative share ``total * (w_0 + ... + w_k) /
    sum(w)``, the weights ``w`` being the rounds' trial counts (so the epochs are split as the trials
    are: a fifth to the random round by default). A part of a round (the main part, then its
    exploration reserve) has its own cumulative limit in the same way. :meth:`may_start` lets a
    new trial start only while ``spent + running * per_trial < limit``: the epochs of every
    recorded trial of the run plus the most that trials still running elsewhere (workers) may
    train. Because cumulative limits are compared with the run's whole spend, an overshoot in one
    round is taken out of the next, and the last round's limit is ``total`` itself.

    The guarantee: a trial starts only while the epochs recorded plus ``per_trial`` for every trial
    still running stay at most ``total - 1``, so the run records at most ``total - 1 + per_trial``
    epochs, ``per_trial`` being one trial's most (``max * executions_per_trial * (1 +
    trial_retries)``). With ``refiner worker`` processes the same holds: the Optuna engine writes
    the part's :meth:`allowance` into the round's shared study, and every participant, coordinator
    and workers alike, asks :meth:`EpochAllowance.may_start` with the epochs of the results stored
    there and the claimed trials still running there, under the claims lock that also guards the
    trial budget, so two cannot both take the last epochs. A trial killed with its process is not
    recorded and its epochs are not counted: the resumed run trains it again.
    """

    def __init__(self, total: int, weights: Sequence[int], per_trial: int):
        if total < 1 or not weights or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError("an epoch budget needs a positive total and round weights")
        self.total = int(total)
        self.weights = [int(w) for w in weights]
        self.per_trial = int(per_trial)
        self.spent = 0
        self.limit = self.total

    def cumulative(self, k: int, part: float = 1.0) -> int:
        """The run's epochs allowed by the end of round ``k`` (``part``: the share of round ``k``'s
        weight given so far, e.g. its main part before the reserve)."""
        if k >= len(self.weights) - 1 and part >= 1.0:
            return self.total
        before = sum(self.weights[:k])
        return int(round(self.total * (before + part * self.weights[k]) / sum(self.weights)))

    def share(self, k: int) -> int:
        """Round ``k``'s own share of the epochs."""
        return self.cumulative(k) - (self.cumulative(k - 1) if k > 0 else 0)

    def open(self, k: int, spent: int, part: float = 1.0) -> int:
        """Start a part of round ``k`` with ``spent`` epochs recorded so far; returns its limit."""
        self.spent = int(spent)
        self.limit = self.cumulative(k, part)
        return self.limit

    def record(self, epochs: int) -> None:
        """A trial was recorded after training ``epochs``."""
        self.spent += int(epochs)

    def allowance(self) -> EpochAllowance:
        """The current part's limit and the epochs spent so far, for processes that share the part."""
        return EpochAllowance(self.limit, self.spent, self.per_trial)

    def may_start(self, running: int = 0) -> bool:
        """Whether a new trial may start, with ``running`` trials still training elsewhere."""
        return self.allowance().may_start(running)
