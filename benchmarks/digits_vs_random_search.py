"""Stock KerasTuner RandomSearch on the digits CNN at refiner's total trial budget, side by side.

    python benchmarks/digits_vs_random_search.py [--run-dir runs/digits_cnn] [--out DIR]

Reads the finished refiner run (settings and best score from its run folder), runs a plain
``keras_tuner.RandomSearch`` with the same hypermodel, data, fit arguments, seed and total trial
count, and prints both best validation accuracies and wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "digits_cnn")
    parser.add_argument("--out", type=Path, default=None, help="KerasTuner folder (default: a temporary one)")
    args = parser.parse_args()

    from refiner.config import load_run_config
    from refiner.store import RunStore

    store = RunStore(args.run_dir)
    run = store.read_run()
    config = load_run_config(run["settings"]["config"])
    trials = store.all_trials()
    budget = len(trials)
    refiner_wall = _wall_time(store)

    import keras_tuner as kt

    build_model = config.resolve_target()
    data = config.resolve_data()()
    out = args.out or Path(tempfile.mkdtemp(prefix="kt-random-"))
    tuner = kt.RandomSearch(build_model, objective=kt.Objective(config.objective.name, config.objective.direction),
                            max_trials=budget, executions_per_trial=config.executions_per_trial,
                            seed=(config.seed or 0) + 1,  # KerasTuner turns seed 0 into a random seed
                            directory=str(out), project_name="random", overwrite=True)
    started = time.perf_counter()
    tuner.search(**data, **config.fit, verbose=0)
    random_wall = time.perf_counter() - started
    random_best = tuner.oracle.get_best_trials(1)[0].score
    completed = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]

    best = run["state"]["best"]
    rows = [
        ("refiner (random + 2 Bayesian rounds)", budget, best["score"] if best else None, refiner_wall),
        ("KerasTuner RandomSearch", len(completed), random_best, random_wall),
    ]
    print(f"{'optimizer':40s} {'trials':>6s} {'best ' + config.objective.name:>18s} {'wall s':>8s}")
    for name, n, score, wall in rows:
        print(f"{name:40s} {n:6d} {score:18.4f} {wall:8.1f}")
    print(json.dumps({"refiner": rows[0][2], "random_search": rows[1][2], "trials": budget}))
    return 0


def _wall_time(store) -> float:
    """Seconds from the run's first to its last event (the run's own wall time, resumes included)."""
    import datetime as dt

    events = store.read_events()
    stamps = [dt.datetime.fromisoformat(e["time"]) for e in events]
    return (max(stamps) - min(stamps)).total_seconds()


if __name__ == "__main__":
    sys.exit(main())
