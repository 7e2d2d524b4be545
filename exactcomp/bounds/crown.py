"""Sound pre-activation bounds over a box, computed layer by layer with numpy.

Every layer is used only through its linear-operator interface (``apply``, ``apply_transpose``,
``apply_abs``, ``rows`` of :class:`exactcomp.ir.network.Dense`), so other affine ops can take its place.

Interval bounds: with ``m = (l+u)/2`` and ``r = (u-l)/2`` for the post-activation box of layer
``k-1``, the pre-activations ``g_k = W_k h + b_k`` satisfy ``W_k m + b_k ± |W_k| r``.

Symbolic bounds (DeepPoly / CROWN-style back-substitution): each earlier ReLU ``h = max(g, 0)`` with
``l < 0 < u`` is relaxed by ``α g <= h <= s (g - l)`` with ``s = u / (u - l)`` and ``α = 1`` if
``u >= -l`` else ``0``; stable neurons are exact (``h = g`` or ``h = 0``). Starting from
``Λ = W_k, c = b_k`` and substituting these relaxations back to the input gives
``g_k <= c + Λ⁺ u_x + Λ⁻ l_x``; the same with ``-W_k`` gives the lower bound. The input corner
attaining each linear bound, ``where(Λ > 0, u_x, l_x)``, is returned as a witness candidate.

Floating point: every bound is widened by ``ROUNDING_SLACK`` times the sum of absolute values of
the terms it adds up, which covers float64 rounding in these sums. The symbolic bound is
intersected with the interval bound, so it is never looser.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from exactcomp.domain import Box
from exactcomp.ir.network import Network

#: Relative widening of every computed bound, covering float64 rounding of the sums.
ROUNDING_SLACK = 1e-10


@dataclass(frozen=True, eq=False)
class LayerBounds:
    """Pre-activation bounds of one layer: ``lower <= g <= upper`` on the whole box.

    ``interval_lower/upper`` are the plain interval bounds (kept to report how a neuron was
    decided); ``corner_max/corner_min`` (optional, one row per neuron) are box corners that
    maximise / minimise each neuron's linear symbolic bound.
    """

    lower: np.ndarray
    upper: np.ndarray
    interval_lower: np.ndarray
    interval_upper: np.ndarray
    corner_max: np.ndarray | None = None
    corner_min: np.ndarray | None = None


def _post_activation(lower: np.ndarray, upper: np.ndarray):
    return np.maximum(lower, 0.0), np.maximum(upper, 0.0)


def interval_step(layer, lower: np.ndarray, upper: np.ndarray):
    """Bounds of ``layer``'s ``W h + b`` for ``lower <= h <= upper`` (widened for rounding)."""
    mid, rad = (lower + upper) / 2.0, (upper - lower) / 2.0
    centre = layer.apply(mid[None])[0]
    spread = layer.apply_abs(rad[None])[0]
    slack = ROUNDING_SLACK * (layer.apply_abs(np.maximum(np.abs(lower), np.abs(upper))[None])[0] + np.abs(layer.b))
    return centre - spread - slack, centre + spread + slack


def relu_relaxation(lower: np.ndarray, upper: np.ndarray):
    """Slopes/intercepts ``(s_up, t_up, s_low)`` with ``s_low g <= relu(g) <= s_up g + t_up`` on [l, u]."""
    inactive = upper <= 0
    active = lower >= 0
    unstable = ~(inactive | active)
    s_up = np.where(active, 1.0, 0.0)
    t_up = np.zeros_like(lower)
    s_low = s_up.copy()
    if unstable.any():
        l, u = lower[unstable], upper[unstable]
        s = u / (u - l)
        s_up[unstable] = s
        t_up[unstable] = -s * l
        s_low[unstable] = (u >= -l).astype(float)
    return s_up, t_up, s_low


def _accumulate(pending: dict, key: int, coefficients: np.ndarray) -> None:
    pending[key] = coefficients if key not in pending else pending[key] + coefficients


def backsubstitute(net: Network, box: Box, k: int, pre_bounds: list[tuple[np.ndarray, np.ndarray]], rows=None):
    """Symbolic upper and lower bounds of layer ``k`` (0-based) given bounds of layers ``< k``.

    ``rows`` restricts the computation to some neurons of layer ``k``. Returns
    ``(lower, upper, corner_min, corner_max)`` for those rows. With skip connections the coefficients
    of each earlier layer collect every path into it (its consumers come later, so they are complete
    when the walk, from ``k - 1`` down, reaches it).
    """
    layer = net.layers[k]
    rows = np.arange(layer.width) if rows is None else rows
    W, b = layer.rows(rows), layer.b[rows]
    n = W.shape[0]
    # pending[j]: coefficients on h_j (j = -1: the input) still to substitute; upper bounds of g, then of -g
    pending = {k - 1: np.vstack([W, -W])}
    for skip in net.skips_into(k):
        R = skip.op.rows(rows)
        _accumulate(pending, skip.source, np.vstack([R, -R]))
    const = np.concatenate([b, -b])
    mag = np.abs(const)
    for i in range(k - 1, -1, -1):
        if i not in pending:
            continue
        Lam = pending.pop(i)
        lo, hi = pre_bounds[i]
        s_up, t_up, s_low = relu_relaxation(lo, hi)
        pos, neg = np.maximum(Lam, 0.0), np.minimum(Lam, 0.0)
        shift = pos @ t_up
        Lam = pos * s_up + neg * s_low
        prev = net.layers[i]
        bias_term = Lam @ prev.b
        const = const + shift + bias_term
        mag = mag + np.abs(shift) + np.abs(Lam) @ np.abs(prev.b)
        for skip in net.skips_into(i):
            _accumulate(pending, skip.source, skip.op.apply_transpose(Lam))
        _accumulate(pending, i - 1, prev.apply_transpose(Lam))
    Lam = pending.pop(-1) if -1 in pending else np.zeros((2 * n, box.size))
    x_hi = np.where(Lam > 0, box.upper, box.lower)
    value = const + np.einsum("ij,ij->i", Lam, x_hi)
    mag = mag + np.abs(Lam) @ np.maximum(np.abs(box.lower), np.abs(box.upper))
    value = value + ROUNDING_SLACK * mag
    upper, neg_lower = value[:n], value[n:]
    return -neg_lower, upper, x_hi[n:], x_hi[:n]


#: Most coefficients (rows x widest layer) one back-substitution holds at once (bounded memory on big CNNs).
MAX_COEFFICIENTS = 25_000_000


def _backsubstitute_in_chunks(net: Network, box: Box, k: int, pre_bounds, rows: np.ndarray):
    """:func:`backsubstitute` over ``rows`` a block at a time (the same results, bounded memory)."""
    widest = max([box.size, *(layer.width for layer in net.layers[:k + 1])])
    block = max(1, MAX_COEFFICIENTS // (2 * widest))
    parts = [backsubstitute(net, box, k, pre_bounds, rows[i:i + block]) for i in range(0, rows.size, block)]
    return tuple(np.concatenate([p[j] for p in parts]) for j in range(4))


def compute_bounds(net: Network, box: Box, symbolic: bool = True, progress=None) -> list[LayerBounds]:
    """Bounds for every hidden layer: interval, then (optionally) symbolic, intersected.

    Each layer's interval bounds use the previous layer's tightest bounds; symbolic
    back-substitution runs only for neurons the interval bounds leave undecided. A network with an
    input selection is bounded as :meth:`Network.with_full_input` (zero weights on unread entries).
    """
    net = net.with_full_input()
    results: list[LayerBounds] = []
    pre: list[tuple[np.ndarray, np.ndarray]] = []
    post: list[tuple[np.ndarray, np.ndarray]] = []
    lo, hi = box.lower, box.upper
    for k, layer in enumerate(net.hidden):
        il, iu = interval_step(layer, lo, hi)
        for skip in net.skips_into(k):
            sl, su = interval_step(skip.op, *((box.lower, box.upper) if skip.source < 0 else post[skip.source]))
            il, iu = il + sl, iu + su
        lower, upper = il.copy(), iu.copy()
        corner_max = corner_min = None
        if symbolic:
            open_rows = np.flatnonzero((il < 0) & (iu > 0))
            corner_max = np.empty((0, box.size))
            corner_min = np.empty((0, box.size))
            if open_rows.size:
                sl, su, cmin, cmax = _backsubstitute_in_chunks(net, box, k, pre, open_rows)
                lower[open_rows] = np.maximum(lower[open_rows], sl)
                upper[open_rows] = np.minimum(upper[open_rows], su)
                corner_max, corner_min = cmax, cmin
        results.append(LayerBounds(lower, upper, il, iu, corner_max, corner_min))
        pre.append((lower, upper))
        lo, hi = _post_activation(lower, upper)
        post.append((lo, hi))
        if progress is not None:
            progress(k + 1, len(net.hidden))
    return results


def interval_bounds(net: Network, box: Box) -> list[tuple[np.ndarray, np.ndarray]]:
    """Plain interval bounds ``(lower, upper)`` of every hidden layer."""
    return [(b.lower, b.upper) for b in compute_bounds(net, box, symbolic=False)]
