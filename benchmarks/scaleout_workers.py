"""Round wall time with 1 vs N workers, and the coordination overhead per trial, against stock Optuna.

    python benchmarks/scaleout_workers.py [--storage postgresql://…] [--workers 1,3,8] [--sleep 1.0] [--trials 24]

The objective sleeps a fixed time per trial, so every second beyond ``trials × sleep / workers``
is coordination. For each worker count it runs ``refiner run --no-trials`` (the coordinator runs
no trials) plus that many ``refiner worker`` processes, and, as the yardstick, the same number of
processes running stock ``study.optimize`` with TPE on one shared study, capped at the same trial
count with ``MaxTrialsCallback``. Wall times come from the storage's trial timestamps (first
start to last finish), so process start-up is left out of both. Stock runs three ways: cold (a fresh
study), warm (first holding as many finished trials as refiner's TPE round holds from round 0), and
warm with stock's form of refiner's sampler, multivariate TPE (refiner's is also told the round's
space, which saves the read of the study stock's makes before each proposal). Without ``--storage`` a
throw-away PostgreSQL server is started with ``scripts/throwaway-postgres``.

Overhead per trial is ``(wall × workers − trials × sleep) / trials`` for both, so everything
beyond the sleep counts (refiner's evaluation wrapper too). The speed-up with N workers is the
trial throughput with N over that with 1 (stock Optuna may run a trial or two past the cap).
The machine's load moves these numbers between runs: compare refiner with stock Optuna within
one run (``--repeat`` runs everything again and reports medians; the load average is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
    parser.add_argument("--repeat", type=int, default=1, help="run everything this many times; report medians")
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
        load_before = os.getloadavg()
        runs = []
        for r in range(args.repeat):
            rows = []
            for n in counts:
                rows += _refiner_rounds(work / f"{r}-refiner-{n}", storage, n, args)
                rows.append(_stock_optuna(work / f"{r}-stock-{n}", storage, n, args))
                if args.rounds > 1:
                    rows.append(_stock_optuna(work / f"{r}-stock-warm-{n}", storage, n, args, warm=args.trials))
                    rows.append(_stock_optuna(work / f"{r}-stock-same-{n}", storage, n, args, warm=args.trials,
                                              multivariate=True))
            if args.repeat > 1:
                print(f"\nrun {r + 1} of {args.repeat}:")
            _print(rows, args)
            runs.append(rows)
        _summary(runs, counts, args, load_before, os.getloadavg())
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
        # The same floor as stock Optuna's (which records no objective time): the sleep.
        rows.append(_row(f"refiner round {k} ({'random' if k == 0 else 'TPE'})", n, ran, args.sleep * len(ran)))
    return rows


STOCK = "stock Optuna TPE, study.optimize"
STOCK_WARM = "stock Optuna TPE, warm (+ round 0's count)"
STOCK_SAME = "stock Optuna multivariate TPE, warm"
STOCK_ROWS = {"stock": STOCK, "warm": STOCK_WARM, "same": STOCK_SAME}


def _stock_optuna(folder: Path, storage: str, n: int, args: argparse.Namespace, warm: int = 0,
                  multivariate: bool = False) -> dict:
    """Stock Optuna's TPE on one shared study; with ``warm``, the study first holds that many
    finished random trials, as refiner's TPE round holds round 0's (TPE's cost grows with them).
    ``multivariate``: stock's form of refiner's sampler (``TPESampler(multivariate=True)``, which
    models the parameters jointly; refiner's is also told the round's space and so skips the read of
    the study that stock's makes before each proposal to infer it)."""
    import numpy as np
    import optuna

    from refiner.engines.optuna import shared_study as shared

    folder.mkdir(parents=True)
    name = f"stock{int(time.time())}w{n}{'warm' if warm else ''}{'mv' if multivariate else ''}"
    url = shared.normalise_url(storage)
    study = optuna.create_study(study_name=name, storage=url, direction="minimize")
    rng = np.random.default_rng(0)
    space = {v: optuna.distributions.FloatDistribution(-5.0, 5.0) for v in ("x", "y")}
    for _ in range(warm):
        x, y = rng.uniform(-5.0, 5.0, 2)
        study.add_trial(optuna.trial.create_trial(params={"x": x, "y": y}, distributions=space,
                                                  value=(x - 1.0) ** 2 + (y + 2.0) ** 2, user_attrs={"warm": True}))
    script = textwrap.dedent(f"""
        import time, optuna
        from optuna.study import MaxTrialsCallback
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        def bowl(trial):
            x = trial.suggest_float("x", -5.0, 5.0); y = trial.suggest_float("y", -5.0, 5.0)
            time.sleep({args.sleep})
            return (x - 1.0) ** 2 + (y + 2.0) ** 2
        study = optuna.load_study(study_name={name!r}, storage={url!r}, sampler=optuna.samplers.TPESampler(multivariate={multivariate}))
        study.optimize(bowl, callbacks=[MaxTrialsCallback({args.trials + warm}, states=None)])
    """)
    processes = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(n)]
    for p in processes:
        if p.wait() != 0:
            raise SystemExit("a stock Optuna process failed")
    trials = [t for t in optuna.load_study(study_name=name, storage=url).trials
              if t.state == optuna.trial.TrialState.COMPLETE and not t.user_attrs.get("warm")]
    label = STOCK_SAME if multivariate else STOCK_WARM if warm else STOCK
    return _row(label, n, trials, args.sleep * len(trials))


def _row(label: str, n: int, trials: list, inside_s: float) -> dict:
    start = min(t.datetime_start for t in trials)
    end = max(t.datetime_complete for t in trials)
    wall = (end - start).total_seconds()
    return {"label": label, "workers": n, "trials": len(trials), "wall_s": wall,
            "overhead_per_trial_s": (wall * n - inside_s) / len(trials), "per_s": len(trials) / wall}


def _print(rows: list[dict], args: argparse.Namespace) -> None:
    print(f"\nobjective sleeps {args.sleep} s; {args.trials} trials per round\n")
    print(f"{'':45} {'workers':>7} {'trials':>6} {'wall s':>8} {'ideal s':>8} {'overhead/trial s':>17}")
    for r in rows:
        ideal = r["trials"] * args.sleep / r["workers"]
        print(f"{r['label']:45} {r['workers']:>7} {r['trials']:>6} {r['wall_s']:>8.2f} {ideal:>8.2f} "
              f"{r['overhead_per_trial_s']:>17.3f}")


def _summary(runs: list[list[dict]], counts: list[int], args: argparse.Namespace,
             load_before: tuple[float, ...], load_after: tuple[float, ...]) -> None:
    """Issue 15's table: per worker count, refiner's overhead per trial against stock Optuna's
    measured in the same run, their ratio, and the speed-up over one worker. With ``--repeat``,
    each figure is the median over the runs of the figure computed within one run."""

    def pick(rows: list[dict], n: int, which: str) -> dict | None:
        if which in STOCK_ROWS:
            found = [r for r in rows if r["label"] == STOCK_ROWS[which] and r["workers"] == n]
        else:
            found = [r for r in rows if r["label"].startswith("refiner") and r["workers"] == n
                     and (which == "all" or r["label"].endswith("(TPE)"))]
        if not found:
            return None
        trials = sum(r["trials"] for r in found)
        return {"overhead": sum(r["overhead_per_trial_s"] * r["trials"] for r in found) / trials,
                "per_s": trials / sum(r["wall_s"] for r in found)}

    def median(values: list[float | None]) -> float | None:
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    def fig(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    print(f"\nissue 15 summary: objective sleeps {args.sleep} s, {args.trials} trials per round, "
          f"{len(runs)} run(s){' (medians)' if len(runs) > 1 else ''}; "
          f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after ({os.cpu_count()} CPUs)")
    print("overhead per trial in s; ratio = refiner / stock (target <= 1.2); speed-up = trials/s over 1 worker's")
    head = (f"{'workers':>7} {'refiner TPE':>11} {'refiner all':>11} {'stock':>7} {'stock warm':>10} {'stock same':>10}"
            f" {'ratio TPE':>9} {'ratio all':>9} {'TPE/warm':>8} {'TPE/same':>8}"
            f" {'speed-up TPE':>12} {'speed-up all':>12} {'speed-up stock':>14}")
    print(head)
    base = min(counts)
    for n in counts:
        cells = {}
        for which in ("tpe", "all", *STOCK_ROWS):
            got = [pick(rows, n, which) for rows in runs]
            one = [pick(rows, base, which) for rows in runs]
            cells[which] = median([g and g["overhead"] for g in got])
            cells["up " + which] = median([g["per_s"] / o["per_s"] if g and o else None for g, o in zip(got, one)])
        for which, against in (("tpe", "stock"), ("all", "stock"), ("tpe", "warm"), ("tpe", "same")):
            ratios = []
            for rows in runs:
                mine, stock = pick(rows, n, which), pick(rows, n, against)
                ratios.append(mine["overhead"] / stock["overhead"] if mine and stock and stock["overhead"] > 0 else None)
            cells[f"ratio {which} {against}"] = median(ratios)
        print(f"{n:>7} {fig(cells['tpe'], '.3f'):>11} {fig(cells['all'], '.3f'):>11} {fig(cells['stock'], '.3f'):>7}"
              f" {fig(cells['warm'], '.3f'):>10} {fig(cells['same'], '.3f'):>10} {fig(cells['ratio tpe stock'], '.2f'):>9}"
              f" {fig(cells['ratio all stock'], '.2f'):>9} {fig(cells['ratio tpe warm'], '.2f'):>8}"
              f" {fig(cells['ratio tpe same'], '.2f'):>8}"
              f" {fig(cells['up tpe'], '.2f'):>12} {fig(cells['up all'], '.2f'):>12} {fig(cells['up stock'], '.2f'):>14}")
    print("refiner TPE: its TPE round (round 1), the like of stock's TPE study; refiner all: every round "
          "(round 0 samples at random); stock warm: stock's study first holds as many finished trials as "
          "refiner's TPE round holds from round 0 (TPE/warm compares those two); stock same: stock warm with "
          "multivariate TPE, stock's form of refiner's sampler (TPE/same: the same trials and kind of sampler)")

if __name__ == "__main__":
    main()
