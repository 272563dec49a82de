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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["Fidelity", "StoppingRule", "MIN_PEERS"]

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
    """

    name: str = "epochs"
    min: int = 1
    max: int = 27
    eta: int = 3

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

    @property
    def rungs(self) -> list[int]:
        """``min, min*eta, ...`` below ``max``, then ``max``: where a trial may be stopped (not at ``max``)."""
        out, budget = [], self.min
        while budget < self.max:
            out.append(budget)
            budget *= self.eta
        return [*out, self.max]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "min": self.min, "max": self.max, "eta": self.eta}

    @classmethod
    def coerce(cls, value: "Fidelity | Mapping[str, Any] | None") -> "Fidelity | None":
        if value is None or isinstance(value, Fidelity):
            return value
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - {"name", "min", "max", "eta"})
            if unknown:
                raise ValueError(f"fidelity.{unknown[0]}: not a fidelity setting (name, min, max, eta)")
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
