"""One benchmark, end to end: plan, run, assemble, summarise, time the analysis, write JSON and plots.

The JSON document (``bench.json``, ``format_version`` 1) holds:

* ``suite``, ``budgets``, ``seeds``, ``jobs``, ``started_at``, ``wall_time_s``, ``machine``, ``versions``;
* ``refiner_schedule``: how refiner's rounds derive from the budget;
* ``problems``: name, kind, description, space, ``f_star`` and ``f_star_source`` (what regret is
  measured from), ``reference``/``reference_source`` (the known or shipped reference optimum),
  ``best_found`` (the best noiseless value any run reached), ``optima`` (known minimisers),
  ``noise_sd`` (0 for a deterministic problem);
* ``optimizers``: name, label, ``knows_budget`` (false: read smaller budgets off the largest run);
* ``reused``: ``{"from", "n_runs"}`` when ``--reuse`` took competitor runs from an earlier file, else null;
* ``resumed``: ``{"from", "n_runs"}`` when ``--resume`` kept runs the output folder already held, else null;
* ``runs``: every raw run: ``problem``, ``optimizer``, ``seed``, ``budget``, ``values`` (objective per
  trial, in order), ``objective_s`` (seconds inside the objective per trial), ``elapsed_s`` (wall
  seconds since the run started, at each trial's end), ``wall_s``, ``extra`` (refiner: rounds,
  trials_per_round, contains_optimum, volume_fraction, refined_space), or ``error``; on a noisy
  problem ``values`` are the noisy observations the optimizer saw and ``true_values`` the
  noiseless values of the same trials;
* ``results``: one per run and budget it answers for: ``best_value``, ``f_star``, ``regret``
  (= best_value - f_star, never negative), ``n_trials``, ``run_budget``, ``wall_s``, ``objective_s``,
  ``orchestration_s`` (= wall_s - objective_s), and for refiner ``contains_optimum``, ``volume_fraction``;
  on a noisy problem ``best_value`` is the noiseless value of the configuration with the best
  observation, and ``best_observed`` that observation;
* ``summary``: see :mod:`refiner.bench.summary` (per budget, as strings);
* ``analysis_time``: see :mod:`refiner.bench.analysis_time`;
* ``targets``: the issue's targets, each ``{"target", "met", "evidence"}``;
* ``plots``: files written; ``errors``: runs that raised, with their message.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from refiner.bench.analysis_time import measure_analysis_time
from refiner.bench.harness import assemble, code_version, other_code, plan, run_tasks
from refiner.bench.optimizers import OPTIMIZERS, REFINER_ROUNDS, refiner_schedule
from refiner.bench.problems import PROBLEMS, SUITES
from refiner.bench.summary import check_targets, summarise
from refiner.errors import RefinerError, ValidationError
from refiner.narrowing import NarrowingConfig

__all__ = ["BenchSettings", "run_benchmark", "FORMAT_VERSION", "DEFAULT_BUDGETS"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DEFAULT_BUDGETS = (30, 60)


@dataclass
class BenchSettings:
    suite: str = "quick"
    budgets: Sequence[int] = DEFAULT_BUDGETS
    seeds: int = 10
    out: Path = Path("runs/bench")
    jobs: int = 2
    problems: Sequence[str] | None = None  # default: the suite's
    optimizers: Sequence[str] | None = None  # default: all
    analysis_repeats: int = 3  # 0 skips the analysis-time measurement
    # Method experiments only; the defaults are refiner's default schedule and narrowing settings.
    refiner_rounds: int = REFINER_ROUNDS
    refiner_narrowing: dict[str, Any] | None = None
    refiner_initial_share: float | None = None
    plots: bool = True
    # An earlier bench.json whose competitor runs (every optimizer but refiner) are taken instead of
    # run again: they do not depend on refiner's method, so a method change only re-runs refiner.
    reuse: Path | None = None
    # Keep the runs ``out`` already holds (its bench.json, or the runs a stopped bench recorded in
    # runs.partial.jsonl) and run only the rest.
    resume: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> list[str]:
        problems = []
        if self.suite not in SUITES:
            problems.append(f"--suite must be one of {', '.join(SUITES)}, got {self.suite!r}")
        if not self.budgets:
            problems.append("--budgets must name at least one budget")
        for b in self.budgets:
            try:
                refiner_schedule(b, self.refiner_rounds, self.refiner_initial_share)
            except ValueError as exc:
                problems.append(f"--budgets: {exc}")
        try:
            NarrowingConfig.from_dict(self.refiner_narrowing)
        except (ValidationError, TypeError) as exc:
            problems.append(f"--refiner-narrowing: {exc}")
        if self.seeds < 1:
            problems.append(f"--seeds must be at least 1, got {self.seeds}")
        if self.jobs < 1:
            problems.append(f"--jobs must be at least 1, got {self.jobs}")
        for name in self.problems or ():
            if name not in PROBLEMS:
                problems.append(f"--problems: unknown problem {name!r}; the problems are {', '.join(PROBLEMS)}")
        for name in self.optimizers or ():
            if name not in OPTIMIZERS:
                problems.append(f"--optimizers: unknown optimizer {name!r}; the optimizers are {', '.join(OPTIMIZERS)}")
        if self.optimizers is not None and not self.optimizers:
            problems.append("--optimizers must name at least one optimizer")
        if self.reuse is not None:
            try:
                _reusable_runs(self.reuse)
            except ValueError as exc:
                problems.append(f"--reuse: {exc}")
        if self.resume:
            try:
                _finished_runs(Path(self.out))
            except ValueError as exc:
                problems.append(f"--resume: {exc}")
        return problems


PARTIAL_RUNS = "runs.partial.jsonl"  # one line per finished run, appended as it finishes; removed with bench.json written


def _run_key(run: dict[str, Any]) -> str:
    """A recorded run's :attr:`Task.key`."""
    return f"{run['problem']}/{run['optimizer']}/seed{run['seed']}/budget{run['budget']}"


def _usable(runs: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """The finished runs among ``runs``, by task key (a failed run is left out, so it runs again)."""
    return {_run_key(r): r for r in runs if isinstance(r, dict) and "error" not in r and "values" in r
            and all(k in r for k in ("problem", "optimizer", "seed", "budget"))}


def _bench_runs(path: Path) -> list[Any]:
    """The ``runs`` of a ``bench.json``; ValueError, saying why, for a file that is not one."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path} as a bench.json ({exc})") from None
    runs = document.get("runs") if isinstance(document, dict) else None
    if not isinstance(runs, list):
        raise ValueError(f"{path}: not a bench.json (it has no list of runs)")
    return runs


def _finished_runs(out: Path) -> dict[str, dict[str, Any]]:
    """``--resume``: the runs ``out`` holds, by task key: those of its bench.json, then those a stopped
    bench appended to :data:`PARTIAL_RUNS` (a line torn by the stop is skipped)."""
    found = _bench_runs(out / "bench.json") if (out / "bench.json").exists() else []
    partial = out / PARTIAL_RUNS
    if partial.exists():
        for line in partial.read_text(encoding="utf-8").splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return _usable(found)


def _reusable_runs(path: Path) -> dict[str, dict[str, Any]]:
    """The competitor runs of an earlier ``bench.json``, by task key; refiner's and failed runs are left out."""
    return {key: r for key, r in _usable(_bench_runs(path)).items() if r["optimizer"] != "refiner"}


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("refiner", "keras-tuner", "keras", "tensorflow", "optuna", "bayesian-optimization",
                 "scikit-learn", "numpy", "scipy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _optimizer_available(name: str) -> bool:
    if name == "bayes_opt_sdr":
        try:
            import bayes_opt  # noqa: F401
        except ImportError:
            return False
    return True


def run_benchmark(settings: BenchSettings,
                  on_progress: Callable[[int, int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the benchmark and write ``bench.json`` and the plots into ``settings.out``; return the document."""
    started_at = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    problems = list(settings.problems or SUITES[settings.suite])
    optimizers = list(settings.optimizers or OPTIMIZERS)
    skipped = [o for o in optimizers if not _optimizer_available(o)]
    for o in skipped:
        log.warning("optimizer %s skipped: its package is not installed (pip install -e .[bench])", o)
    optimizers = [o for o in optimizers if o not in skipped]
    budgets = sorted(set(int(b) for b in settings.budgets))
    seeds = list(range(settings.seeds))
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)

    refiner_options: dict[str, Any] = {}
    if settings.refiner_rounds != REFINER_ROUNDS:
        refiner_options["rounds"] = settings.refiner_rounds
    if settings.refiner_narrowing:
        refiner_options["narrowing"] = dict(settings.refiner_narrowing)
    if settings.refiner_initial_share is not None:
        refiner_options["initial_share"] = settings.refiner_initial_share
    tasks = plan(problems, optimizers, budgets, seeds, refiner_options)
    reusable = _reusable_runs(settings.reuse) if settings.reuse is not None else {}
    reused = [reusable[t.key] for t in tasks if t.key in reusable]
    finished = _finished_runs(out) if settings.resume else {}
    outside = sorted(set(finished) - {t.key for t in tasks})
    if outside:  # bench.json is rewritten with this selection's runs: those would be lost
        raise RefinerError(f"--resume: {out} holds runs this selection leaves out ({outside[0]}"
                           f"{f' and {len(outside) - 1} more' if len(outside) > 1 else ''}); resume with the "
                           f"--problems, --optimizers, --seeds and --budgets (or more) it was made with")
    # A run made with other refiner settings (a method experiment) is not this task's: run it again.
    keep = {t.key for t in tasks if t.key not in reusable and t.key in finished
            and finished[t.key].get("options", "") == t.options}
    kept = [finished[key] for key in sorted(keep)]
    to_run = [t for t in tasks if t.key not in reusable and t.key not in keep]
    older = other_code(kept)
    if older:
        log.warning("--resume: %s", older)
    log.info("%d runs: %d problems x %d optimizers x %d seeds, budgets %s, %d worker(s)%s%s",
             len(tasks), len(problems), len(optimizers), len(seeds), budgets, settings.jobs,
             f"; {len(reused)} taken from {settings.reuse}" if settings.reuse is not None else "",
             f"; {len(kept)} already in {out}" if settings.resume else "")
    partial = out / PARTIAL_RUNS
    with open(partial, "a" if settings.resume else "w", encoding="utf-8") as record_file:
        if record_file.tell() and not partial.read_bytes().endswith(b"\n"):
            record_file.write("\n")  # after a line torn by the stop, not onto it
        def recorded(done: int, total: int, record: dict[str, Any]) -> None:
            record["jobs"] = settings.jobs  # its seconds were measured beside jobs - 1 other runs
            record["code"] = code_version()  # a later --resume may keep it beside runs of newer code
            record_file.write(json.dumps(record, allow_nan=False, default=_jsonable) + "\n")
            record_file.flush()  # a stopped bench keeps every run that finished
            if on_progress is not None:
                on_progress(done, total, record)

        records = run_tasks(to_run, settings.jobs, recorded) + reused + kept
    order = {t.key: i for i, t in enumerate(sorted(tasks, key=lambda t: (t.problem, t.optimizer, t.seed, t.budget)))}
    records.sort(key=lambda r: order[_run_key(r)])
    runs_wall = time.perf_counter() - t0

    reference = {name: PROBLEMS[name].reference() for name in problems}
    stars, results = assemble(records, problems, budgets, reference)
    summary = summarise(results, problems, optimizers, budgets)
    analysis = measure_analysis_time(settings.analysis_repeats) if settings.analysis_repeats > 0 else None
    targets = check_targets(summary, analysis, budgets, {name: PROBLEMS[name].regret_floor for name in problems})

    document: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "suite": settings.suite,
        "budgets": budgets,
        "seeds": seeds,
        "jobs": settings.jobs,
        "started_at": started_at.isoformat(timespec="seconds"),
        "runs_wall_time_s": runs_wall,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": _versions(),
        "code": code_version(),  # this bench's; each run has its own "code" (a resume keeps older runs)
        "refiner_schedule": {
            "rounds": settings.refiner_rounds,
            "split": {str(b): dict(zip(("rounds", "initial_trials", "trials_per_round"),
                                       refiner_schedule(b, settings.refiner_rounds, settings.refiner_initial_share)))
                      for b in budgets},
            "narrowing": NarrowingConfig.from_dict(settings.refiner_narrowing).to_dict(),
            "default": not refiner_options,
            "rule": "round 0 random search, then Bayesian rounds on the narrowed space, warm-started; run "
                    "separately at every budget (its schedule depends on the budget)",
        },
        "problems": [{
            "name": name, "kind": PROBLEMS[name].kind, "description": PROBLEMS[name].description,
            "space": PROBLEMS[name].space.to_dict(), "optima": [dict(o) for o in PROBLEMS[name].optima],
            "noise_sd": PROBLEMS[name].noise_sd,
            "regret_floor": PROBLEMS[name].regret_floor,
            **stars[name],
        } for name in problems],
        "optimizers": [{"name": o, "label": OPTIMIZERS[o].label, "knows_budget": OPTIMIZERS[o].knows_budget}
                       for o in optimizers],
        "skipped_optimizers": skipped,
        "n_runs": len(records),
        "reused": {"from": str(settings.reuse), "n_runs": len(reused)} if settings.reuse is not None else None,
        "resumed": {"from": str(out), "n_runs": len(kept)} if settings.resume else None,
        "errors": [{"run": _run_key(r), "error": r["error"]} for r in records if "error" in r],
        "summary": summary,
        "analysis_time": analysis,
        "targets": targets,
        "results": results,
        "runs": records,
    }
    if settings.plots:
        from refiner.bench.plots import write_plots

        document["plots"] = write_plots(records, stars, out)
    document["wall_time_s"] = time.perf_counter() - t0
    path = out / "bench.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=1, allow_nan=False, default=_jsonable) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    partial.unlink(missing_ok=True)  # bench.json holds every run now
    log.info("wrote %s", path)
    return document


def _jsonable(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
