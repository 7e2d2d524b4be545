"""The big-M formulation of a ReLU trunk over a box.

Variables: the input ``x`` (``l_x <= x <= u_x``), and for every hidden layer ``i`` before the
target layer the post-activations ``h_i`` and, for neurons not proven stable, binaries ``z_i``.
With ``g = W_i h_{i-1} + b_i`` (``h_0 = x``) and pre-activation bounds ``L <= g <= U``:

* stably inactive (``U <= 0``):  ``h = 0``;
* stably active (``L >= 0``):    ``h = g``, i.e. ``h - W h_{i-1} = b``;
* otherwise, with ``z ∈ {0, 1}``::

      h >= 0                       (column bound)
      h >= g                       h - W h_{i-1}         >= b
      h <= g - L (1 - z)           h - W h_{i-1} - L z   <= b - L
      h <= U z                     h - U z               <= 0

  so ``z = 1`` forces ``h = g >= 0`` and ``z = 0`` forces ``h = 0 >= g``.

``build_bigm(net, box, bounds, depth)`` encodes layers ``1..depth`` (hidden, 1-based); the
pre-activations of layer ``depth + 1`` are then affine in ``h_depth``: see :func:`preactivation_objective`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .milp import MILP


def _stability_masks(bounds, depth, stable_inactive, stable_active):
    masks = []
    for i in range(depth):
        L, U = (np.asarray(v, float) for v in bounds[i])
        inactive = (U <= 0) if stable_inactive is None else (U <= 0) | stable_inactive[i]
        active = ((L >= 0) if stable_active is None else (L >= 0) | stable_active[i]) & ~inactive
        masks.append((L, U, inactive, active, ~(inactive | active)))
    return masks


def build_bigm(net, box, bounds, depth: int, stable_inactive=None, stable_active=None) -> MILP:
    """Big-M MILP of hidden layers ``1..depth`` of ``net`` over ``box``.

    ``bounds[i]`` is ``(L, U)`` for hidden layer ``i+1``; ``stable_inactive/active`` (optional
    lists of boolean masks) mark neurons already proven stable by other means.
    """
    masks = _stability_masks(bounds, depth, stable_inactive, stable_active)
    n0 = box.size
    total = n0 + sum(net.hidden[i].width + int(m[4].sum()) for i, m in enumerate(masks))
    col_lo, col_hi, integ = [box.lower.copy()], [box.upper.copy()], [np.zeros(n0, bool)]
    rows, row_lo, row_hi = [], [], []
    blocks = {"x": np.arange(n0)}
    neurons = {}
    offset = n0
    prev = blocks["x"]
    for i, (L, U, inactive, active, free) in enumerate(masks):
        layer = net.hidden[i]
        n, nf = layer.width, int(free.sum())
        free_ids = np.flatnonzero(free)
        h_idx = np.arange(offset, offset + n)
        z_idx = np.arange(offset + n, offset + n + nf)
        offset += n + nf
        blocks[f"h{i + 1}"], blocks[f"z{i + 1}"] = h_idx, z_idx
        neurons.update({int(var): (layer.layer_id, int(j)) for var, j in zip(z_idx, free_ids)})
        col_lo += [np.zeros(n), np.zeros(nf)]
        col_hi += [np.where(inactive, 0.0, np.maximum(U, 0.0)), np.ones(nf)]
        integ += [np.zeros(n, bool), np.ones(nf, bool)]
        W = sp.csr_matrix(layer.W)
        eye = sp.identity(n, format="csr")
        diag = lambda values: sp.diags(values, format="csr")  # noqa: E731
        # h - W h_prev = b (active),  >= b (free)
        sel = np.flatnonzero(active | free)
        rows.append(_place(eye[sel], h_idx, total) - _place(W[sel], prev, total))
        row_lo.append(layer.b[sel])
        row_hi.append(np.where(active[sel], layer.b[sel], np.inf))
        # h - W h_prev - L z <= b - L   (free)
        rows.append(_place(eye[free_ids], h_idx, total) - _place(W[free_ids], prev, total)
                    - _place(diag(L[free_ids]), z_idx, total))
        row_lo.append(np.full(nf, -np.inf))
        row_hi.append(layer.b[free_ids] - L[free_ids])
        # h - U z <= 0   (free)
        rows.append(_place(eye[free_ids], h_idx, total) - _place(diag(U[free_ids]), z_idx, total))
        row_lo.append(np.full(nf, -np.inf))
        row_hi.append(np.zeros(nf))
        prev = h_idx
    A = sp.vstack(rows, format="csr") if rows else sp.csr_matrix((0, total))
    return MILP(
        c=np.zeros(total), A=A,
        row_lower=np.concatenate(row_lo) if row_lo else np.zeros(0),
        row_upper=np.concatenate(row_hi) if row_hi else np.zeros(0),
        col_lower=np.concatenate(col_lo), col_upper=np.concatenate(col_hi), integrality=np.concatenate(integ),
        blocks=blocks, neurons=neurons,
    )


def _place(block: sp.spmatrix, columns: np.ndarray, width: int) -> sp.csr_matrix:
    """Put the columns of ``block`` at variable indices ``columns`` of a ``width``-column matrix."""
    block = sp.coo_matrix(block)
    return sp.csr_matrix((block.data, (block.row, columns[block.col])), shape=(block.shape[0], width))


def preactivation_objective(milp: MILP, net, layer_pos: int, neuron: int, sign: float = 1.0):
    """Objective ``sign * g`` for neuron ``neuron`` of layer ``layer_pos`` (0-based in ``net.layers``).

    The MILP must encode hidden layers ``1..layer_pos``. Returns ``(c, offset)``.
    """
    layer = net.layers[layer_pos]
    prev = milp.blocks["x"] if layer_pos == 0 else milp.blocks[f"h{layer_pos}"]
    c = np.zeros(milp.num_vars)
    c[prev] = sign * layer.W[neuron]
    return c, sign * float(layer.b[neuron])
