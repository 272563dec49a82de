"""Step 7, regions: one box per group of good configurations, when the good set forms separate groups.

On a multimodal problem the good set can sit in two or three separate basins. One box around all
of them stays wide; one box around the incumbent's basin loses the others. So the good set (the
best-predicted candidates plus the top trials) is grouped by Ward's agglomerative clustering
(scikit-learn's ``AgglomerativeClustering``: deterministic, and here a few times faster than
k-means with restarts) in the unit coordinates of the numeric parameters narrowing found
important, into k = 2 .. ``max_regions`` groups, and the k with the best mean silhouette
(Rousseeuw 1987) is kept when it is at least ``MIN_SILHOUETTE``. Each group's
box is made as the single box is (its ``QUANTILES``, the margin, the minimum width, the incumbent
inside, snapped outward onto the grid), clipped to the enclosing box the per-parameter decisions
give. The next round then searches the union of these boxes: the "multiple promising regions"
that Perrone et al. (NeurIPS 2019) leave to future work and that TuRBO (Eriksson et al., NeurIPS
2019) keeps as several local trust regions, here as one space searched by one Bayesian round.

Regions are proposed only when they clearly apply, so a unimodal good set changes nothing: at
least 2 groups, each of at least ``MIN_REGION_POINTS`` good candidates, the incumbent inside one
of them, and the union at most ``MAX_UNION_SHARE`` of the enclosing box.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from refiner.errors import ValidationError
from refiner.narrowing_method import reasons
from refiner.narrowing_method.bounds import snap_outward, value_at
from refiner.narrowing_method.constants import (
    EDGE_TOLERANCE, MAX_UNION_SHARE, MIN_IMPORTANCE, MIN_REGION_POINTS, MIN_SILHOUETTE, QUANTILES,
)
from refiner.narrowing_method.evidence import Evidence
from refiner.narrowing_method.steps import at_least_min_width
from refiner.space import Float, Int, SearchSpace
from refiner.space.regions import union_fraction

__all__ = ["Regions", "find_regions", "kept_regions", "grouping_parameters", "groups", "boxes_of"]


@dataclass(frozen=True)
class Regions:
    """The regions narrowing proposes, and the evidence for them (``decisions.json``'s ``regions``)."""

    boxes: tuple[dict[str, tuple[Any, Any]], ...]  # per region, name -> (low, high); names at full range left out
    names: tuple[str, ...]  # the parameters the good set was grouped in (or the regions bound, when kept)
    sizes: tuple[int, ...]  # good candidates per region (empty when kept)
    silhouette: float | None  # None: regions kept from the round's own space, not grouped anew
    share: float  # the union's share of the enclosing box
    incumbent_region: int | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        out = {"regions": [{n: [lo, hi] for n, (lo, hi) in box.items()} for box in self.boxes],
               "names": list(self.names), "sizes": list(self.sizes), "silhouette": self.silhouette,
               "share": self.share, "incumbent_region": self.incumbent_region, "reason": self.reason}
        return {k: v for k, v in out.items() if v is not None}


def grouping_parameters(ev: Evidence, enclosing: SearchSpace) -> list[str]:
    """The numeric, unconditional parameters with a range (now and next round) and an importance of
    at least ``MIN_IMPORTANCE``: where narrowing found the objective depends on them."""
    out = []
    for p in ev.space:
        nxt = enclosing[p.name] if p.name in enclosing else None
        importance = ev.model.importances.get(p.name)
        if (isinstance(p, (Float, Int)) and not p.conditions and p.high > p.low
                and isinstance(nxt, (Float, Int)) and nxt.high > nxt.low
                and importance is not None and importance >= MIN_IMPORTANCE):
            out.append(p.name)
    return out


def groups(points: np.ndarray, n_good: int, max_k: int) -> tuple[np.ndarray, float] | None:
    """Ward labels of ``points`` for the k in 2..``max_k`` with the best mean silhouette, if that
    is at least ``MIN_SILHOUETTE`` and every group holds ``MIN_REGION_POINTS`` of the first
    ``n_good`` points (the good candidates); None otherwise."""
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import silhouette_score

    if len(points) < 2 * MIN_REGION_POINTS or float(np.ptp(points, axis=0).max()) == 0.0:
        return None
    best: tuple[np.ndarray, float] | None = None
    for k in range(2, max_k + 1):
        labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(points)
        if len(set(labels)) < k or min(np.sum(labels[:n_good] == c) for c in range(k)) < MIN_REGION_POINTS:
            continue
        score = float(silhouette_score(points, labels))
        if score >= MIN_SILHOUETTE and (best is None or score > best[1]):
            best = (labels, score)
    return best


def find_regions(ev: Evidence, enclosing: SearchSpace) -> Regions | None:
    """The regions for the next round (``enclosing`` is the space the decisions give), or None."""
    inc = ev.incumbent
    if ev.config.max_regions < 2 or inc is None or ev.good.size == 0:
        return None
    names = grouping_parameters(ev, enclosing)
    if not names:
        return None
    n_good = ev.good.size
    # The good candidates, then the top trials (the incumbent first), in the current unit coordinates.
    points = np.column_stack([np.concatenate([ev.good.codes[n], ev.trial_codes[n][: ev.n_top]]) for n in names])
    found = groups(points, n_good, ev.config.max_regions)
    if found is None:
        return None
    labels, silhouette = found
    inc_label = int(labels[n_good])
    k = int(labels.max()) + 1
    boxes = []
    for c in range(k):
        holds_inc = c == inc_label
        box = {}
        for j, name in enumerate(names):
            bound = _bound(ev, enclosing, name, points[labels == c, j], inc.hyperparameters[name] if holds_inc else None)
            full = enclosing[name]
            if bound != (full.low, full.high):  # type: ignore[union-attr]
                box[name] = bound
        if not box:
            return None  # one group spans the enclosing box: the union is the box
        boxes.append(box)
    try:
        space = enclosing.with_regions(boxes)
    except ValidationError:  # e.g. a degenerate bound after snapping: no regions rather than a wrong space
        return None
    share = union_fraction({p.name: p for p in enclosing}, space.regions)
    if share > MAX_UNION_SHARE or not space.contains(inc.hyperparameters):
        return None
    sizes = tuple(int(np.sum(labels[:n_good] == c)) for c in range(k))
    described = [r.describe() for r in space.regions]
    return Regions(tuple(boxes), tuple(names), sizes, round(silhouette, 4), round(share, 4), inc_label,
                   reasons.regions(described, names, sizes, silhouette, share, inc_label, inc.trial_id))


def _bound(ev: Evidence, enclosing: SearchSpace, name: str, u: np.ndarray, incumbent: Any) -> tuple[Any, Any]:
    """One group's range of ``name``: the single box's rules (narrowing_method.steps.new_range)
    applied to the group, inside the enclosing range; an edge the group reaches goes to the
    enclosing range's edge (which a re-opened edge moved out)."""
    p = ev.space[name]
    full = enclosing[name]
    assert isinstance(p, (Float, Int)) and isinstance(full, (Float, Int))
    q_lo, q_hi = (float(q) for q in np.quantile(u, QUANTILES))
    lo, hi = max(0.0, q_lo - ev.config.margin), min(1.0, q_hi + ev.config.margin)
    if incumbent is not None:
        u_inc = p.to_unit(float(incumbent))
        lo, hi = min(lo, u_inc), max(hi, u_inc)
    orig = ev.original[name] if name in ev.original else None
    if not (isinstance(orig, type(p)) and orig.log == p.log):
        orig = p
    lo, hi = at_least_min_width(lo, hi, min(1.0, ev.config.min_width * orig.width / p.width))
    low, high = snap_outward(p, value_at(p, lo), value_at(p, hi), full.low, full.high)
    if lo <= EDGE_TOLERANCE:
        low = full.low
    if hi >= 1.0 - EDGE_TOLERANCE:
        high = full.high
    if incumbent is not None:
        low, high = min(low, incumbent), max(high, incumbent)
    return low, high


def kept_regions(space: SearchSpace) -> Regions | None:
    """The regions of ``space`` kept as they are (a round the evidence gate closed changes nothing)."""
    if not space.regions:
        return None
    boxes = tuple({n: (lo, hi) for n, lo, hi in r} for r in space.regions)
    names = tuple(dict.fromkeys(n for r in space.regions for n in r.names))
    share = round(union_fraction({p.name: p for p in space}, space.regions), 4)
    return Regions(boxes, names, (), None, share, None, reasons.regions_kept(len(boxes)))


def boxes_of(regions: Regions | None) -> Sequence[dict[str, Any]] | None:
    """The regions in the form :class:`~refiner.space.SearchSpace` takes (None: no regions)."""
    return None if regions is None else [{n: [lo, hi] for n, (lo, hi) in box.items()} for box in regions.boxes]
