"""What every chart of the app shares, whichever library draws it: round colours, score titles,
when an axis goes logarithmic, and round tick values (labelled as the rest of the app writes numbers).

:mod:`~refiner.review.summary_charts` (Vega-Lite, drawn on every load) and
:mod:`~refiner.review.figures` (Plotly, drawn on demand) both take their style from here, so a
round has one colour and a score one axis across the page.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from refiner.trial import Objective

__all__ = ["round_color"]

# Plotly's default qualitative palette; a round keeps its colour in every chart.
PALETTE = ("#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880",
           "#FF97FF", "#FECB52")


def round_color(k: int) -> str:
    return PALETTE[k % len(PALETTE)]


def score_title(objective: Objective) -> str:
    return f"{objective.name} ({'lower' if objective.direction == 'min' else 'higher'} is better)"


def wants_log(values: Iterable[float | None]) -> bool:
    # Losses often span decades (Branin: 0.4 to 300); on a linear axis the gains of the later,
    # narrowed rounds are invisible.
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) >= 100


def numbers(values: Iterable[Any], positive: bool = False) -> list[float]:
    """The finite numbers among ``values`` (booleans and None left out; only > 0 if ``positive``)."""
    return [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v) and (v > 0 or not positive)]


def tick_values(log: bool, values: Iterable[Any]) -> list[float]:
    """Round ticks covering ``values``: 1-2-5 steps on a linear axis, 1-2-5 per decade on a log
    one (decades only when wide). Empty when there is nothing to cover."""
    if not log:
        found = numbers(values)
        return linear_ticks(min(found), max(found)) if found else []
    found = numbers(values, positive=True)
    if not found:
        return []
    lo, hi = math.log10(min(found)), math.log10(max(found))
    pad = 0.06 * (hi - lo)  # about what Plotly's autorange adds, so the outer decades get labels too
    return log_ticks(10 ** (lo - pad), 10 ** (hi + pad))


def linear_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round ticks (1-2-5 steps) covering [lo, hi], a little beyond as Plotly pads."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks = [first + i * step for i in range(int(round((hi - first) / step)) + 2)]
    # Rounded to the step's precision, so 0.30000000000000004 is written 0.3.
    digits = max(0, -math.floor(math.log10(step)) + 1)
    return [round(t, digits) for t in ticks if lo - step <= t <= hi + step]


def log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks between ``lo`` and ``hi`` (positive), or the two ends if fewer than two fit."""
    ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
             for m in (1, 2, 5) if lo <= m * 10.0 ** e <= hi]
    if len(ticks) > 8:
        ticks = [t for t in ticks if f"{t:e}".startswith("1")] or ticks
    return ticks if len(ticks) >= 2 else [lo, hi]
