"""A run's search settings: checked once, with the same defaults from Python, a TOML config and the CLI.

``Refiner(...)`` and ``refiner run CONFIG`` both build a :class:`SearchSettings` with
:meth:`SearchSettings.create`, which is where every default lives and every rule is checked
(one ``ValueError`` line naming the setting). What a run was started with is recorded in
``run.json`` (``Refiner._settings``), and a resume with different settings is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from refiner.engines import DEFAULT_ENGINE
from refiner.fidelity import Fidelity
from refiner.narrowing import NarrowingConfig

__all__ = ["SearchSettings", "DEFAULTS", "INITIAL_SHARE", "split_budget"]

DEFAULTS: dict[str, Any] = {
    "rounds": 3,
    "trials_per_round": 10,
    "executions_per_trial": 1,
    "trial_retries": 0,
    "seed": 0,  # a seed, not "random": pass None for fresh randomness (KerasTuner turns 0 into a random seed)
    "engine": DEFAULT_ENGINE,
}
"""The defaults of ``Refiner(...)``, of a config's ``[search]`` table and of ``refiner run``."""

INITIAL_SHARE = 0.2
"""The random round's share of a total budget in :func:`split_budget`. Equal rounds spent a third
of the budget on random search; 20 % gave lower median regret on 6 of the 7 benchmark problems
at 60 trials (README, "Benchmark"), with the optimum kept inside as often."""

SEED_LIMIT = 2**31  # numpy and scikit-learn take seeds below 2**32; per-round seeds are derived from this one


def split_budget(total_trials: int, rounds: int = 3) -> tuple[int, int]:
    """``(initial_trials, trials_per_round)`` for a total budget: a random round of about
    :data:`INITIAL_SHARE` of it (at least 2 trials), the rest split equally over the Bayesian
    rounds, any remainder going to the random round."""
    if rounds < 1 or total_trials < rounds + 1:
        raise ValueError(f"a budget of {total_trials} trials cannot fill {rounds} rounds")
    if rounds == 1:
        return total_trials, total_trials
    per_round = max(1, int(round(total_trials * (1 - INITIAL_SHARE) / (rounds - 1))))
    per_round = min(per_round, (total_trials - 2) // (rounds - 1))
    return total_trials - per_round * (rounds - 1), per_round


@dataclass(frozen=True)
class SearchSettings:
    """How many rounds and trials, how each trial runs, how proposals are seeded, how ranges narrow.

    ``initial_trials`` is ``None`` when round 0 has ``trials_per_round`` trials like the others
    (recorded that way, as in runs made before it existed)."""

    rounds: int = DEFAULTS["rounds"]
    trials_per_round: int = DEFAULTS["trials_per_round"]
    initial_trials: int | None = None
    executions_per_trial: int = DEFAULTS["executions_per_trial"]
    trial_retries: int = DEFAULTS["trial_retries"]
    seed: int | None = DEFAULTS["seed"]
    narrowing: NarrowingConfig = field(default_factory=NarrowingConfig)
    fidelity: Fidelity | None = None  # pay in epochs: trials judged at rungs, hopeless ones stopped

    @classmethod
    def create(cls, *, rounds: int = DEFAULTS["rounds"], max_trials: int | None = None,
               trials_per_round: int | None = None, initial_trials: int | None = None,
               executions_per_trial: int = DEFAULTS["executions_per_trial"],
               trial_retries: int = DEFAULTS["trial_retries"], seed: int | None = DEFAULTS["seed"],
               narrowing: NarrowingConfig | Mapping[str, Any] | None = None,
               fidelity: Fidelity | Mapping[str, Any] | None = None) -> "SearchSettings":
        """Check every setting (``ValueError``: one line naming it) and fill the defaults.

        ``max_trials`` is a total budget over all rounds, split as :func:`split_budget` does
        unless ``trials_per_round`` or ``initial_trials`` give their part."""
        for name, value in (("rounds", rounds), ("executions_per_trial", executions_per_trial)):
            if not _is_int(value) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
        for name, value in (("max_trials", max_trials), ("trials_per_round", trials_per_round),
                            ("initial_trials", initial_trials)):
            if value is not None and (not _is_int(value) or value < 1):
                raise ValueError(f"`{name}` must be a positive integer or None, got {value!r}")
        if not _is_int(trial_retries) or trial_retries < 0:
            raise ValueError(f"`trial_retries` must be a non-negative integer, got {trial_retries!r}")
        if seed is not None and (not _is_int(seed) or not 0 <= seed < SEED_LIMIT):
            raise ValueError(f"`seed` must be an integer in [0, 2**31 - 1] or None, got {seed!r}")
        fidelity = Fidelity.coerce(fidelity)
        if fidelity is not None and fidelity.total is not None:
            if fidelity.total < rounds * fidelity.max:
                raise ValueError(f"fidelity.total: must be at least rounds x fidelity.max = {rounds} x {fidelity.max} "
                                 f"= {rounds * fidelity.max} so every round can train a trial to the end, "
                                 f"got {fidelity.total}")
            if max_trials is None and trials_per_round is None and initial_trials is None:
                # Paying in epochs alone: the trial counts only cap the rounds, at the most trials the
                # epochs could buy (each trains at least fidelity.min); the epochs end the rounds.
                max_trials = max(rounds + 1, fidelity.total // fidelity.min)
        if max_trials is not None:
            initial_trials, trials_per_round = _schedule(max_trials, rounds, initial_trials, trials_per_round)
        elif trials_per_round is None:
            trials_per_round = DEFAULTS["trials_per_round"]
        if not isinstance(narrowing, NarrowingConfig):
            narrowing = NarrowingConfig.from_dict(dict(narrowing or {}))
        return cls(rounds=rounds, trials_per_round=trials_per_round, initial_trials=initial_trials,  # type: ignore[arg-type]
                   executions_per_trial=executions_per_trial, trial_retries=trial_retries, seed=seed,
                   narrowing=narrowing, fidelity=fidelity)

    def arguments(self) -> dict[str, Any]:
        """As keyword arguments of ``Refiner(...)``, which gives back these settings."""
        return {"rounds": self.rounds, "trials_per_round": self.trials_per_round, "initial_trials": self.initial_trials,
                "executions_per_trial": self.executions_per_trial, "trial_retries": self.trial_retries,
                "seed": self.seed, "narrowing": self.narrowing, "fidelity": self.fidelity}

    def budget(self, k: int) -> int:
        """Round ``k``'s trial count (with ``fidelity.total``, the most trials; the epochs may end it first)."""
        return self.initial_trials if k == 0 and self.initial_trials is not None else self.trials_per_round

    @property
    def epoch_total(self) -> int | None:
        """The run's epoch budget (``fidelity.total``), or ``None``."""
        return None if self.fidelity is None else self.fidelity.total


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _schedule(max_trials: int, rounds: int, initial: int | None, per_round: int | None) -> tuple[int, int]:
    """``(initial_trials, trials_per_round)`` for a total of ``max_trials``: the benchmark's split,
    with a part given explicitly kept and the other filled so the rounds add up to the total."""
    if rounds == 1:
        if initial is not None and initial != max_trials:
            raise ValueError(f"`initial_trials` ({initial}) must equal `max_trials` ({max_trials}) with one round")
        return max_trials, per_round if per_round is not None else max_trials
    if initial is None and per_round is None:
        try:
            return split_budget(max_trials, rounds)
        except ValueError:
            raise ValueError(f"`max_trials` must give at least 2 trials to the random round and 1 to each of the "
                             f"other {rounds - 1} rounds, got {max_trials}") from None
    if initial is None:
        initial = max_trials - per_round * (rounds - 1)  # type: ignore[operator]
        if initial < 1:
            raise ValueError(f"`max_trials` ({max_trials}) is too small for {rounds - 1} rounds of "
                             f"`trials_per_round` ({per_round}) after the random round")
    elif per_round is None:
        per_round, rest = divmod(max_trials - initial, rounds - 1)
        if per_round < 1 or rest:
            raise ValueError(f"`max_trials` ({max_trials}) minus `initial_trials` ({initial}) must split into "
                             f"{rounds - 1} equal rounds of at least one trial")
    if initial + per_round * (rounds - 1) != max_trials:
        raise ValueError(f"`initial_trials` ({initial}) + {rounds - 1} x `trials_per_round` ({per_round}) must add up "
                         f"to `max_trials` ({max_trials}); give two of the three")
    return initial, per_round
