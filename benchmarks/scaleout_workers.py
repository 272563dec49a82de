"""Round wall time with 1 vs N workers, and the coordination overhead per trial, against stock Optuna.

    python benchmarks/scaleout_workers.py [--storage postgresql://…] [--workers 1,3,8] [--sleep 1.0] [--trials 24]

The objective sleeps a fixed time per trial, so every second beyond ``trials × sleep / workers``
is coordination. For each worker count it runs ``refiner run --no-trials`` (the coordinator runs
no trials) plus that many ``refiner worker`` processes, and, as the yardstick, the same number of
processes running stock ``study.optimize`` with TPE on one shared study, capped at the same trial
count with ``MaxTrialsCallback``. Wall times come from the storage's trial timestamps (first
start to last finish), so process start-up is left out of both. Without ``--storage`` a
throw-away PostgreSQL server is started with ``scripts/throwaway-postgres``.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default=None, help="PostgreSQL URL (default: start a throw-away server)")
    parser.add_argument("--workers", default="1,3,8")
    parser.add_argument("--sleep", type=float, default=1.0, help="seconds per trial (default: 1.0)")
    parser.add_argument("--trials", type=int, default=24, help="trials per round (default: 24)")
    parser.add_argument("--rounds", type=int, default=2, help="refiner rounds (default: 2: random, then TPE)")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]

    datadir = None
    storage = args.storage
    if storage is None:
        datadir = tempfile.mkdtemp(prefix="refiner-bench-pg-", dir="/tmp")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        storage = subprocess.run([str(ROOT / "scripts" / "throwaway-postgres"), "start", datadir, str(port)],
                                 check=True, capture_output=True, text=True).stdout.strip()
    try:
        work = Path(tempfile.mkdtemp(prefix="refiner-scaleout-"))
        rows = []
        for n in counts:
            rows += _refiner_rounds(work / f"refiner-{n}", storage, n, args)
            rows.append(_stock_optuna(work / f"stock-{n}", storage, n, args))
        _print(rows, args)
    finally:
        if datadir is not None:
            subprocess.run([str(ROOT / "scripts" / "throwaway-postgres"), "stop", datadir], check=False)


def _write_project(folder: Path, name: str, args: argparse.Namespace) -> Path:
    folder.mkdir(parents=True)
    (folder / "sleepy.py").write_text(textwrap.dedent(f"""
        import time

        def bowl(p):
            time.sleep({args.sleep})
            return (p["x"] - 1.0) ** 2 + (p["y"] + 2.0) ** 2
    """))
    (folder / "space.json").write_text(json.dumps({"format_version": 1, "parameters": [
        {"name": "x", "type": "float", "low": -5.0, "high": 5.0},
        {"name": "y", "type": "float", "low": -5.0, "high": 5.0}]}))
    config = folder / "run.toml"
    config.write_text(textwrap.dedent(f"""
        name = "{name}"
        directory = "runs"
        function = "sleepy:bowl"
        space = "space.json"
        engine = "optuna"
        [objective]
        name = "loss"
        direction = "min"
        [search]
        rounds = {args.rounds}
        trials_per_round = {args.trials}
        seed = 0
    """))
    return config


def _refiner_rounds(folder: Path, storage: str, n: int, args: argparse.Namespace) -> list[dict]:
    import optuna

    from refiner.engines.optuna import shared_study as shared

    name = f"bench{int(time.time())}w{n}"
    config = _write_project(folder, name, args)
    cli = [sys.executable, "-m", "refiner.cli"]
    coordinator = subprocess.Popen([*cli, "run", str(config), "--storage", storage, "--no-trials", "--quiet"],
                                   cwd=folder, stdout=subprocess.DEVNULL)
    run_dir = folder / "runs" / name
    while not (run_dir / "run.json").exists():
        time.sleep(0.1)
    workers = [subprocess.Popen([*cli, "worker", str(run_dir), "--storage", storage, "--quiet", "--wait", "120"],
                                cwd=folder, stdout=subprocess.DEVNULL) for _ in range(n)]
    if coordinator.wait() != 0:
        raise SystemExit(f"the coordinator failed (exit {coordinator.returncode})")
    for w in workers:
        w.wait()
    rows = []
    for k in range(args.rounds):
        study = optuna.load_study(study_name=f"{name}-round-{k}", storage=shared.normalise_url(storage))
        ran = [t for t in study.trials if shared.RECORD in t.user_attrs and not t.user_attrs.get(shared.KNOWN)]
        inside = sum(json.loads(t.user_attrs[shared.RECORD])["duration_s"] for t in ran)
        rows.append(_row(f"refiner round {k} ({'random' if k == 0 else 'TPE'})", n, ran, inside))
    return rows


def _stock_optuna(folder: Path, storage: str, n: int, args: argparse.Namespace) -> dict:
    import optuna

    from refiner.engines.optuna import shared_study as shared

    folder.mkdir(parents=True)
    name = f"stock{int(time.time())}w{n}"
    url = shared.normalise_url(storage)
    optuna.create_study(study_name=name, storage=url, direction="minimize")
    script = textwrap.dedent(f"""
        import time, optuna
        from optuna.study import MaxTrialsCallback
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        def bowl(trial):
            x = trial.suggest_float("x", -5.0, 5.0); y = trial.suggest_float("y", -5.0, 5.0)
            time.sleep({args.sleep})
            return (x - 1.0) ** 2 + (y + 2.0) ** 2
        study = optuna.load_study(study_name={name!r}, storage={url!r}, sampler=optuna.samplers.TPESampler())
        study.optimize(bowl, callbacks=[MaxTrialsCallback({args.trials}, states=None)])
    """)
    processes = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(n)]
    for p in processes:
        if p.wait() != 0:
            raise SystemExit("a stock Optuna process failed")
    trials = [t for t in optuna.load_study(study_name=name, storage=url).trials
              if t.state == optuna.trial.TrialState.COMPLETE]
    inside = args.sleep * len(trials)  # stock Optuna records no objective time; the sleep is the floor
    return _row("stock Optuna TPE, study.optimize", n, trials, inside)


def _row(label: str, n: int, trials: list, inside_s: float) -> dict:
    start = min(t.datetime_start for t in trials)
    end = max(t.datetime_complete for t in trials)
    wall = (end - start).total_seconds()
    return {"label": label, "workers": n, "trials": len(trials), "wall_s": wall,
            "overhead_per_trial_s": (wall * n - inside_s) / len(trials)}


def _print(rows: list[dict], args: argparse.Namespace) -> None:
    print(f"\nobjective sleeps {args.sleep} s; {args.trials} trials per round\n")
    print(f"{'':45} {'workers':>7} {'trials':>6} {'wall s':>8} {'ideal s':>8} {'overhead/trial s':>17}")
    for r in rows:
        ideal = r["trials"] * args.sleep / r["workers"]
        print(f"{r['label']:45} {r['workers']:>7} {r['trials']:>6} {r['wall_s']:>8.2f} {ideal:>8.2f} "
              f"{r['overhead_per_trial_s']:>17.3f}")
    # The yardstick: refiner's overhead per trial against stock Optuna's, same worker count,
    # measured in this same run (the machine's load changes between runs).
    stock = {r["workers"]: r for r in rows if r["label"].startswith("stock")}
    print()
    for r in rows:
        if not r["label"].startswith("stock") and r["workers"] in stock:
            base = stock[r["workers"]]["overhead_per_trial_s"]
            ratio = r["overhead_per_trial_s"] / base if base > 0 else float("inf")
            print(f"overhead ratio, {r['label']}, {r['workers']} workers: {ratio:.2f}x stock "
                  f"({r['overhead_per_trial_s']:.3f} s vs {base:.3f} s)")
    by = {(r["label"], r["workers"]): r["wall_s"] for r in rows}
    counts = sorted({r["workers"] for r in rows})
    if len(counts) > 1:
        lo, hi = counts[0], counts[-1]
        for label in dict.fromkeys(r["label"] for r in rows):
            if (label, lo) in by and (label, hi) in by:
                print(f"speed-up {lo}->{hi} workers, {label}: {by[(label, lo)] / by[(label, hi)]:.2f}x")


if __name__ == "__main__":
    main()
