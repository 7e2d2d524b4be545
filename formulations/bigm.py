"""The big-M formulation of a ReLU trunk over a box.

Variables: the input ``x`` (``l_x <= x <= u_x``), and for every hidden layer ``i`` before the
target layer the post-activations ``h_i`` and, for neurons not proven stable, binaries ``z_i`` and
pre-activations ``g_i = W_i h_{i-1} + b_i`` (``h_0 = x``; plus ``S h_j`` for each skip connection into
layer ``i``; one dense row each, so the three big-M rows below stay sparse) with bounds ``L <= g <= U``:

* stably inactive (``U <= 0``):  ``h = 0``;
* stably active (``L >= 0``):    ``h = g``, i.e. ``h - W h_{i-1} = b``;
* otherwise, with ``z ∈ {0, 1}``::

      h >= 0                       (column bound)
      h >= g                       h - g         >= 0
      h <= g - L (1 - z)           h - g - L z   <= -L
      h <= U z                     h - U z       <= 0

  so ``z = 1`` forces ``h = g >= 0`` and ``z = 0`` forces ``h = 0 >= g``.

Stability candidates with margin ``τ`` (the NeurIPS 2021 single-MILP method). For a neuron we try
to prove stably *inactive* (``g <= -τ`` everywhere), the third row is relaxed to

      h <= g - L (1 - z) + τ z     h - g - (L + τ) z <= -L

so ``z = 1`` is feasible exactly when ``g >= -τ`` (then ``max(0, g) <= h <= g + τ``). For a neuron we
try to prove stably *active* (``g >= τ``), the first row is relaxed to

      h >= g - τ (1 - z)           h - g - τ z       >= -τ

so ``z = 0`` (``h = 0``) is feasible exactly when ``g <= τ``. Both only enlarge the feasible set
(every input with its true activations stays feasible), so a bound proven on the relaxed model holds
for the network. The stability indicators of the paper are the binaries themselves: ``p = z`` for an
inactive candidate and ``q = 1 - z`` for an active one (``p <= z`` with ``p`` maximised is ``p = z``).
``max Σp + Σq < 1`` therefore proves ``g <= -τ`` (resp. ``g >= τ``) for every candidate, and solver
tolerances (``~1e-6`` on rows) cannot turn a neuron with ``max g > 0`` into a proven one as long as τ
exceeds them; neurons whose extreme lies within τ of zero stay undecided.

``build_bigm(net, box, bounds, depth)`` encodes layers ``1..depth`` (hidden, 1-based); the
pre-activations of layer ``depth + 1`` are then affine in ``h_depth``: see :func:`preactivation_objective`.
:func:`complete_solution` turns an input into the full solution vector (for warm starts).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from exactcomp.formulations.milp import MILP


def _stability_masks(bounds, depth, stable_inactive, stable_active):
    masks = []
    for i in range(depth):
        L, U = (np.asarray(v, float) for v in bounds[i])
        inactive = (U <= 0) if stable_inactive is None else (U <= 0) | stable_inactive[i]
        active = ((L >= 0) if stable_active is None else (L >= 0) | stable_active[i]) & ~inactive
        masks.append((L, U, inactive, active, ~(inactive | active)))
    return masks


def build_bigm(net, box, bounds, depth: int, stable_inactive=None, stable_active=None,
               relax_inactive=None, relax_active=None, margin: float = 0.0) -> MILP:
    """Big-M MILP of hidden layers ``1..depth`` of ``net`` over ``box``.

    ``bounds[i]`` is ``(L, U)`` for hidden layer ``i+1``; ``stable_inactive/active`` (optional
    lists of boolean masks) mark neurons already proven stable by other means;
    ``relax_inactive/active`` (optional masks) mark stability candidates whose rows get the
    margin-``τ`` relaxation above (``margin`` = τ).
    """
    masks = _stability_masks(bounds, depth, stable_inactive, stable_active)
    no_relax = [np.zeros(net.hidden[i].width, bool) for i in range(depth)]
    relax_inactive = no_relax if relax_inactive is None else relax_inactive
    relax_active = no_relax if relax_active is None else relax_active
    n0 = box.size
    total = n0 + sum(net.hidden[i].width + 2 * int(m[4].sum()) for i, m in enumerate(masks))
    col_lo, col_hi, integ = [box.lower.copy()], [box.upper.copy()], [np.zeros(n0, bool)]
    rows, row_lo, row_hi = [], [], []
    blocks = {"x": np.arange(n0)}
    neurons = {}
    offset = n0
    prev = blocks["x"]
    for i, (L, U, inactive, active, free) in enumerate(masks):
        layer = net.hidden[i]
        n, free_ids, act_ids = layer.width, np.flatnonzero(free), np.flatnonzero(active)
        nf = free_ids.size
        h_idx = np.arange(offset, offset + n)
        z_idx = np.arange(offset + n, offset + n + nf)
        g_idx = np.arange(offset + n + nf, offset + n + 2 * nf)
        offset += n + 2 * nf
        blocks[f"h{i + 1}"], blocks[f"z{i + 1}"], blocks[f"g{i + 1}"] = h_idx, z_idx, g_idx
        blocks[f"zn{i + 1}"] = free_ids  # the neuron of each binary (and of each g), not variable indices
        neurons.update({int(var): (layer.layer_id, int(j)) for var, j in zip(z_idx, free_ids)})
        col_lo += [np.zeros(n), np.zeros(nf), L[free_ids]]
        col_hi += [np.where(inactive, 0.0, np.maximum(U, 0.0)), np.ones(nf), U[free_ids]]
        integ += [np.zeros(n, bool), np.ones(nf, bool), np.zeros(nf, bool)]
        tau_act = np.where(relax_active[i][free_ids], margin, 0.0)
        tau_inact = np.where(relax_inactive[i][free_ids], margin, 0.0)
        skips = [(sp.csr_matrix(k.op.matrix()), blocks["x"] if k.source < 0 else blocks[f"h{k.source + 1}"])
                 for k in net.skips_into(i)]
        for row, lo, hi in _layer_rows(layer, (act_ids, free_ids), (h_idx, z_idx, g_idx), (prev, skips), L[free_ids],
                                       U[free_ids], (tau_act, tau_inact), total):
            rows.append(row)
            row_lo.append(lo)
            row_hi.append(hi)
        prev = h_idx
    A = sp.vstack(rows, format="csr") if rows else sp.csr_matrix((0, total))
    return MILP(
        c=np.zeros(total), A=A,
        row_lower=np.concatenate(row_lo) if row_lo else np.zeros(0),
        row_upper=np.concatenate(row_hi) if row_hi else np.zeros(0),
        col_lower=np.concatenate(col_lo), col_upper=np.concatenate(col_hi), integrality=np.concatenate(integ),
        blocks=blocks, neurons=neurons,
    )


def _layer_rows(layer, ids, variables, sources, L, U, taus, total) -> list:
    """The rows ``(matrix, lower, upper)`` of one hidden layer: ``ids = (active, free)`` neurons,
    ``variables = (h, z, g)`` indices (``z, g`` one per free neuron), ``sources = (h_prev, skips)``, ``L, U`` the
    free neurons' bounds, ``taus = (τ active, τ inactive)`` per free neuron."""
    (act_ids, free_ids), (h_idx, z_idx, g_idx), (prev, skips), (tau_act, tau_inact) = ids, variables, sources, taus
    n, nf = layer.width, free_ids.size
    W = sp.csr_matrix(layer.matrix())
    eye, eye_f = sp.identity(n, format="csr"), sp.identity(nf, format="csr")
    diag = lambda values: sp.diags(values, format="csr")  # noqa: E731

    def incoming(rows):
        return sum((_place(S[rows], src, total) for S, src in skips), _place(W[rows], prev, total))

    h_free = _place(eye[free_ids], h_idx, total)
    g_free = _place(eye_f, g_idx, total)
    return [
        # h - W h_prev - Σ S h_src = b (active);  g - W h_prev - Σ S h_src = b (free): the only dense rows
        (_place(eye[act_ids], h_idx, total) - incoming(act_ids), layer.b[act_ids], layer.b[act_ids]),
        (g_free - incoming(free_ids), layer.b[free_ids], layer.b[free_ids]),
        # h - g - τ z >= -τ   (τ = 0 unless an active candidate)
        (h_free - g_free - _place(diag(tau_act), z_idx, total), -tau_act, np.full(nf, np.inf)),
        # h - g - (L + τ) z <= -L   (τ = 0 unless an inactive candidate)
        (h_free - g_free - _place(diag(L + tau_inact), z_idx, total), np.full(nf, -np.inf), -L),
        # h - U z <= 0
        (h_free - _place(diag(U), z_idx, total), np.full(nf, -np.inf), np.zeros(nf)),
    ]


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
    c[prev] = sign * layer.rows([neuron])[0]
    for skip in net.skips_into(layer_pos):
        src = milp.blocks["x"] if skip.source < 0 else milp.blocks[f"h{skip.source + 1}"]
        c[src] += sign * skip.op.rows([neuron])[0]
    return c, sign * float(layer.b[neuron])


def complete_solution(milp: MILP, net, x: np.ndarray) -> np.ndarray:
    """The full variable vector of ``milp`` for input ``x``: true activations, ``z = [g > 0]``."""
    values = np.zeros(milp.num_vars)
    values[milp.blocks["x"]] = x
    _, pre = net.forward(np.asarray(x, float)[None], return_preactivations=True)
    i = 1
    while f"h{i}" in milp.blocks:
        g = pre[i - 1][0]
        h = np.maximum(g, 0.0)
        values[milp.blocks[f"h{i}"]] = h
        values[milp.blocks[f"z{i}"]] = g[milp.blocks[f"zn{i}"]] > 0
        values[milp.blocks[f"g{i}"]] = g[milp.blocks[f"zn{i}"]]
        i += 1
    return values
