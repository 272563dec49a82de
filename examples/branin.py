"""The Branin function: a classic two-parameter test of hyperparameter search.

Three global minima, all 0.397887: (-pi, 12.275), (pi, 2.275) and (9.42478, 2.475), on the domain
x1 in [-5, 10], x2 in [0, 15] (``branin_space.json``). Run it with::

    refiner run examples/branin.toml
"""

from __future__ import annotations

import math

__all__ = ["branin", "MINIMUM"]

MINIMUM = 0.397887

# Standard constants (Dixon & Szego 1978; as in the Surjanovic & Bingham test-function library).
_A = 1.0
_B = 5.1 / (4 * math.pi**2)
_C = 5 / math.pi
_R = 6.0
_S = 10.0
_T = 1 / (8 * math.pi)


def branin(params: dict) -> float:
    """Branin at ``params["x1"], params["x2"]``; lower is better."""
    x1 = float(params["x1"])
    x2 = float(params["x2"])
    return _A * (x2 - _B * x1**2 + _C * x1 - _R) ** 2 + _S * (1 - _T) * math.cos(x1) + _S
