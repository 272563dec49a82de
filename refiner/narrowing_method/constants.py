"""Every fixed number of the narrowing method, in one place (the tunable ones are
:class:`refiner.narrowing_method.settings.NarrowingConfig`)."""

from __future__ import annotations

__all__ = [
    "QUANTILES", "TOP_TRIAL_SHARE", "MIN_TOP_TRIALS", "MIN_IMPORTANCE", "MIN_SHRINK", "EDGE_TOLERANCE", "LEAN",
    "EDGE_PROBE", "EXPAND_BY", "MIN_VALUE_TRIALS", "RARE_SHARE", "MIN_REGION_POINTS", "CONFIDENCE_Z",
    "MIN_GOOD_SHARE", "BOLD_TRIALS_PER_DIM", "GRID_TOLERANCE", "BOUND_TOLERANCE",
    "MIN_SILHOUETTE", "MAX_UNION_SHARE",
]

# -- the good set (step 2) -----------------------------------------------------------------------
TOP_TRIAL_SHARE = 0.2  # the best ~20% of completed trials join the good set ...
MIN_TOP_TRIALS = 3  # ... at least 3 of them
CONFIDENCE_Z = 2.0  # confidence bounds are mean +/- 2 calibrated std (about 97.7% one-sided each; Srinivas et al. 2010)
MIN_GOOD_SHARE = 0.02  # the good set keeps at least 2% of the candidates, however sure the surrogate
BOLD_TRIALS_PER_DIM = 10  # ... and goes below top_fraction only from 10 trials per tunable parameter on (Loeppky et al. 2009)

# -- numeric box (step 3) ------------------------------------------------------------------------
QUANTILES = (0.05, 0.95)  # the box holds the central 90% of the good set (Perrone et al. 2019 use the full box)
MIN_REGION_POINTS = 5  # fewer active points in the good set than this is no region at all
MIN_IMPORTANCE = 0.03  # below this share of the explained variance a parameter is left alone
MIN_SHRINK = 0.1  # a new range must be at least 10% narrower to be worth a change

# -- edge pressure (step 4) ----------------------------------------------------------------------
EDGE_TOLERANCE = 0.05  # the good region "touches" an edge within 5% of the current width
LEAN = 0.2  # ... and leaves at least 20% of the width free at the other end ...
EDGE_PROBE = 0.1  # ... and predictions at the edge beat those 10% of the width inside it
EXPAND_BY = 0.5  # a re-opened edge moves out by half the current width (towards the original)
BOUND_TOLERANCE = 1e-9  # relative: a bound this close to the original's is the original's (float noise)

# -- choice drops (step 5) -----------------------------------------------------------------------
MIN_VALUE_TRIALS = 3  # a choice value is judged only after this many trials used it
RARE_SHARE = 0.25  # "absent from the good region": under a quarter of its fair share 1/k

# -- regions (step 7) ---------------------------------------------------------------------------
# MIN_REGION_POINTS above also sets the smallest group of good configurations that makes a region.
MIN_SILHOUETTE = 0.6  # groups count as separate from a mean silhouette of 0.6 on; one uniform blob split in two scores about 0.4 (Rousseeuw 1987: above 0.5 "reasonable", above 0.7 "strong")
MAX_UNION_SHARE = 0.6  # regions only when their union holds at most 60% of the enclosing box: less saving is not worth a less regular space

# -- arithmetic ----------------------------------------------------------------------------------
GRID_TOLERANCE = 1e-9  # in grid steps: a bound this close to a grid point is on it (float noise)
