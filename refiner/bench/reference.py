"""The reference "true optimum" of the training problems, computed once and shipped.

A training problem's minimum is unknown. Its stand-in is the best value of a search far larger
than any benchmark budget: ``samples`` uniform random configurations, then ``polish`` steps of a
local random search (Gaussian steps in the unit cube around the incumbent, shrinking on failure),
all seeded. The result goes into ``reference_optima.json`` beside this file::

    python -m refiner.bench.reference --problems svc_digits,hgb_breast_cancer

It depends on the scikit-learn version (recorded in the file), and it is a lower bound on the
truth only in the sense that nothing found so far beats it; the benchmark therefore measures
regret from the smaller of this value and the best value any optimizer reaches in the run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import sys
import time
from typing import Any, Mapping

import numpy as np

from refiner.bench.problems import REFERENCE_FILE, Problem, get_problem
from refiner.space import Boolean, Choice, Fixed, Float, Int, SearchSpace

__all__ = ["unit_to_params", "reference_search", "main"]

log = logging.getLogger(__name__)


def unit_to_params(space: SearchSpace, u: np.ndarray) -> dict[str, Any]:
    """A configuration from one point of the unit cube (one coordinate per parameter)."""
    out: dict[str, Any] = {}
    for p, x in zip(space, u):
        if isinstance(p, (Float, Int)):
            out[p.name] = p.from_unit(float(x))
        elif isinstance(p, (Choice, Boolean)):
            values = p.values
            out[p.name] = values[min(int(x * len(values)), len(values) - 1)]
        elif isinstance(p, Fixed):
            out[p.name] = p.value
    return out


def reference_search(problem: Problem, samples: int, polish: int, seed: int = 0) -> dict[str, Any]:
    """Random search plus local polish; returns the best value, its configuration and the counts."""
    rng = np.random.default_rng(seed)
    d = len(problem.space)
    best_u, best_value = None, float("inf")
    started = time.perf_counter()
    for i in range(samples):
        u = rng.uniform(size=d)
        value = problem.evaluate(unit_to_params(problem.space, u))
        if value < best_value:
            best_u, best_value = u, value
        if (i + 1) % 500 == 0:
            log.info("%s: %d random samples, best %.6g", problem.name, i + 1, best_value)
    assert best_u is not None
    sigma = 0.1
    for _ in range(polish):
        u = np.clip(best_u + rng.normal(0.0, sigma, size=d), 0.0, 1.0 - 1e-12)
        value = problem.evaluate(unit_to_params(problem.space, u))
        if value < best_value:
            best_u, best_value, sigma = u, value, min(0.2, sigma * 1.5)
        else:
            sigma = max(0.005, sigma * 0.97)
    return {
        "best_value": best_value,
        "best_params": unit_to_params(problem.space, best_u),
        "random_samples": samples,
        "polish_steps": polish,
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("scikit-learn", "numpy", "scipy"):
        out[dist] = metadata.version(dist)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="compute the training problems' reference optima")
    parser.add_argument("--problems", default="svc_digits,hgb_breast_cancer")
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--polish", type=int, default=500)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # One core, as in the benchmark's workers; load the OpenMP/BLAS users first so the limit reaches them.
    import sklearn.ensemble  # noqa: F401
    import sklearn.svm  # noqa: F401
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    document: dict[str, Any] = json.loads(REFERENCE_FILE.read_text()) if REFERENCE_FILE.is_file() else {}
    document.setdefault("format_version", 1)
    document["method"] = (
        "uniform random search over the problem's space (samples), then a local random search around the "
        "incumbent (polish steps, Gaussian in the unit cube, step shrinking on failure); seed 0"
    )
    problems: dict[str, Mapping[str, Any]] = dict(document.get("problems", {}))
    for name in args.problems.split(","):
        problem = get_problem(name.strip())
        entry = reference_search(problem, args.samples, args.polish)
        entry.update(versions=_versions(), generated_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        problems[problem.name] = entry
        log.info("%s: reference best %.6g after %.0f s", problem.name, entry["best_value"], entry["seconds"])
        document["problems"] = problems
        tmp = REFERENCE_FILE.with_suffix(".tmp")
        tmp.write_text(json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n")
        os.replace(tmp, REFERENCE_FILE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
