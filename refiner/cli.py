"""The ``refiner`` command: run, worker, show, export, validate, bench, app.

The CLI owns the console: the library only logs. Bad input (a malformed space, a wrong config,
a corrupt run folder) prints one ``refiner: error: …`` line per problem and exits with 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, Sequence

from refiner.errors import CoordinatorGoneError, DamagedRunError, RefinerError, RoundFailedError, ValidationError

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refiner",
        description="Multi-round hyperparameter search refinement on KerasTuner: a random round, "
        "surrogate-guided narrowing with one explained decision per hyperparameter, Bayesian rounds.",
    )
    from refiner import __version__

    parser.add_argument("--version", action="version", version=f"refiner {__version__}",
                        help="print refiner's version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run (or resume) the search a TOML config describes")
    run.add_argument("config", type=Path, help="run config (TOML), see schemas/run_config.schema.json")
    run.add_argument("--run-dir", type=Path, default=None, help="run folder (default: <directory>/<name> from the config)")
    run.add_argument("--overwrite", action="store_true",
                     help="delete an existing run folder and start afresh (default: resume it)")
    run.add_argument("--quiet", action="store_true",
                     help="only the final summary (default: a line per trial and a table per round)")
    run.add_argument("--warm-start", type=Path, default=None, metavar="RUN_DIR",
                     help="seed the run with an earlier run's trials (same objective and parameters): those inside "
                     "the space are evidence for the first surrogate, all are kept in imported.jsonl with their "
                     "source (default: none)")
    run.add_argument("--from-refined", action="store_true",
                     help="with --warm-start: search the earlier run's refined_space.json instead of the config's "
                     "space (default: the config's space)")
    run.add_argument("--storage", default=None,
                     help="optuna engine: storage URL, e.g. postgresql://user@host/db (default: SQLite in the run folder)")
    run.add_argument("--heartbeat", type=int, default=None, metavar="SECONDS",
                     help="optuna engine: seconds between a running trial's heartbeats; a trial silent for three "
                     "is failed and re-run (default: 10)")
    run.add_argument("--no-trials", action="store_true",
                     help="optuna engine: only coordinate; every trial is left to `refiner worker` processes "
                     "(default: this process runs trials too)")

    run.add_argument("--review", action="store_true",
                     help="wait for a person's approval after each round but the last (the review app's "
                     "\"Approve and continue\", or `refiner approve RUN_DIR`) (default: the config's `review`, off)")
    run.add_argument("--review-timeout", type=float, default=None, metavar="SECONDS",
                     help="with --review: go on with refiner's proposals after this long without an approval "
                     "(default: the config's `review_timeout`, wait for ever)")

    approve = sub.add_parser("approve", help="let a run that waits for review go on to its next round")
    approve.add_argument("run_dir", type=Path, help="the run folder, e.g. runs/branin")
    approve.add_argument("--round", type=int, default=None, metavar="K",
                         help="the round whose decisions to approve (default: the one the run waits for)")
    approve.add_argument("--note", default="", help="why, recorded with the approval (default: none)")

    worker = sub.add_parser("worker", help="take part in the rounds of an optuna-engine run, from any machine")
    worker.add_argument("run_dir", type=Path, help="the run folder; its name is the run's name in the storage")
    worker.add_argument("--storage", default=None,
                        help="the coordinator's storage URL (default: the SQLite file in RUN_DIR)")
    worker.add_argument("--config", type=Path, default=None,
                        help="the run config (default: the one RUN_DIR/run.json names; give it where the run "
                        "folder is not shared)")
    worker.add_argument("--wait", type=float, default=600.0, metavar="SECONDS",
                        help="stop after this long with no round open (default: 600)")
    worker.add_argument("--quiet", action="store_true", help="only errors (default: a line per trial)")

    show = sub.add_parser("show", help="summarise a run folder: per round its space, best score, decisions")
    show.add_argument("run_dir", type=Path, help="the run folder, e.g. runs/branin")

    export = sub.add_parser("export", help="write the refined space as JSON, KerasTuner code or Optuna code")
    export.add_argument("run_dir", type=Path, help="a finished run folder, e.g. runs/branin")
    export.add_argument("--format", choices=("json", "keras-tuner", "optuna"), default="json",
                        help="json: the portable space format; keras-tuner: Python code building a "
                        "keras_tuner.HyperParameters; optuna: Python code with Optuna distributions and suggest(trial) "
                        "(default: json)")
    export.add_argument("-o", "--output", type=Path, default=None, help="file to write (default: standard output)")

    validate = sub.add_parser("validate", help="check a search-space JSON, a run config, an overrides file or a "
                              "whole run folder; exit 2 on problems")
    validate.add_argument("file", type=Path, help="a file, or a run folder (RUN_DIR)")

    bench = sub.add_parser("bench", help="benchmark refiner against stock KerasTuner, Optuna and bayes_opt")
    from refiner.bench.cli import add_arguments as add_bench_arguments

    add_bench_arguments(bench)

    app = sub.add_parser("app", help="open the review app (Streamlit) on 127.0.0.1")
    app.add_argument("--runs", type=Path, default=Path("runs"), help="folder holding run folders (default: runs)")
    app.add_argument("--port", type=int, default=8501, help="port to listen on (default: 8501)")
    app.add_argument("--address", default="127.0.0.1",
                     help="address to bind; any other than loopback needs --allow-remote (default: 127.0.0.1)")
    app.add_argument("--allow-remote", action="store_true",
                     help="allow --address other than loopback; the page then shows a warning banner, since it has "
                     "no login (default: refused)")
    app.add_argument("--read-only", action="store_true",
                     help="switch overrides and approvals off, e.g. for a shared view (default: on)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _quiet_tensorflow()
    try:
        return {"run": _run, "worker": _worker, "show": _show, "export": _export, "validate": _validate,
                "app": _app, "bench": _bench, "approve": _approve}[args.command](args)
    except (RoundFailedError, CoordinatorGoneError) as exc:
        _error(str(exc))
        return EXIT_FAILED
    except ValidationError as exc:
        for problem in exc.problems:  # one line per broken rule
            _error(f"{exc.source}: {problem}" if exc.source else problem)
        return EXIT_USAGE
    except DamagedRunError as exc:
        for problem in exc.problems:  # one line per problem, each with its repair
            _error(problem)
        return EXIT_USAGE
    except RefinerError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        if args.command == "bench":  # the same command without --resume would start afresh
            _error("interrupted; the runs finished so far are kept in --out - add --resume to the same command "
                   "to run only the rest")
        else:
            _error("interrupted; everything finished so far is kept - run the same command again to resume")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `refiner show RUN | head`: the reader has what it wanted. Point stdout at devnull so the
        # interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _error(message: str) -> None:
    print(f"refiner: error: {message}", file=sys.stderr)


def _quiet_tensorflow() -> None:
    # TensorFlow's C++ start-up chatter drowns the progress lines; errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _console_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("refiner")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def _run(args: argparse.Namespace) -> int:
    from refiner.config import load_run_config

    config = load_run_config(args.config)
    run_dir = args.run_dir or Path(config.directory) / config.name
    _console_logging(args.quiet)
    _stop_on_sigterm()
    hypermodel, function, fit_kwargs = _objective(config)

    try:
        agent = _make_refiner(config, args, run_dir, hypermodel, function)
    except ValueError as exc:  # a setting the config schema cannot see wrong (Refiner checks it)
        raise RefinerError(f"{config.source}: {exc}") from None
    agent.search(**fit_kwargs)
    best = agent.best_trial
    print(f"run folder: {run_dir}")
    if best is not None:
        values = ", ".join(f"{k}={v}" for k, v in best.hyperparameters.items())
        print(f"best {config.objective.name}: {best.score:.6g} (trial {best.trial_id}): {values}")
    print(f"refined space: {agent.store.refined_space_file}  (refiner export {run_dir} --format json|keras-tuner|optuna)")
    return EXIT_OK


def _make_refiner(config: Any, args: argparse.Namespace, run_dir: Path, hypermodel: Any, function: Any) -> Any:
    from refiner.loop import Refiner

    space = config.space
    if args.from_refined:
        if args.warm_start is None:
            raise RefinerError("--from-refined: needs --warm-start RUN_DIR, the run whose refined space to search")
        space = args.warm_start / "refined_space.json"
        if not space.is_file():
            raise RefinerError(f"--from-refined: {space} does not exist; the earlier run has not finished")
    return Refiner(
        hypermodel=hypermodel,
        function=function,
        space=space,
        warm_start=args.warm_start,
        objective=config.objective,
        **config.settings.arguments(),
        directory=run_dir.parent,
        project_name=run_dir.name,
        engine=config.engine,
        storage=args.storage or config.storage,
        heartbeat_interval=args.heartbeat,
        run_trials=False if args.no_trials else None,
        overwrite=args.overwrite,
        review="each-round" if args.review else config.review,
        review_timeout=args.review_timeout if args.review_timeout is not None else config.review_timeout,
        target_name=config.hypermodel or config.function,
        config_path=str(config.source),
    )


def _objective(config: Any) -> tuple[Any, Any, dict[str, Any]]:
    """(hypermodel, function, fit keyword arguments) a config names, imported."""
    target = config.resolve_target()
    if config.hypermodel is None:
        return None, target, {}
    return target, None, _fit_kwargs(config.resolve_data()(), config.fit)


def _worker(args: argparse.Namespace) -> int:
    from refiner.config import load_run_config
    from refiner.engines import engine_class
    from refiner.store import RunStore

    config_path = args.config
    if config_path is None:
        store = RunStore(args.run_dir)
        if not store.exists():
            raise RefinerError(f"{args.run_dir}: no run.json here; start `refiner run` first, or give --config "
                               "where the run folder is not shared")
        config_path = store.read_run()["settings"].get("config")
        if not config_path:
            raise RefinerError(f"{args.run_dir}: the run was started from Python, not from a config; give --config")
        config_path = Path(config_path)
    config = load_run_config(config_path)
    if not engine_class(config.engine).supports_workers:
        raise RefinerError(f"{config.source}: engine: workers need engine = \"optuna\" (it is {config.engine!r})")
    from refiner.engines.optuna import default_storage
    from refiner.engines.optuna.worker import work

    _console_logging(args.quiet)
    _stop_on_sigterm()
    hypermodel, function, fit_kwargs = _objective(config)
    storage = args.storage or config.storage or default_storage(args.run_dir.resolve())
    ran = work(args.run_dir.name, storage, target_name=config.target, function=function, hypermodel=hypermodel,
               fit_kwargs=fit_kwargs, wait_s=args.wait)
    print(f"worker done: {ran} trials run")
    return EXIT_OK


def _stop_on_sigterm() -> None:
    """SIGTERM (a scheduler, ``kill``) stops like Ctrl-C: the loop records the interruption first."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _fit_kwargs(data: Any, fit: dict[str, Any]) -> dict[str, Any]:
    """The data loader returns fit keyword arguments (a dict) or ``(x, y)``; the config adds the rest."""
    if isinstance(data, dict):
        kwargs = dict(data)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        kwargs = {"x": data[0], "y": data[1]}
    else:
        raise RefinerError(f"data: the loader must return a dict of fit arguments or (x, y), got {type(data).__name__}")
    clash = sorted(set(kwargs) & set(fit))
    if clash:
        raise RefinerError(f"fit: {clash} given both by the data loader and the [fit] table; keep one")
    return {**kwargs, **fit}


def _show(args: argparse.Namespace) -> int:
    from refiner.check import run_problems
    from refiner.console import run_summary

    store = _existing_run(args.run_dir)
    found = run_problems(store)
    if any(p.blocks_resume for p in found):
        raise DamagedRunError([str(p) for p in found])  # the summary would mislead: say what is wrong instead
    print(run_summary(store))
    for problem in found:  # a file refiner recomputes, a stray file: worth knowing, not wrong
        print(f"refiner: warning: {problem}", file=sys.stderr)
    return EXIT_OK


def _existing_run(path: Path) -> Any:
    from refiner.errors import RunFolderError
    from refiner.store import RunStore

    store = RunStore(path)
    if not store.exists():
        raise RunFolderError(f"{path}: not a run folder (no run.json)")
    store.read_run()  # validates
    return store


def _approve(args: argparse.Namespace) -> int:
    from refiner.gate import approve

    document = approve(_existing_run(args.run_dir), args.round, by="cli", note=args.note)
    changed = f" with overrides of {', '.join(document['overrides'])}" if document.get("overrides") else ""
    print(f"approved round {document['round']}{changed}; the run goes on to round {document['round'] + 1}")
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from refiner.errors import RunFolderError
    from refiner.export import render
    from refiner.overrides import refined_space
    from refiner.jsonio import atomic_write_text

    store = _existing_run(args.run_dir)
    if not store.refined_space_file.exists():
        raise RunFolderError(f"{store.refined_space_file}: missing - the run has not finished; "
                             f"run `refiner run` again to finish it")
    text = render(refined_space(store), args.format)
    if args.output is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(args.output, text)
        print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    from refiner.validate import validate_file, validate_run_folder

    if args.file.is_dir():
        problems = validate_run_folder(args.file)
        for line in problems:  # each names its own file
            print(line, file=sys.stderr)
        if problems:
            return EXIT_USAGE
        print(f"{args.file}: valid run folder")
        return EXIT_OK
    problems = validate_file(args.file)
    for line in problems:
        print(f"{args.file}: {line}", file=sys.stderr)
    if problems:
        return EXIT_USAGE
    print(f"{args.file}: valid")
    return EXIT_OK


def _bench(args: argparse.Namespace) -> int:
    from refiner.bench.cli import run as run_bench

    return run_bench(args)


def _app(args: argparse.Namespace) -> int:
    import subprocess

    # The page ships inside the package (refiner/review/page.py), so this works from a wheel too.
    app_file = Path(__file__).resolve().parent / "review" / "page.py"
    if not app_file.exists():
        raise RefinerError(f"the review app is missing from the installed package ({app_file})")
    runs = args.runs.resolve()
    if args.address not in ("127.0.0.1", "localhost", "::1") and not args.allow_remote:
        raise RefinerError(f"--address {args.address}: the app has no login, so anyone who reaches that address could "
                           f"write overrides; add --allow-remote to mean it (and --read-only to switch overrides off)")
    extra = [*(["--read-only"] if args.read_only else []), *(["--allow-remote"] if args.allow_remote else [])]
    cmd = [sys.executable, "-m", "streamlit", "run", str(app_file),
           "--server.address", args.address, "--server.port", str(args.port),
           "--server.headless", "true", "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
           # No source watching: for each new browser tab Streamlit's watcher registers every loaded
           # module under the script's folder (a virtual environment beside the code included), to
           # offer reruns on edits a review app never needs: 1.2-1.8 s of a 200-trial run's load here.
           "--server.fileWatcherType", "none",
           "--", "--runs", str(runs), *extra]
    print(f"refiner review app: http://{args.address}:{args.port}  (runs folder {runs}; Ctrl+C stops it)",
          file=sys.stderr, flush=True)
    if os.name == "posix":
        # Become the server rather than wait for it: stopping this process then stops the app
        # (a child would outlive a SIGTERM and keep the port).
        os.execv(sys.executable, cmd)
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
