"""Plan the runs, execute them (in a process pool), and turn raw runs into per-budget results.

A *run* is one optimizer on one problem with one seed at one trial budget. Refiner's schedule
depends on the budget, so it runs once per budget; every other optimizer runs once at the largest
budget and its result at a smaller budget is read off its incumbent curve (the issue's rule).

A *result* is a run seen at one budget: the best value after that many trials, its regret
``best - f_star``, and the run's wall, objective and orchestration time up to that trial.
``f_star`` per problem is the smaller of its known or reference optimum and the best value any
run reached, so regret is never negative (see :mod:`refiner.bench.problems`).

On a noisy problem the optimizer's best is the configuration with the best *observed* (noisy)
value, as it would report it, and what that is worth is its *noiseless* value: the best value and
regret after n trials are the noiseless value of the configuration best by observation among the
first n (:func:`incumbent`), so a lucky draw does not count as progress. ``f_star`` and the best
value any run reached are noiseless too.

Workers are spawned processes, each limited to one thread (BLAS, OpenMP, TensorFlow), so
``jobs`` workers use ``jobs`` cores; TensorFlow and the optimizers are imported once per worker,
before the clock starts on any run.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import subprocess
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from refiner.bench.optimizers import OPTIMIZERS, get_optimizer
from refiner.bench.problems import get_problem

__all__ = ["Task", "plan", "execute", "run_tasks", "worker_pool", "assemble", "incumbent", "code_version",
           "other_code"]

log = logging.getLogger(__name__)

_ONE_THREAD = {
    "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
}


@dataclass(frozen=True)
class Task:
    problem: str
    optimizer: str
    seed: int
    budget: int
    options: str = ""  # JSON of keyword arguments for the optimizer (refiner's rounds/narrowing), or ""

    @property
    def key(self) -> str:
        return f"{self.problem}/{self.optimizer}/seed{self.seed}/budget{self.budget}"


def plan(problems: Sequence[str], optimizers: Sequence[str], budgets: Sequence[int], seeds: Sequence[int],
         refiner_options: dict[str, Any] | None = None) -> list[Task]:
    """Every run the benchmark needs, the most expensive first (so the pool ends evenly)."""
    largest = max(budgets)
    options = json.dumps(refiner_options, sort_keys=True) if refiner_options else ""
    tasks = []
    for problem_name in problems:
        problem = get_problem(problem_name)
        for name in optimizers:
            optimizer = get_optimizer(name)
            if not optimizer.applies_to(problem):
                continue
            for seed in seeds:
                for budget in (sorted(budgets) if optimizer.knows_budget else [largest]):
                    tasks.append(Task(problem_name, name, seed, budget, options if name == "refiner" else ""))

    def cost(t: Task) -> float:
        return get_problem(t.problem).cost * get_optimizer(t.optimizer).cost * t.budget

    return sorted(tasks, key=lambda t: (-cost(t), t.key))


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The code a run is made with: the checkout's commit, ``+dirty`` when ``refiner/`` has uncommitted
    changes, or ``refiner <version>`` outside a git checkout. A bench resumed in a later session keeps
    runs made by earlier code, so each run says which (its method may have changed since)."""
    package = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(package), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(package), "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        from refiner import __version__

        return f"refiner {__version__}"
    return commit + ("+dirty" if dirty else "")


def other_code(runs: Sequence[dict[str, Any]]) -> str | None:
    """A line saying how many of ``runs`` (kept by a resume) were made by code other than this one's, or None."""
    now = code_version()
    others = sorted({r.get("code", "unrecorded") for r in runs} - {now})
    if not others:
        return None
    n = sum(r.get("code", "unrecorded") != now for r in runs)
    return (f"{n} of the {len(runs)} kept runs were made by other code ({', '.join(others)}; now {now}): "
            f"their results stand as they were measured")


def _quiet_worker() -> None:
    """Per worker: one thread per library, library logging at WARNING, heavy imports done now."""
    os.environ.update(_ONE_THREAD)
    logging.getLogger().setLevel(logging.WARNING)
    for name in ("refiner", "keras_tuner", "tensorflow", "absl", "optuna", "bayes_opt"):
        logging.getLogger(name).setLevel(logging.WARNING)
    _warm_imports()
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    # Stock KerasTuner's GP warns about length scales at their bounds on most fits: thousands of lines.
    warnings.simplefilter("ignore", ConvergenceWarning)
    threadpool_limits(limits=1)


def _warm_imports() -> None:
    """Import what the runs use now, so no run's clock pays for it (TensorFlow takes seconds)."""
    import sklearn.ensemble  # noqa: F401  - loads OpenMP, so that the limit below reaches it
    import sklearn.gaussian_process  # noqa: F401
    import sklearn.svm  # noqa: F401

    with contextlib.suppress(ImportError):
        import keras_tuner  # noqa: F401  - imports TensorFlow: seconds, once, outside any run
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        import refiner.loop  # noqa: F401
        import refiner.engines.keras_tuner  # noqa: F401
    with contextlib.suppress(ImportError):
        import bayes_opt  # noqa: F401


def execute(task: Task) -> dict[str, Any]:
    """Run one task in a fresh temporary folder; an exception becomes an ``error`` field, not a crash."""
    problem = get_problem(task.problem)
    optimizer = get_optimizer(task.optimizer)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="refiner-bench-") as tmp:
        try:
            record = optimizer.run(problem, task.budget, task.seed, Path(tmp), **json.loads(task.options or "{}"))
        except Exception as exc:  # one broken run must not lose the hour the others took
            record = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=8)}
    record.update(asdict(task), task_seconds=time.perf_counter() - started)
    return record


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for spawned workers, and restore the parent's afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_tasks(tasks: Sequence[Task], jobs: int,
              on_done: Callable[[int, int, dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Execute ``tasks``; ``jobs=1`` runs them in this process (no TensorFlow start-up per worker)."""
    records: list[dict[str, Any]] = []

    def done(record: dict[str, Any]) -> None:
        records.append(record)
        if on_done is not None:
            on_done(len(records), len(tasks), record)

    if jobs <= 1:
        from threadpoolctl import threadpool_limits

        _warm_imports()
        with threadpool_limits(limits=1):
            for task in tasks:
                done(execute(task))
        return records
    with worker_pool(jobs, execute, tasks) as futures:
        for future in as_completed(futures):
            done(future.result())
    return records


@contextlib.contextmanager
def worker_pool(jobs: int, function: Callable[..., Any], calls: Sequence[Any]) -> Iterator[list[Any]]:
    """``function(call)`` for every call in ``jobs`` spawned workers, one thread each, library logs
    quiet, heavy imports done before any call: the futures, in the order of ``calls``."""
    with _environment(_ONE_THREAD):
        # Spawned, not forked: a fork of a process that has loaded TensorFlow or OpenMP can hang.
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"), initializer=_quiet_worker)
        futures = [pool.submit(function, call) for call in calls]  # workers start (and copy the env) here
    try:
        yield futures
    except BaseException:
        # A failed call or Ctrl-C stops the bench now: the queued calls are dropped and the running
        # ones stopped (a worker outlives a KeyboardInterrupt in its call and would take the next).
        workers = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            worker.terminate()
        raise
    pool.shutdown(wait=True)


def incumbent(values: Sequence[float], true_values: Sequence[float] | None = None) -> list[float]:
    """After each trial, the value of the best configuration so far (non-finite values never become it).

    With ``true_values`` (a noisy problem), "best" is judged by the observed ``values`` and the
    answer is that configuration's noiseless value; without, both are ``values``."""
    truth = values if true_values is None else true_values
    if len(truth) != len(values):
        raise ValueError(f"{len(values)} observed values but {len(truth)} noiseless ones")
    out, best, worth = [], math.inf, math.inf
    for v, t in zip(values, truth):
        if math.isfinite(v) and v < best:
            best, worth = v, t
        out.append(worth)
    return out


def assemble(records: Sequence[dict[str, Any]], problems: Sequence[str], budgets: Sequence[int],
             reference: dict[str, tuple[float | None, str]]) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Per problem its ``f_star`` (with source), and one result per (run, budget) it answers for."""
    stars: dict[str, dict[str, Any]] = {}
    for name in problems:
        ref, source = reference[name]
        # Noiseless values: a noisy observation below f* is luck, not a better optimum.
        found = [v for r in records if r["problem"] == name and "values" in r
                 for v in r.get("true_values", r["values"]) if math.isfinite(v)]
        best_found = min(found) if found else None
        f_star, star_source = ref, source
        if best_found is not None and (ref is None or best_found < ref):
            f_star, star_source = best_found, (
                "best value found in this benchmark" + ("" if ref is None else f" (below the {source}, {ref:.6g})"))
        stars[name] = {"f_star": f_star, "f_star_source": star_source, "reference": ref, "reference_source": source,
                       "best_found": best_found}

    results = []
    for r in records:
        if "values" not in r:
            continue
        optimizer = OPTIMIZERS[r["optimizer"]]
        answers = [r["budget"]] if optimizer.knows_budget else [b for b in budgets if b <= r["budget"]]
        f_star = stars[r["problem"]]["f_star"]
        second_minimum = get_problem(r["problem"]).second_minimum
        curve = incumbent(r["values"], r.get("true_values"))
        observed = incumbent(r["values"]) if "true_values" in r else None  # the best noisy observation
        for b in answers:
            n = min(b, len(curve))
            if n == 0:
                continue
            full = n == len(curve)
            wall = r["wall_s"] if full else r["elapsed_s"][n - 1]
            objective = float(np.sum(r["objective_s"][:n]))
            best = curve[n - 1]
            results.append({
                "problem": r["problem"], "optimizer": r["optimizer"], "seed": r["seed"], "budget": b,
                "run_budget": r["budget"], "n_trials": n, "best_value": best, "f_star": f_star,
                "regret": best - f_star if math.isfinite(best) else None,
                "wall_s": wall, "objective_s": objective, "orchestration_s": wall - objective,
                **({"best_observed": observed[n - 1]} if observed is not None else {}),
                # below every other basin's floor: this run found the global basin
                **({"global_basin": bool(best < second_minimum)} if second_minimum is not None else {}),
                **({"contains_optimum": r["extra"].get("contains_optimum"),
                    "near_optimum": r["extra"].get("near_optimum"),
                    "volume_fraction": r["extra"].get("volume_fraction")} if r["optimizer"] == "refiner" else {}),
            })
    return stars, results
