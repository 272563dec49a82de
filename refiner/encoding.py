"""A search space as a matrix: one row per configuration, one column per feature.

The surrogate and the narrowing both work on this matrix. The encoding follows Optuna's
``_transform.py`` and KerasTuner's ``value_to_prob``:

* ``float`` / ``int``: the position in the range, ``param.to_unit`` (log parameters in log space);
* unordered ``choice``: one column per value (one-hot), named ``"activation=relu"``;
* ordered ``choice``: the value's index divided by ``n - 1``;
* ``boolean``: 0 or 1;
* ``fixed``: no column (it cannot explain anything).

A parameter that is inactive under its conditions, or missing, gets :data:`INACTIVE` in all its
columns: a constant outside ``[0, 1]`` so that a tree can split "inactive" away from every real
value. Values outside the space's range still encode (outside ``[0, 1]``); trials from an
earlier, wider round are informative about what lies beyond the current box.

Besides the matrix, rows can be read back as *codes*, one array per parameter: the unit position
for numeric parameters, the value index for choices and booleans (``-1`` for a value the choice
does not offer), ``0`` for fixed ones, and ``NaN`` wherever the parameter is inactive.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from refiner.space import Boolean, Choice, Fixed, Float, Int, Parameter, SearchSpace, same_scalar

__all__ = ["INACTIVE", "Encoder", "values_from_unit"]

logger = logging.getLogger(__name__)

INACTIVE = -0.5
"""The value every column of an inactive (or missing) parameter takes."""

_NUMERIC, _ONEHOT, _ORDINAL, _BOOLEAN, _FIXED = "numeric", "onehot", "ordinal", "boolean", "fixed"


@dataclass(frozen=True)
class _Block:
    """Where one parameter lives in the matrix, and how it is encoded."""

    param: Parameter
    kind: str
    start: int
    stop: int

    @property
    def width(self) -> int:
        return self.stop - self.start


def _kind(p: Parameter) -> str:
    if isinstance(p, (Float, Int)):
        return _NUMERIC
    if isinstance(p, Boolean):
        return _BOOLEAN
    if isinstance(p, Choice):
        return _ORDINAL if p.ordered else _ONEHOT
    return _FIXED


def _label(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


class Encoder:
    """Encode assignments of ``space`` as rows of a float matrix, and read rows back.

    >>> enc = Encoder(space)
    >>> X = enc.encode([trial.hyperparameters for trial in trials])
    >>> candidates, codes = enc.sample(2000, np.random.default_rng(0))
    """

    def __init__(self, space: SearchSpace):
        self.space = space
        blocks: list[_Block] = []
        columns: list[str] = []
        for p in space:
            kind = _kind(p)
            if kind == _ONEHOT:
                names = [f"{p.name}={_label(v)}" for v in p.values]  # type: ignore[union-attr]
            elif kind == _FIXED:
                names = []
            else:
                names = [p.name]
            blocks.append(_Block(p, kind, len(columns), len(columns) + len(names)))
            columns.extend(names)
        self.columns: list[str] = columns
        self._blocks = blocks
        self._by_name = {b.param.name: b for b in blocks}

    def __repr__(self) -> str:
        return f"Encoder({len(self._blocks)} parameters -> {len(self.columns)} columns)"

    @property
    def n_columns(self) -> int:
        return len(self.columns)

    def column_slice(self, name: str) -> slice:
        """The columns of parameter ``name`` (empty for a fixed parameter)."""
        b = self._block(name)
        return slice(b.start, b.stop)

    def _block(self, name: str) -> _Block:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no parameter named {name!r}; the space has {self.space.names}") from None

    # -- assignments -> matrix ------------------------------------------------------------------
    def encode(self, assignments: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """One row per assignment; ``(n, len(columns))`` floats."""
        X = np.full((len(assignments), self.n_columns), INACTIVE, dtype=float)
        for i, assignment in enumerate(assignments):
            active = set(self.space.active_names(assignment))
            for b in self._blocks:
                if b.kind == _FIXED or b.param.name not in active or b.param.name not in assignment:
                    continue
                X[i, b.start : b.stop] = self._encode_value(b, assignment[b.param.name])
        return X

    def _encode_value(self, b: _Block, value: Any) -> np.ndarray | float:
        p = b.param
        if b.kind == _NUMERIC:
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
                return INACTIVE
            value = float(value)
            if not math.isfinite(value) or (p.log and value <= 0):  # type: ignore[union-attr]
                return INACTIVE
            return p.to_unit(value)  # type: ignore[union-attr]
        if b.kind == _BOOLEAN:
            return float(value) if isinstance(value, (bool, np.bool_)) else INACTIVE
        index = _index_of(p, value)  # type: ignore[arg-type]
        if b.kind == _ONEHOT:
            row = np.zeros(b.width)
            if index is not None:  # a value the choice no longer offers: all zeros, but active
                row[index] = 1.0
            return row
        return _ordinal_position(p, value, index)  # type: ignore[arg-type]

    # -- sampling -------------------------------------------------------------------------------
    def sample(
        self,
        n: int,
        rng: np.random.Generator,
        *,
        fixed: Mapping[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Draw ``n`` configurations the way :meth:`SearchSpace.sample` does, all at once.

        Returns the matrix and the codes (see the module docstring). Int and stepped parameters
        land on their grid; conditions are resolved in declaration order.

        ``fixed`` holds some parameters at one value (in original units) wherever they are active.
        Every parameter draws from ``rng`` for all ``n`` rows whatever ``fixed`` says, so two calls
        with equally seeded generators give the same rows except for the fixed parameters and
        what depends on them (common random numbers, used for partial dependence).
        """
        if n < 0:
            raise ValueError(f"`n` must be non-negative, got {n}")
        fixed = dict(fixed or {})
        unknown = sorted(set(fixed) - set(self._by_name))
        if unknown:
            raise KeyError(f"cannot fix {unknown}: not parameters of the space {self.space.names}")
        X = np.full((n, self.n_columns), INACTIVE, dtype=float)
        codes: dict[str, np.ndarray] = {}
        for b in self._blocks:
            p = b.param
            active = self._condition_mask(p, codes, n)
            if b.kind == _NUMERIC:
                code = _draw_unit(p, n, rng)  # type: ignore[arg-type]
                if p.name in fixed:
                    code[:] = self._encode_value(b, fixed[p.name])
            elif b.kind == _FIXED:
                code = np.zeros(n)
            else:
                k = len(p.values)  # type: ignore[union-attr]
                code = rng.integers(k, size=n).astype(float)
                if p.name in fixed:
                    index = _index_of(p, fixed[p.name])  # type: ignore[arg-type]
                    if index is None:
                        offered = list(p.values)  # type: ignore[union-attr]
                        raise ValueError(f"cannot fix {p.name!r} at {fixed[p.name]!r}: not one of {offered!r}")
                    code[:] = index
            code[~active] = np.nan
            codes[p.name] = code
            if b.kind != _FIXED:
                X[active, b.start : b.stop] = self._columns_from_code(b, code[active])
        return X, codes

    def _condition_mask(self, p: Parameter, codes: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        mask = np.ones(n, dtype=bool)
        for c in p.conditions:
            parent = self.space[c.parent]
            parent_values = (parent.value,) if isinstance(parent, Fixed) else parent.values  # type: ignore[union-attr]
            allowed = [i for i, v in enumerate(parent_values) if any(same_scalar(v, w) for w in c.values)]
            mask &= np.isin(codes[c.parent], allowed)  # NaN (inactive parent) is never allowed
        return mask

    def _columns_from_code(self, b: _Block, code: np.ndarray) -> np.ndarray:
        if b.kind in (_NUMERIC, _BOOLEAN):
            return code[:, None]
        k = b.param.values.__len__()  # type: ignore[union-attr]
        if b.kind == _ORDINAL:
            return (code / (k - 1) if k > 1 else np.full_like(code, 0.5))[:, None]
        onehot = np.zeros((len(code), k))
        onehot[np.arange(len(code)), code.astype(int)] = 1.0
        return onehot

    # -- matrix -> codes and values -------------------------------------------------------------
    def codes(self, matrix: np.ndarray) -> dict[str, np.ndarray]:
        """Per parameter: unit position or value index per row, ``NaN`` where inactive."""
        matrix = np.asarray(matrix, dtype=float)
        out: dict[str, np.ndarray] = {}
        n = matrix.shape[0]
        for b in self._blocks:
            if b.kind == _FIXED:
                code = np.zeros(n)
                code[~self._condition_mask(b.param, out, n)] = np.nan
            else:
                cols = matrix[:, b.start : b.stop]
                inactive = np.all(cols == INACTIVE, axis=1)
                if b.kind == _NUMERIC:
                    code = cols[:, 0].copy()
                elif b.kind == _BOOLEAN:
                    code = np.round(cols[:, 0])
                elif b.kind == _ORDINAL:
                    k = len(b.param.values)  # type: ignore[union-attr]
                    pos = cols[:, 0] * (k - 1) if k > 1 else np.zeros(n)
                    code = np.round(pos)
                    # off the index grid or outside it: a value the choice does not offer
                    code[(np.abs(pos - code) > 1e-6) | (code < 0) | (code > k - 1)] = -1
                else:
                    code = np.argmax(cols, axis=1).astype(float)
                    code[cols.max(axis=1) < 0.5] = -1
                code[inactive] = np.nan
            out[b.param.name] = code
        return out

    def values(self, name: str, code: np.ndarray) -> list[Any]:
        """Codes of one parameter back to values in original units (``None`` where inactive)."""
        b = self._block(name)
        code = np.asarray(code, dtype=float)
        out: list[Any] = [None] * len(code)
        ok = ~np.isnan(code)
        if b.kind == _NUMERIC:
            raw = values_from_unit(b.param, code[ok])  # type: ignore[arg-type]
            for i, v in zip(np.flatnonzero(ok), raw):
                out[i] = int(v) if isinstance(b.param, Int) else float(v)
            return out
        choices = (b.param.value,) if b.kind == _FIXED else b.param.values  # type: ignore[union-attr]
        for i in np.flatnonzero(ok):
            j = int(code[i])
            out[i] = choices[j] if 0 <= j < len(choices) else None
        return out

    def decode(self, matrix: np.ndarray) -> list[dict[str, Any]]:
        """Rows back to assignments (active parameters only). Numeric values are snapped into the
        range, so this is exact for rows drawn by :meth:`sample`, approximate otherwise."""
        codes = self.codes(matrix)
        per_param = {name: self.values(name, code) for name, code in codes.items()}
        n = np.asarray(matrix).shape[0]
        rows: list[dict[str, Any]] = [{} for _ in range(n)]
        for name, vals in per_param.items():
            for row, v in zip(rows, vals):
                if v is not None:
                    row[name] = v
        return rows


# -- helpers shared with narrowing -------------------------------------------------------------
def values_from_unit(p: Float | Int, u: np.ndarray) -> np.ndarray:
    """Vectorised ``p.from_unit``: clip to [0, 1], map to the range (log space), snap to the grid."""
    u = np.clip(np.asarray(u, dtype=float), 0.0, 1.0)
    if p.high == p.low:
        return np.full(u.shape, p.low, dtype=float)
    if p.log:
        raw = np.exp(math.log(p.low) + u * (math.log(p.high) - math.log(p.low)))
    else:
        raw = p.low + u * (p.high - p.low)
    step = p.grid_step if isinstance(p, Int) else p.step
    if step is not None:
        raw = p.low + np.round((raw - p.low) / step) * step
    return np.clip(raw, p.low, p.high)


def _draw_unit(p: Float | Int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit positions of ``n`` draws, uniform over what the parameter can take (as ``SearchSpace.sample``)."""
    if isinstance(p, Int) and p.log:
        # Log-uniform, then rounded to an integer: the position must be that of the integer.
        raw = np.exp(math.log(p.low) + rng.random(n) * (math.log(p.high) - math.log(p.low)))
        v = np.clip(np.round(raw), p.low, p.high)
        if p.high == p.low:
            return np.full(n, 0.5)
        return (np.log(v) - math.log(p.low)) / (math.log(p.high) - math.log(p.low))
    step = p.grid_step if isinstance(p, Int) else p.step
    if step is not None:
        k_max = int(round((p.high - p.low) / step))
        k = rng.integers(k_max + 1, size=n)
        return k / k_max if k_max > 0 else np.full(n, 0.5)
    u = rng.random(n)
    return u if p.high > p.low else np.full(n, 0.5)


def _index_of(p: Choice | Boolean, value: Any) -> int | None:
    for i, v in enumerate(p.values):
        if same_scalar(value, v):
            return i
    return None


def _ordinal_position(p: Choice, value: Any, index: int | None) -> float:
    k = len(p.values)
    if index is not None:
        return index / (k - 1) if k > 1 else 0.5
    # A value the ordered choice no longer offers (dropped in an earlier round): place it by
    # linear inter/extrapolation of the numeric values, so "below the smallest" stays below.
    nums = [v for v in p.values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if k < 2 or len(nums) != k or isinstance(value, bool) or not isinstance(value, (int, float)):
        return INACTIVE
    xs = np.asarray(nums, dtype=float)
    if not (np.all(np.diff(xs) > 0) or np.all(np.diff(xs) < 0)):
        return INACTIVE
    if xs[0] > xs[-1]:
        xs = xs[::-1]
        idx = np.arange(k - 1, -1, -1, dtype=float)
    else:
        idx = np.arange(k, dtype=float)
    v = float(value)
    if v < xs[0]:
        pos = idx[0] + (v - xs[0]) / (xs[1] - xs[0]) * (idx[1] - idx[0])
    elif v > xs[-1]:
        pos = idx[-1] + (v - xs[-1]) / (xs[-1] - xs[-2]) * (idx[-1] - idx[-2])
    else:
        pos = float(np.interp(v, xs, idx))
    return pos / (k - 1)
