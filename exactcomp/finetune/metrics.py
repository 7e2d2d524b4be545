"""What ``exactcomp stabilize`` measures: top-1 accuracy or agreement, per-class recall, and the units and
neurons that interval bounds already prove stable over the domain.

- Top-1 score against a reference ``r`` (the labels, or the original model's predictions for *agreement*):
  ``mean_i [argmax_c z_ic = r_i]``.
- The standard error of a change of that score between two models on the same rows (paired): with ``b`` rows
  right before and wrong after, ``c`` the reverse, ``n`` rows, the change is ``(c - b)/n`` and its s.e.
  ``sqrt(b + c - (c - b)²/n) / n`` (McNemar's variance); 0.5 points on 1,000 rows is often within 1-2 s.e.
- Recall of class ``c``: ``|{i : r_i = c, argmax z_i = c}| / |{i : r_i = c}|`` (undefined, ``None``, for a
  class absent from the reference). Pruning hurts classes unevenly ("recall distortion", Good, Serra et al.,
  NeurIPS 2022), so the report gives the worst class beside the mean.
- Stable by bounds: with interval bounds ``l <= pre-activation <= u`` over the domain's boxes, a neuron is
  stably inactive when ``u <= -δ`` on every box, stably active when ``l >= δ``; a unit (dense feature or
  convolution channel, what compression removes) is dead when all its neurons are stably inactive. These are
  the training-side counts; ``exactcomp compress`` decides with its own sound float64 engine.
"""

from __future__ import annotations

import numpy as np
import torch


def top1(logits: torch.Tensor, reference: torch.Tensor) -> float:
    """Share of rows whose arg-max is the reference class."""
    return float((logits.argmax(1) == reference).double().mean())


def paired_change_se(right_before: np.ndarray, right_after: np.ndarray) -> float:
    """Standard error of ``mean(right_after) - mean(right_before)`` over the same rows (module doc)."""
    right_before, right_after = np.asarray(right_before, bool), np.asarray(right_after, bool)
    n = len(right_before)
    b = int((right_before & ~right_after).sum())
    c = int((~right_before & right_after).sum())
    return float(np.sqrt(max(b + c - (c - b) ** 2 / n, 0.0)) / n) if n else 0.0


def per_class_recall(predicted: np.ndarray, reference: np.ndarray, classes: int) -> list:
    """Recall of each class ``0..classes-1`` (None where the reference has no row of that class)."""
    predicted, reference = np.asarray(predicted), np.asarray(reference)
    hits = np.bincount(reference[predicted == reference], minlength=classes)
    totals = np.bincount(reference, minlength=classes)
    return [None if totals[c] == 0 else float(hits[c] / totals[c]) for c in range(classes)]


def worst_class(recall: list) -> tuple:
    """``(class, recall)`` of the class with the lowest recall (ties: the first)."""
    defined = [(r, c) for c, r in enumerate(recall) if r is not None]
    r, c = min(defined)
    return c, r


def stable_counts(bounds: dict, margin: float) -> dict:
    """From ``{relu node: Interval over the boxes}``: units dead and neurons stably inactive/active, with totals."""
    counts = dict(units=0, units_dead=0, neurons=0, neurons_inactive=0, neurons_active=0)
    for b in bounds.values():
        upper = b.upper.reshape(b.upper.shape[0], b.upper.shape[1], -1).amax(dim=0)   # unit x position
        lower = b.lower.reshape(b.lower.shape[0], b.lower.shape[1], -1).amin(dim=0)
        inactive = upper <= -margin
        counts["units"] += upper.shape[0]
        counts["units_dead"] += int(inactive.all(dim=1).sum())
        counts["neurons"] += upper.numel()
        counts["neurons_inactive"] += int(inactive.sum())
        counts["neurons_active"] += int((lower >= margin).sum())
    return counts
