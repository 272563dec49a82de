"""The benchmark's plain-text report: one regret table per budget, then ranks, wins, narrowing, time, targets."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

__all__ = ["format_report", "fmt_regret"]


def fmt_regret(x: float | None) -> str:
    """Short and sortable by eye: 0, 0.0123, 12.3, 1.2e-05."""
    if x is None:
        return "-"
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.3g}"
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def format_report(document: Mapping[str, Any]) -> str:
    summary = document["summary"]
    optimizers = [o["name"] for o in document["optimizers"]]
    problems = [p["name"] for p in document["problems"]]
    out: list[str] = []
    for b in (str(x) for x in document["budgets"]):
        table = summary["per_problem"][b]
        out.append(f"Final regret at budget {b}: median [q25, q75] over {len(document['seeds'])} seeds "
                   f"(regret = best found - f*; lower is better)")
        rows = []
        for p in problems:
            cells = table.get(p, {})
            rows.append([p] + [f"{fmt_regret(cells[o]['median'])} [{fmt_regret(cells[o]['q25'])}, "
                               f"{fmt_regret(cells[o]['q75'])}]" if o in cells else "n/a" for o in optimizers])
        ranks = summary["mean_rank"][b]
        rows.append(["mean rank"] + [f"{ranks[o]['mean_rank']:.2f}" + ("" if ranks[o]["n_problems"] == len(problems)
                                     else f" ({ranks[o]['n_problems']} pr.)") if o in ranks else "-"
                                     for o in optimizers])
        wins = summary["win_rate"][b]
        rows.append(["refiner wins vs"] + [f"{wins[o]['rate']:.0%} ({wins[o]['wins']}/{wins[o]['ties']}/{wins[o]['losses']})"
                                           if o in wins else "-" for o in optimizers])
        stuck = summary["stuck_rate"][b]
        rows.append(["stuck rate"] + [f"{stuck[o]:.0%}" if o in stuck else "-" for o in optimizers])
        orch = summary["orchestration"][b]["median_s"]
        rows.append(["orchestration s"] + [f"{orch[o]:.2f}" if o in orch else "-" for o in optimizers])
        out.append(_table(["problem"] + optimizers, rows))
        n = summary["refiner_narrowing"][b]
        ratio = summary["orchestration"][b]["refiner_over_kt_bayes_geomean"]
        share, near = n["contains_optimum_share"], n.get("near_optimum_share")
        out.append(
            f"refiner at budget {b}: refined space holds the known optimum in "
            f"{'-' if share is None else f'{share:.0%}'} of {n['runs_with_known_optimum']} runs"
            f" (it or a point within 1% of f's range of f*: {'-' if near is None else f'{near:.0%}'})"
            f"{' (missed: ' + ', '.join(n['missed']) + ')' if n['missed'] else ''}; refined volume median "
            f"{fmt_regret(n['volume_fraction_median'])} of the original ({'-' if n['volume_at_most_10pct_share'] is None else format(n['volume_at_most_10pct_share'], '.0%')} of runs at most 10%); "
            f"orchestration time vs kt_bayes: {'-' if ratio is None else f'{ratio:.2f}x'} (geometric mean over problems)")
        basin = summary.get("global_basin", {}).get(b)  # older bench.json files have none
        if basin:
            out.append(f"global basin reached at budget {b} (best below the second-deepest minimum), runs: " + "; ".join(
                f"{p} " + ", ".join(f"{o} {k}/{m}" for o, (k, m) in cells.items()) for p, cells in basin.items()))
            split = n.get("contains_by_basin", {})
            if split:
                (kf, nf), (kn, nn) = split["found"], split["not_found"]
                out.append(f"refiner's refined space holds the optimum in {kf}/{nf} runs that reached the global "
                           f"basin and {kn}/{nn} that did not")
        out.append("")
    analysis = document.get("analysis_time")
    if analysis:
        # Bench files before the audit was timed hold no audit_s.
        audited = f" + audit of {analysis['cuts_audited']} earlier cuts" if "audit_s" in analysis else ""
        out.append(f"refiner analysis per round at {analysis['n_trials']} trials x {analysis['n_parameters']} parameters: "
                   f"median {analysis['total_s_median']:.2f} s, worst {analysis['total_s_max']:.2f} s "
                   f"(fit_surrogate + refine{audited}, {analysis['repeats']} repeats)")
    out.append("wins column: rate (wins/ties/losses) over paired (problem, seed) runs; stuck: final regret worse "
               "than kt_random's median")
    noisy = [f"{p['name']} (sd {p['noise_sd']:g})" for p in document["problems"] if p.get("noise_sd")]
    if noisy:
        out.append(f"noisy problems: {', '.join(noisy)}; their regret is the noiseless value of the configuration "
                   "with the best noisy observation, minus f*")
    out.append("")
    out.append("Targets:")
    for t in document.get("targets", []):
        mark = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        out.append(f"  [{mark}] {t['target']}: {t['evidence']}")
    out.append(f"\nwall time {document['wall_time_s']:.0f} s with {document['jobs']} worker(s); "
               f"{document['n_runs']} runs, {len(document['errors'])} failed")
    return "\n".join(out)
