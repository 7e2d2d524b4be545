"""Domains built from data: the per-feature range of a data set, ε-balls around inputs, and a summary.

* :func:`box_from_data`: ``[min_i - m w_i, max_i + m w_i]`` per input entry ``i`` over the rows of the data,
  ``w_i = max_i - min_i`` and ``m`` a relative margin; entries constant in the data (``w_i = 0``) stay
  fixed (``lower = upper``): exactcomp then folds them into the first layer's bias.
* :func:`balls`: ``[x_i - ε, x_i + ε]`` around each point (L∞ balls), one box per point: their union is
  the domain (e.g. one ball per test input).
* both clipped to an outer box when given (``[0, 1]`` for images, say).
* :func:`summary`: dimensions, boxes, fixed inputs, and a volume proxy: the geometric mean width of the
  non-fixed entries (``exp(mean log w)``) and ``log10`` of the box volume over them.
"""

from __future__ import annotations

import numpy as np

from exactcomp.domain import Box
from exactcomp.errors import DomainError


def _rows(data, what: str) -> np.ndarray:
    data = np.asarray(data, dtype=np.float64)
    if data.ndim == 0 or data.size == 0:
        raise DomainError(f"{what}: no data")
    if not np.isfinite(data).all():
        raise DomainError(f"{what}: contains NaN or infinite values")
    return data.reshape(1, -1) if data.ndim == 1 else data.reshape(len(data), -1)


def _clipped(lower: np.ndarray, upper: np.ndarray, outer: Box | None, what: str) -> Box:
    if outer is not None:
        if outer.size != lower.size:
            raise DomainError(f"{what}: the outer box has {outer.size} entries, the data {lower.size}")
        lower, upper = np.clip(lower, outer.lower, outer.upper), np.clip(upper, outer.lower, outer.upper)
    return Box(lower, upper)


def box_from_data(data, margin: float = 0.0, outer: Box | None = None, what: str = "data") -> Box:
    """The box of the data's per-entry ranges, widened by ``margin`` times each range (see module doc)."""
    if not (np.isfinite(margin) and margin >= 0):
        raise DomainError(f"{what}: the margin must be a finite number >= 0, got {margin}")
    rows = _rows(data, what)
    lower, upper = rows.min(axis=0), rows.max(axis=0)
    width = upper - lower
    return _clipped(lower - margin * width, upper + margin * width, outer, what)


def balls(points, eps: float, outer: Box | None = None, what: str = "points") -> list[Box]:
    """One L∞ ball of radius ``eps`` around each point (rows), clipped to ``outer``."""
    if not (np.isfinite(eps) and eps >= 0):
        raise DomainError(f"{what}: the radius must be a finite number >= 0, got {eps}")
    rows = _rows(points, what)
    if outer is not None and not outer.contains(rows).all():
        bad = int(np.argmin(outer.contains(rows)))
        raise DomainError(f"{what}: point {bad} lies outside the outer box")
    return [_clipped(x - eps, x + eps, outer, what) for x in rows]


def summary(parts) -> dict:
    """Dimensions, boxes, fixed inputs and the volume proxy of a union of boxes (see module doc)."""
    per_part = []
    for box in parts:
        width = box.upper - box.lower
        free = width > 0
        logs = np.log(width[free]) if free.any() else np.zeros(0)
        per_part.append({"fixed_inputs": int((~free).sum()),
                         "mean_width": float(width.mean()),
                         "geometric_mean_width": float(np.exp(logs.mean())) if logs.size else 0.0,
                         "log10_volume": float(logs.sum() / np.log(10)) if logs.size else None,
                         "lower_range": [float(box.lower.min()), float(box.lower.max())],
                         "upper_range": [float(box.upper.min()), float(box.upper.max())]})
    hull_lower = np.min([p.lower for p in parts], axis=0)
    hull_upper = np.max([p.upper for p in parts], axis=0)
    return {"dimensions": int(parts[0].size), "boxes": len(parts),
            "fixed_inputs": int((hull_lower == hull_upper).sum()),
            "fixed_indices": np.flatnonzero(hull_lower == hull_upper)[:20].tolist(), "parts": per_part}


def domain_json(parts) -> dict:
    """The JSON of a box file: ``{"lower", "upper"}`` for one box, ``{"parts": [...]}`` for several."""
    boxes = [{"lower": p.lower.tolist(), "upper": p.upper.tolist()} for p in parts]
    return boxes[0] if len(boxes) == 1 else {"parts": boxes}
