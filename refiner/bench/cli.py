"""``refiner bench`` arguments and entry point: run the benchmark, print its report, exit 0 (2 on bad input)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Any, Iterator

__all__ = ["add_arguments", "run"]

log = logging.getLogger("refiner.bench")


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Benchmark refiner against stock KerasTuner (random, Bayesian), Optuna (random, TPE) and bayes_opt with "
        "sequential domain reduction on problems with known optima, at equal trial budgets and seeds. "
        "Prints a table; writes bench.json and incumbent-curve plots into --out."
    )
    parser.add_argument("--suite", choices=("quick", "full", "fidelity", "keras"), default="quick",
                        help="quick: 9 synthetic (2 of them noisy) + 2 scikit-learn problems; full adds an MLP "
                             "and the Keras CNN; fidelity: learning-curve problems at equal epochs, refiner with a "
                             "Fidelity against Optuna TPE + HyperbandPruner and the rest; keras: 4 small Keras models "
                             "at the epochs of one KerasTuner Hyperband iteration (default: quick)")
    parser.add_argument("--budgets", default="30,60",
                        help="comma-separated trial budgets (default: 30,60)")
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1, the same for every optimizer (default: 10)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"), help="output folder (default: runs/bench)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes, one core each (default: 2)")
    parser.add_argument("--problems", default=None, help="comma-separated subset of problems (default: the suite's)")
    parser.add_argument("--optimizers", default=None, help="comma-separated subset of optimizers (default: all)")
    parser.add_argument("--analysis-repeats", type=int, default=3,
                        help="repeats of the 200-trial x 8-parameter analysis timing; 0 skips it (default: 3)")
    parser.add_argument("--no-plots", action="store_true", help="write no plots (default: PNG and HTML curves)")
    parser.add_argument("--reuse", type=Path, default=None, metavar="BENCH_JSON",
                        help="take the competitors' runs (every optimizer but refiner) from an earlier bench.json "
                             "where it has them, instead of running them again (default: run everything)")
    parser.add_argument("--fidelity-epochs", type=int, default=400, metavar="N",
                        help="--suite fidelity: every optimizer's epochs; refiner+fidelity gets them as its epoch "
                             "budget, fidelity.total (default: 400)")
    parser.add_argument("--keras-max-epochs", type=int, default=27, metavar="N",
                        help="--suite keras: Hyperband's max_epochs and every model's full training (default: 27)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs --out already holds and run the rest: a stopped bench records each run "
                             "as it finishes (--suite keras: each problem-seed unit); not --suite fidelity "
                             "(default: run everything)")
    experiments = parser.add_argument_group("method experiments (leave unset to benchmark the product's defaults)")
    experiments.add_argument("--refiner-rounds", type=int, default=3, help="refiner's rounds per run (default: 3)")
    experiments.add_argument("--refiner-narrowing", default=None, metavar="JSON",
                             help='narrowing settings for refiner, e.g. \'{"top_fraction": 0.05}\' '
                                  '(default: the product\'s, refiner.narrowing.NarrowingConfig)')
    experiments.add_argument("--refiner-initial-share", type=float, default=None, metavar="SHARE",
                             help="round 0's share of the budget (default: the product's split, "
                                  "refiner.settings.INITIAL_SHARE = 0.2)")


def _settings(args: argparse.Namespace) -> Any:
    from refiner.bench.benchmark import BenchSettings

    narrowing: Any = None
    if args.refiner_narrowing:
        try:
            narrowing = json.loads(args.refiner_narrowing)
        except json.JSONDecodeError as exc:
            narrowing = f"not JSON ({exc})"  # reported by validate() with the rule
    budgets = []
    for text in _csv(args.budgets):
        try:
            budgets.append(int(text))
        except ValueError:
            budgets.append(-1)  # reported by validate() below with the rule
    return BenchSettings(
        suite=args.suite, budgets=budgets, seeds=args.seeds, out=args.out, jobs=args.jobs,
        problems=_csv(args.problems) if args.problems else None,
        optimizers=_csv(args.optimizers) if args.optimizers is not None else None,
        analysis_repeats=max(0, args.analysis_repeats), plots=not args.no_plots,
        refiner_rounds=args.refiner_rounds, refiner_narrowing=narrowing,
        refiner_initial_share=args.refiner_initial_share, reuse=args.reuse, resume=args.resume,
    )


@contextlib.contextmanager
def _progress_on_stderr() -> Iterator[None]:
    """The bench's progress lines on stderr; the loop's per-trial lines would drown them."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    logging.getLogger("refiner.loop").setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.removeHandler(handler)


def run(args: argparse.Namespace) -> int:
    from refiner.bench.benchmark import run_benchmark
    from refiner.bench.report import format_report

    if args.resume and args.suite == "fidelity":
        print("refiner: error: --resume: --suite fidelity does not resume; run it again", file=sys.stderr)
        return 2
    if args.suite == "fidelity":
        return _run_fidelity(args)
    if args.suite == "keras":
        return _run_keras(args)
    settings = _settings(args)
    problems = settings.validate()
    if problems:
        for p in problems:
            print(f"refiner: error: {p}", file=sys.stderr)
        return 2

    def progress(done: int, total: int, record: dict[str, Any]) -> None:
        what = f"{record['problem']} {record['optimizer']} seed {record['seed']} budget {record['budget']}"
        if "error" in record:
            log.warning("[%d/%d] %s FAILED: %s", done, total, what, record["error"])
        else:
            log.info("[%d/%d] %s: best %.6g in %.1f s", done, total, what, min(record["values"], default=float("nan")),
                     record["wall_s"])  # on a noisy problem, the best observation

    with _progress_on_stderr():
        document = run_benchmark(settings, progress)
    print(format_report(document))
    print(f"\nJSON: {Path(settings.out) / 'bench.json'}; plots: "
          f"{', '.join(document.get('plots', {}).get('files', [])) or 'none'}")
    return 0


def _run_fidelity(args: argparse.Namespace) -> int:
    from refiner.bench.fidelity import LC_PROBLEMS, MAX_EPOCHS, format_fidelity_report, run_fidelity_benchmark

    chosen = _csv(args.problems) if args.problems else None
    unknown = [p for p in chosen or [] if p not in LC_PROBLEMS]
    if unknown or args.seeds < 1 or args.fidelity_epochs < MAX_EPOCHS or args.refiner_rounds < 1:
        what = (f"--problems: {unknown[0]!r} is not a fidelity problem ({', '.join(LC_PROBLEMS)})" if unknown else
                f"--seeds: must be at least 1, got {args.seeds}" if args.seeds < 1 else
                f"--refiner-rounds: must be at least 1, got {args.refiner_rounds}" if args.refiner_rounds < 1 else
                f"--fidelity-epochs: must be at least {MAX_EPOCHS} (one trial trained to the end), "
                f"got {args.fidelity_epochs}")
        print(f"refiner: error: {what}", file=sys.stderr)
        return 2
    with _progress_on_stderr():
        result = run_fidelity_benchmark(args.seeds, args.fidelity_epochs, chosen, out=Path(args.out),
                                        rounds=args.refiner_rounds)
    print(format_fidelity_report(result))
    print(f"\nJSON: {Path(args.out) / 'fidelity.json'}")
    return 0


def _run_keras(args: argparse.Namespace) -> int:
    from refiner.bench.keras_suite import (KERAS_OPTIMIZERS, KERAS_PROBLEMS, check_resume, format_keras_report,
                                           run_keras_benchmark)

    problems = _csv(args.problems) if args.problems else None
    optimizers = _csv(args.optimizers) if args.optimizers else None
    unknown_problem = [p for p in problems or [] if p not in KERAS_PROBLEMS]
    unknown_optimizer = [o for o in optimizers or [] if o not in KERAS_OPTIMIZERS]
    what = (f"--problems: {unknown_problem[0]!r} is not a Keras-suite problem ({', '.join(KERAS_PROBLEMS)})"
            if unknown_problem else
            f"--optimizers: {unknown_optimizer[0]!r} is not a Keras-suite tool ({', '.join(KERAS_OPTIMIZERS)})"
            if unknown_optimizer else
            f"--seeds: must be at least 1, got {args.seeds}" if args.seeds < 1 else
            f"--keras-max-epochs: must be at least 3, got {args.keras_max_epochs}" if args.keras_max_epochs < 3 else
            f"--refiner-rounds: must be at least 1, got {args.refiner_rounds}" if args.refiner_rounds < 1 else
            f"--jobs: must be at least 1, got {args.jobs}" if args.jobs < 1
            else None)
    if what:
        print(f"refiner: error: {what}", file=sys.stderr)
        return 2
    if args.resume:  # refused before anything runs (a RefinerError: one line, exit 2)
        check_resume(Path(args.out), args.seeds, problems, optimizers, args.keras_max_epochs, args.refiner_rounds)
    with _progress_on_stderr():
        result = run_keras_benchmark(args.seeds, problems, optimizers, args.keras_max_epochs, out=Path(args.out),
                                     rounds=args.refiner_rounds, plots=not args.no_plots, jobs=args.jobs,
                                     resume=args.resume)
    print(format_keras_report(result))
    print(f"\nJSON: {Path(args.out) / 'keras.json'}")
    return 0
