"""The numbers the issue asks for, computed from per-budget results, and the targets checked against them.

* per problem, budget and optimizer: median and quartiles of final regret over seeds, the stuck
  rate, median wall/orchestration time;
* per budget: each optimizer's mean rank across problems (rank of its median regret among the
  optimizers that ran on the problem, ties sharing the average rank); refiner's win rate against
  each optimizer over paired (problem, seed) runs, a tie counting half;
* the stuck rate: the share of runs whose final regret is worse than KerasTuner random search's
  median on that problem and budget;
* for refiner: the share of runs whose refined space holds a known optimum (synthetic problems
  only: training problems have no known minimiser) and the refined volume as a fraction of the
  original (:mod:`refiner.bench.regions`);
* orchestration time (wall minus objective) per run, refiner's median over KerasTuner Bayesian
  optimization's median per problem, and their geometric mean across problems;
* on the multimodal problems with a known second minimum: per optimizer, how many runs ended with
  their best below it (in the global basin), and refiner's containment among the runs that found
  that basin and among those that did not (a box cannot keep a basin no trial has seen).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.stats import rankdata

__all__ = ["summarise", "check_targets", "STUCK_BASELINE", "BO_BASELINE"]

STUCK_BASELINE = "kt_random"  # "worse than random search's median": KerasTuner's RandomSearch
BO_BASELINE = "kt_bayes"
# Issue 12's volume targets: a median refined volume of at most 20 % of the original at a budget of
# 30 trials and 10 % at 60; a budget between or beyond takes the target of the nearest one below
# (the stricter 10 % from 60 on), one under 30 the looser 20 %.
VOLUME_TARGETS = {30: 0.2, 60: 0.1}


def volume_target(budget: int) -> float:
    """The largest median refined volume (a fraction of the original) that meets the target at ``budget``."""
    below = [b for b in VOLUME_TARGETS if b <= budget]
    return VOLUME_TARGETS[max(below) if below else min(VOLUME_TARGETS)]
_TIE = 1e-12


def _quartiles(values: Sequence[float]) -> dict[str, float]:
    q25, q50, q75 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
    return {"median": float(q50), "q25": float(q25), "q75": float(q75)}


def _tied(a: float, b: float) -> bool:
    return abs(a - b) <= _TIE * max(1.0, abs(a), abs(b))


def _geomean(xs: Sequence[float]) -> float | None:
    xs = [x for x in xs if x is not None and x > 0 and math.isfinite(x)]
    return float(math.exp(sum(math.log(x) for x in xs) / len(xs))) if xs else None


def summarise(results: Sequence[Mapping[str, Any]], problems: Sequence[str], optimizers: Sequence[str],
              budgets: Sequence[int]) -> dict[str, Any]:
    """Everything of the module docstring, keyed by budget (as a string, for JSON)."""
    by: dict[tuple[str, str, int], list[Mapping[str, Any]]] = defaultdict(list)
    for r in results:
        if r["regret"] is not None:
            by[(r["problem"], r["optimizer"], r["budget"])].append(r)

    out: dict[str, Any] = {"per_problem": {}, "mean_rank": {}, "win_rate": {}, "stuck_rate": {},
                           "refiner_narrowing": {}, "orchestration": {}, "global_basin": {}}
    for b in budgets:
        key = str(b)
        table: dict[str, dict[str, Any]] = {}
        for p in problems:
            table[p] = {}
            baseline = [r["regret"] for r in by.get((p, STUCK_BASELINE, b), [])]
            baseline_median = float(np.median(baseline)) if baseline else None
            for o in optimizers:
                runs = by.get((p, o, b), [])
                if not runs:
                    continue
                regrets = [r["regret"] for r in runs]
                stuck = None if baseline_median is None else float(np.mean(
                    [r > baseline_median and not _tied(r, baseline_median) for r in regrets]))
                table[p][o] = {
                    "n": len(runs), **_quartiles(regrets), "stuck_rate": stuck,
                    "wall_s": float(np.median([r["wall_s"] for r in runs])),
                    "orchestration_s": float(np.median([r["orchestration_s"] for r in runs])),
                }
        out["per_problem"][key] = table

        # Mean rank of the median regret, among the optimizers present on each problem.
        ranks: dict[str, list[float]] = defaultdict(list)
        for p, cells in table.items():
            names = list(cells)
            if len(names) < 2:
                continue
            medians = np.array([cells[o]["median"] for o in names])
            # Equal medians (e.g. several optimizers at regret 0) share a rank: round off float noise.
            for o, rank in zip(names, rankdata(np.round(medians, 12), method="average")):
                ranks[o].append(float(rank))
        out["mean_rank"][key] = {o: {"mean_rank": float(np.mean(ranks[o])), "n_problems": len(ranks[o])}
                                 for o in optimizers if ranks.get(o)}

        # Refiner against each optimizer, paired by (problem, seed).
        wins: dict[str, dict[str, Any]] = {}
        mine = {(r["problem"], r["seed"]): r["regret"] for (p, o, bb), rs in by.items()
                if o == "refiner" and bb == b for r in rs}
        for o in optimizers:
            if o == "refiner":
                continue
            w = t = lost = 0
            for (p, oo, bb), rs in by.items():
                if oo != o or bb != b:
                    continue
                for r in rs:
                    mine_regret = mine.get((p, r["seed"]))
                    if mine_regret is None:
                        continue
                    if _tied(mine_regret, r["regret"]):
                        t += 1
                    elif mine_regret < r["regret"]:
                        w += 1
                    else:
                        lost += 1
            n = w + t + lost
            if n:
                wins[o] = {"wins": w, "ties": t, "losses": lost, "n": n, "rate": (w + 0.5 * t) / n}
        out["win_rate"][key] = wins

        stuck: dict[str, Any] = {}
        for o in optimizers:
            flags = [table[p][o]["stuck_rate"] * table[p][o]["n"] for p in problems
                     if o in table[p] and table[p][o]["stuck_rate"] is not None]
            counts = [table[p][o]["n"] for p in problems if o in table[p] and table[p][o]["stuck_rate"] is not None]
            if counts:
                stuck[o] = float(sum(flags) / sum(counts))
        out["stuck_rate"][key] = stuck

        refined = [r for (p, o, bb), rs in by.items() if o == "refiner" and bb == b for r in rs]
        with_optimum = [r for r in refined if r.get("contains_optimum") is not None]
        volumes = [r["volume_fraction"] for r in refined if r.get("volume_fraction") is not None]
        out["refiner_narrowing"][key] = {
            "runs_with_known_optimum": len(with_optimum),
            "contains_optimum_share": (float(np.mean([r["contains_optimum"] for r in with_optimum]))
                                       if with_optimum else None),
            "missed": sorted({f"{r['problem']}/seed{r['seed']}" for r in with_optimum if not r["contains_optimum"]}),
            # issue 12's criterion: the optimum or a point within 1 % of f's range of f* (bench.regions)
            "near_optimum_share": _share([r.get("near_optimum") for r in with_optimum]),
            "volume_fraction_median": float(np.median(volumes)) if volumes else None,
            "volume_fraction_mean": float(np.mean(volumes)) if volumes else None,
            "volume_at_most_10pct_share": float(np.mean([v <= 0.1 for v in volumes])) if volumes else None,
            "per_problem_volume_median": {
                p: float(np.median([r["volume_fraction"] for r in refined if r["problem"] == p]))
                for p in problems if any(r["problem"] == p for r in refined)
            },
            # [contained, runs] among the runs that found the global basin and those that did not
            "contains_by_basin": {
                "found": _count([r["contains_optimum"] for r in with_optimum if r.get("global_basin") is True]),
                "not_found": _count([r["contains_optimum"] for r in with_optimum if r.get("global_basin") is False]),
            },
        }
        out["global_basin"][key] = {  # [runs in the global basin, runs] per problem that knows its basins
            p: {o: _count([r["global_basin"] for r in by[(p, o, b)]]) for o in optimizers if by.get((p, o, b))}
            for p in problems if any("global_basin" in r for o in optimizers for r in by.get((p, o, b), []))
        }

        ratios = {}
        for p in problems:
            mine_cell, bo_cell = table[p].get("refiner"), table[p].get(BO_BASELINE)
            if mine_cell and bo_cell and bo_cell["orchestration_s"] > 0:
                ratios[p] = mine_cell["orchestration_s"] / bo_cell["orchestration_s"]
        out["orchestration"][key] = {
            "median_s": {o: float(np.median([table[p][o]["orchestration_s"] for p in problems if o in table[p]]))
                         for o in optimizers if any(o in table[p] for p in problems)},
            "refiner_over_kt_bayes": ratios,
            "refiner_over_kt_bayes_geomean": _geomean(list(ratios.values())),
        }
    return out


def check_targets(summary: Mapping[str, Any], analysis: Mapping[str, Any] | None,
                  budgets: Sequence[int], regret_floors: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """The issue's targets, each with ``met`` (True/False/None when not measured) and its evidence.

    ``regret_floors`` (problem -> the smallest regret its score resolves, ``Problem.regret_floor``):
    where stock BO's median is already at or under it, half of it cannot be reached, so the "half of
    kt_bayes" target leaves that problem out and names it (the issue: "where that is attainable").
    """
    floors = regret_floors or {}
    targets: list[dict[str, Any]] = []

    def add(name: str, met: bool | None, evidence: str) -> None:
        targets.append({"target": name, "met": met, "evidence": evidence})

    for b in (str(x) for x in budgets):
        ranks = summary["mean_rank"][b]
        if "refiner" in ranks and len(ranks) > 1:
            best = min(ranks, key=lambda o: ranks[o]["mean_rank"])
            mine = ranks["refiner"]["mean_rank"]
            add(f"best mean rank at budget {b}", all(mine <= v["mean_rank"] for v in ranks.values()),
                f"refiner {mine:.2f}; best {best} {ranks[best]['mean_rank']:.2f}")
        else:
            add(f"best mean rank at budget {b}", None, "refiner and at least one other optimizer are needed")

        table = summary["per_problem"][b]
        halves = [(p, c["refiner"]["median"], c[BO_BASELINE]["median"]) for p, c in table.items()
                  if "refiner" in c and BO_BASELINE in c]
        if halves:
            at_floor = [p for p, _, bo in halves if bo <= floors.get(p, 0.0) or _tied(bo, floors.get(p, 0.0))]
            attainable = [(p, m, bo) for p, m, bo in halves if p not in at_floor]
            ok = [p for p, m, bo in attainable if m <= 0.5 * bo]
            missed = ", ".join(p for p, _, _ in attainable if p not in ok) or "none"
            add(f"median regret <= half of kt_bayes on >= 80% of problems at budget {b}",
                len(ok) >= 0.8 * len(attainable) if attainable else None,
                f"{len(ok)}/{len(attainable)} problems ({missed} missed"
                f"{'; at the noise floor, left out: ' + ', '.join(at_floor) if at_floor else ''})")
            above = [p for p, m, bo in halves if m > bo and not _tied(m, bo)]
            add(f"median regret never above kt_bayes's at budget {b}", not above,
                f"above on {', '.join(above)}" if above else f"never above on {len(halves)} problems")
        else:
            add(f"median regret <= half of kt_bayes on >= 80% of problems at budget {b}", None, "kt_bayes not run")
            add(f"median regret never above kt_bayes's at budget {b}", None, "kt_bayes not run")
        worse = [(p, c["refiner"]["median"], c[STUCK_BASELINE]["median"]) for p, c in table.items()
                 if "refiner" in c and STUCK_BASELINE in c]
        if worse:
            bad = [p for p, m, rs in worse if m > rs and not _tied(m, rs)]
            add(f"median regret never worse than kt_random at budget {b}", not bad,
                f"worse on {', '.join(bad)}" if bad else f"never worse on {len(worse)} problems")
        else:
            add(f"median regret never worse than kt_random at budget {b}", None, "kt_random not run")

        narrowing = summary["refiner_narrowing"][b]
        share = narrowing["contains_optimum_share"]
        near = narrowing.get("near_optimum_share")
        add(f"optimum (or a point within 1% of f's range of f*) inside the refined space in >= 97% of runs at "
            f"budget {b}", None if share is None else (near if near is not None else share) >= 0.97,
            "no run with a known optimum" if share is None else
            f"{'-' if near is None else f'{near:.0%}'} of {narrowing['runs_with_known_optimum']} runs "
            f"(the optimum itself: {share:.0%})")
        vol, limit = narrowing["volume_fraction_median"], volume_target(int(b))
        add(f"refined volume <= {limit:.0%} of the original at budget {b}", None if vol is None else vol <= limit,
            "no refiner run" if vol is None else
            f"median {vol:.3g}; {narrowing['volume_at_most_10pct_share']:.0%} of runs at or under 10% of the original")

        ratio = summary["orchestration"][b]["refiner_over_kt_bayes_geomean"]
        per = summary["orchestration"][b]["refiner_over_kt_bayes"]
        add(f"orchestration time no more than kt_bayes at budget {b}",
            None if ratio is None else all(r <= 1.0 for r in per.values()),
            "kt_bayes not run" if ratio is None else
            f"refiner/kt_bayes geometric mean {ratio:.2f}, worst {max(per.values()):.2f}")
    if analysis is not None:
        add("analysis per round under 1 s at 200 trials x 8 parameters", analysis["total_s_max"] < 1.0,
            f"median {analysis['total_s_median']:.2f} s, worst {analysis['total_s_max']:.2f} s "
            f"of {analysis['repeats']} repeats")
    return targets


def _count(flags: Sequence[Any]) -> list[int]:
    """``[true flags, flags]``: a count that keeps its denominator (the JSON holds both)."""
    return [sum(bool(f) for f in flags), len(flags)]


def _share(flags: list[bool | None]) -> float | None:
    """The share of true flags among those measured (None: not measured, e.g. a reused older run)."""
    measured = [bool(f) for f in flags if f is not None]
    return float(np.mean(measured)) if measured else None
