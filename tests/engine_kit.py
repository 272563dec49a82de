"""Building one round for an engine, shared by the engine tests and the contract suite."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from refiner.engines.base import RoundSpec, RunContext
from refiner.engines.evaluation import Evaluation
from refiner.space import SearchSpace
from refiner.trial import Objective

LOSS = Objective("loss", "min")


def round_spec(workdir: Path, space: SearchSpace, function: Callable[[dict[str, Any]], Any], budget: int, *,
               kind: str = "random", round_index: int | None = None, seed: int | None = 0,
               objective: Objective = LOSS, trial_retries: int = 0, run_id: str = "run-1", name: str = "t",
               **fields: Any) -> RoundSpec:
    """A round of ``function`` over ``space``; round 0 when random, round 1 otherwise, unless given."""
    Path(workdir).mkdir(parents=True, exist_ok=True)
    evaluation = Evaluation(objective, function=function, trial_retries=trial_retries, seed=seed)
    return RoundSpec(
        run=RunContext(name=name, root=Path(workdir), run_id=run_id, target="tests:function"),
        round_index=(0 if kind == "random" else 1) if round_index is None else round_index,
        kind=kind, space=space, objective=objective, budget=budget, evaluation=evaluation,
        workdir=Path(workdir) / "kt", seed=seed, **fields)
