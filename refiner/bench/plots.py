"""Incumbent curves per problem: regret of the best value so far against trials, per optimizer.

Each line is the median over seeds, with the band between the quartiles. Optimizers that ignore
the budget ran once at the largest budget and have one curve; refiner has one curve per budget,
because its schedule depends on it. Regret is drawn on a log axis, floored at ``FLOOR``; on a
noisy problem it is the noiseless regret of the best configuration by observation
(:func:`refiner.bench.harness.incumbent`).

PNG files need matplotlib (``pip install -e .[bench]``); without it only the HTML is written.
The HTML file embeds plotly.js once, so it opens offline.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from refiner.bench.harness import incumbent

__all__ = ["curves", "write_plots", "FLOOR"]

log = logging.getLogger(__name__)

FLOOR = 1e-8
COLOURS = {"refiner": "#d62728", "kt_random": "#7f7f7f", "kt_bayes": "#1f77b4", "optuna_random": "#bcbd22",
           "optuna_tpe": "#2ca02c", "bayes_opt_sdr": "#9467bd"}


def curves(runs: Sequence[Mapping[str, Any]], stars: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, dict[str, list[float]]]]:
    """problem -> line label -> {"median", "q25", "q75"} regret after each trial."""
    grouped: dict[tuple[str, str], list[list[float]]] = defaultdict(list)
    for r in runs:
        if "values" not in r or not r["values"]:
            continue
        label = f"refiner (budget {r['budget']})" if r["optimizer"] == "refiner" else r["optimizer"]
        f_star = stars[r["problem"]]["f_star"]
        curve = [max(v - f_star, FLOOR) if math.isfinite(v) else math.nan for v in incumbent(r["values"], r.get("true_values"))]
        curve += [curve[-1]] * (r["budget"] - len(curve))  # a run that stopped early keeps its incumbent
        grouped[(r["problem"], label)].append(curve)
    out: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(dict)
    for (problem, label), rows in sorted(grouped.items()):
        a = np.array(rows, dtype=float)
        q25, q50, q75 = np.nanpercentile(a, [25, 50, 75], axis=0)
        out[problem][label] = {"median": q50.tolist(), "q25": q25.tolist(), "q75": q75.tolist()}
    return dict(out)


def _colour(label: str) -> str:
    return COLOURS.get(label.split(" ")[0], "#000000")


def _png(problem: str, lines: Mapping[str, Mapping[str, list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    longest_refiner = max((len(v["median"]) for k, v in lines.items() if k.startswith("refiner")), default=0)
    for label, line in lines.items():
        x = np.arange(1, len(line["median"]) + 1)
        dashed = label.startswith("refiner") and len(line["median"]) < longest_refiner  # the smaller budgets
        ax.plot(x, line["median"], label=label, color=_colour(label), linestyle="--" if dashed else "-")
        ax.fill_between(x, line["q25"], line["q75"], color=_colour(label), alpha=0.12)
    ax.set_yscale("log")
    ax.set_xlabel("trials")
    ax.set_ylabel(f"regret of best so far (floored at {FLOOR:g})")
    ax.set_title(f"{problem}: median and quartiles over seeds")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _html(all_lines: Mapping[str, Mapping[str, Mapping[str, list[float]]]], path: Path) -> None:
    import plotly.graph_objects as go

    parts = ["<html><head><meta charset='utf-8'><title>refiner bench: incumbent curves</title></head><body>",
             "<h1>refiner bench: incumbent curves</h1><p>Median regret of the best value so far over seeds; "
             "the shaded band spans the quartiles.</p>"]
    for i, (problem, lines) in enumerate(all_lines.items()):
        fig = go.Figure()
        for label, line in lines.items():
            x = list(range(1, len(line["median"]) + 1))
            colour = _colour(label)
            fig.add_trace(go.Scatter(x=x + x[::-1], y=line["q75"] + line["q25"][::-1], fill="toself",
                                     fillcolor=colour, opacity=0.12, line={"width": 0}, hoverinfo="skip",
                                     showlegend=False, legendgroup=label))
            fig.add_trace(go.Scatter(x=x, y=line["median"], name=label, line={"color": colour},
                                     legendgroup=label))
        fig.update_layout(title=f"{problem}: regret of best so far", xaxis_title="trials",
                          yaxis_title="regret", yaxis_type="log", height=450, width=800)
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")


def write_plots(runs: Sequence[Mapping[str, Any]], stars: Mapping[str, Mapping[str, Any]], out: Path) -> dict[str, Any]:
    """``curves_<problem>.png`` (if matplotlib is installed) and ``curves.html``; returns what was written."""
    all_lines = curves(runs, stars)
    written: list[str] = []
    notes: list[str] = []
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        notes.append("PNG skipped: matplotlib is not installed (pip install -e .[bench])")
        log.warning("%s", notes[-1])
    else:
        for problem, lines in all_lines.items():
            path = out / f"curves_{problem}.png"
            _png(problem, lines, path)
            written.append(path.name)
    path = out / "curves.html"
    _html(all_lines, path)
    written.append(path.name)
    return {"files": written, "notes": notes}
