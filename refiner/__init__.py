"""refiner: multi-round hyperparameter search refinement on KerasTuner and Optuna.

A coarse random round, a surrogate that finds the promising region, a narrowed space with one
explained decision per hyperparameter, then Bayesian rounds on it, warm-started. The README's
"Architecture" section maps the modules.
"""

from refiner.errors import RefinerError, ValidationError
from refiner.fidelity import Fidelity
from refiner.space import Boolean, Choice, Condition, Fixed, Float, Int, SearchSpace
from refiner.trial import Objective, Trial, TrialState

__all__ = [
    "Refiner",
    "Fidelity",
    "SearchSpace",
    "Float",
    "Int",
    "Choice",
    "Boolean",
    "Fixed",
    "Condition",
    "Objective",
    "Trial",
    "TrialState",
    "RefinerError",
    "ValidationError",
]

__version__ = "0.1.0"


def __getattr__(name: str):
    # The loop imports scikit-learn and, through the engines, KerasTuner or Optuna once a round
    # runs: `import refiner` stays quick for the CLI's config checks and the review app.
    if name == "Refiner":
        from refiner.loop import Refiner

        return Refiner
    raise AttributeError(f"module 'refiner' has no attribute {name!r}")
