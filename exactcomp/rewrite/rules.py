"""Exact rewrites of a :class:`~exactcomp.ir.network.Network`: pure functions Network → Network.

Notation: hidden layer ``l`` has ``g_l = W_l h_{l-1} + b_l`` and ``h_l = relu(g_l)``; the next
layer reads ``g_{l+1} = W_{l+1} h_l + b_{l+1}``. ``pos`` is the 0-based position of layer ``l`` in
``net.layers`` (it must be a hidden layer). Each rule is exact on the box where the stated
stability holds.

* :func:`fold_fixed_inputs` — input entries with ``lower == upper`` on the box are constants
  ``x_F = c``: ``g_1 = W_1[:, F] c + b_1 + W_1[:, R] x_R``, so add ``W_1[:, F] c`` to ``b_1`` and let
  the first layer read only the free entries ``R`` (``Network.input_indices``).
* :func:`remove_neurons` — neuron ``i`` stably inactive: ``h_i = 0``, so delete row ``i`` of
  ``W_l, b_l`` and column ``i`` of ``W_{l+1}``.
* :func:`fold_constant_neurons` — ``h_i = v_i`` is constant on the box (``W_l[i] = 0``: ``v_i = relu(b_i)``;
  or it reads only constant entries, :func:`exactcomp.rewrite.constants.constant_entries`); add
  ``W_{l+1}[:, i] v_i`` to ``b_{l+1}`` and delete the neuron.
* :func:`fold_active_neurons` — stably active neurons have ``h_A = W_A h_{l-1} + b_A``. Choose a basis
  ``B`` of the rows of ``W_A`` (rank-revealing QR). Every other active row is ``W_i = c_i W_B``, so
  ``h_i = c_i h_B + (b_i - c_i b_B)``: add ``W_{l+1}[:, i] c_i`` to the basis columns, add
  ``W_{l+1}[:, i] (b_i - c_i b_B)`` to ``b_{l+1}``, and delete ``i``.
* :func:`merge_linear_layer` — every neuron of layer ``l`` is stably active (``h_l = g_l``):
  ``g_{l+1} = (W_{l+1} W_l) h_{l-1} + (W_{l+1} b_l + b_{l+1})``; applied only when it does not increase
  the parameter count.
* channel rules of convolutions: :mod:`exactcomp.rewrite.channels`.
* readers that select entries (a max pooling with fixed winners, a dense reader of a convolution with constant
  entries): :mod:`exactcomp.rewrite.selection`, applied last.
* :func:`collapse_constant_network` — some hidden layer has no neurons left: the output is the
  constant obtained by evaluating the rest of the network; the result has one layer with ``W = 0``
  (and reads the whole input: a constant needs no selection).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import scipy.linalg

from exactcomp.ir.lowering import lower_max_pools, raise_max_pools
from exactcomp.ir.maxpool import MaxPoolLayer
from exactcomp.ir.network import Dense, Network
from exactcomp.ir.pool import Pooled, conv_of
from exactcomp.rewrite.base import check_hidden, replace_pair, constant_after
from exactcomp.rewrite.channels import remove_dead_channels
from exactcomp.rewrite.constants import constant_entries, fold_constant_channels
from exactcomp.rewrite.selection import select_everywhere, unselect_dense
from exactcomp.rewrite.skips import crossed, thinned_skips, touches_skip

#: Relative residual below which an active row counts as a combination of the basis rows.
RANK_TOLERANCE = 1e-10


def fold_fixed_inputs(net: Network, box) -> Network:
    """Fold the input entries fixed by ``box`` (``lower == upper``) into the first layer's bias and
    drop their weight columns (see module doc); unchanged when no entry the network reads is fixed."""
    first = net.layers[0]
    read = np.arange(net.input_size) if net.input_indices is None else net.input_indices
    fixed = box.lower[read] == box.upper[read]
    if not fixed.any() or not isinstance(first, Dense) or touches_skip(net, 0):  # a convolution reads its whole input
        return net
    b = first.b + first.W[:, fixed] @ box.lower[read][fixed]
    layer = Dense(first.W[:, ~fixed], b, first.layer_id, first.neuron_ids)
    return replace(net, layers=(layer, *net.layers[1:]), input_indices=read[~fixed])


def remove_neurons(net: Network, pos: int, mask: np.ndarray) -> Network:
    """Delete the neurons of hidden layer ``pos`` selected by ``mask`` (they must output 0)."""
    check_hidden(net, pos)
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return net
    keep = ~mask
    if not keep.any() and crossed(net, pos):
        keep[0] = True   # a shortcut jumps over the layer: keep one (dead) neuron, the network is not constant
    layer, nxt = net.layers[pos], net.layers[pos + 1]
    skips = thinned_skips(net, pos, keep)
    if skips is None or not isinstance(nxt, Dense) or not isinstance(layer, (Dense, Pooled)) or conv_of(layer) is not None:
        return net
    kept = layer.keep_outputs(keep) if isinstance(layer, Pooled) else Dense(layer.W[keep], layer.b[keep],
                                                                           layer.layer_id, layer.neuron_ids[keep])
    return replace_pair(net, pos, kept, Dense(nxt.W[:, keep], nxt.b, nxt.layer_id, nxt.neuron_ids), skips)


def _fold_into_next(net: Network, pos: int, drop: np.ndarray, W_next: np.ndarray, b_next: np.ndarray) -> Network:
    layer, nxt = net.layers[pos], net.layers[pos + 1]
    keep = ~drop
    return replace_pair(
        net, pos,
        Dense(layer.W[keep], layer.b[keep], layer.layer_id, layer.neuron_ids[keep]),
        Dense(W_next[:, keep], b_next, nxt.layer_id, nxt.neuron_ids),
    )


def fold_constant_neurons(net: Network, pos: int, constant=None, values=None) -> Network:
    """Fold the neurons where ``constant`` is true, of constant output ``values``, into the next bias; by
    default the neurons with an all-zero weight row (``h_i = relu(b_i)``)."""
    check_hidden(net, pos)
    layer, nxt = net.layers[pos], net.layers[pos + 1]
    if constant is None:
        constant, values = ~layer.W.any(axis=1), np.maximum(layer.b, 0.0)
    constant = np.asarray(constant, dtype=bool)
    if not constant.any():
        return net
    b_next = nxt.b + nxt.W[:, constant] @ np.asarray(values)[constant]
    return _fold_into_next(net, pos, constant, nxt.W, b_next)


def independent_rows(A: np.ndarray, tol: float = RANK_TOLERANCE):
    """Split the rows of ``A`` into a basis and combinations of it: ``A[dep] ≈ C @ A[basis]``.

    Uses QR with column pivoting on ``A^T``; a dependent row is accepted only if its
    reconstruction residual is at most ``tol`` times the largest row norm, otherwise it joins
    the basis. Returns ``(basis, dependent, C)`` as index arrays and a coefficient matrix.
    """
    m = A.shape[0]
    if m == 0:
        return np.arange(0), np.arange(0), np.zeros((0, 0))
    scale = max(np.abs(A).max(), 1e-300)
    _, R, piv = scipy.linalg.qr(A.T / scale, mode="economic", pivoting=True)
    diag = np.abs(np.diag(R))
    rank = int(np.sum(diag > max(A.shape) * np.finfo(float).eps * (diag[0] if diag.size else 0.0))) if diag.size else 0
    basis = np.sort(piv[:rank])
    while True:
        dependent = np.setdiff1d(np.arange(m), basis)
        if dependent.size == 0:
            return basis, dependent, np.zeros((0, basis.size))
        C, *_ = np.linalg.lstsq(A[basis].T, A[dependent].T, rcond=None)
        C = C.T
        residual = np.abs(C @ A[basis] - A[dependent]).max(axis=1) / scale
        bad = residual > tol
        if not bad.any():
            return basis, dependent, C
        basis = np.sort(np.concatenate([basis, dependent[bad]]))


def fold_active_neurons(net: Network, pos: int, mask: np.ndarray) -> Network:
    """Keep a basis of the stably active neurons selected by ``mask``; fold the rest (see module doc)."""
    check_hidden(net, pos)
    active = np.flatnonzero(mask)
    if active.size == 0:
        return net
    layer, nxt = net.layers[pos], net.layers[pos + 1]
    basis, dependent, C = independent_rows(layer.W[active])
    if dependent.size == 0:
        return net
    basis, dependent = active[basis], active[dependent]
    offsets = layer.b[dependent] - C @ layer.b[basis]
    W_next = nxt.W.copy()
    W_next[:, basis] += nxt.W[:, dependent] @ C
    b_next = nxt.b + nxt.W[:, dependent] @ offsets
    drop = np.zeros(layer.width, dtype=bool)
    drop[dependent] = True
    return _fold_into_next(net, pos, drop, W_next, b_next)


def merge_linear_layer(net: Network, pos: int, only_if_smaller: bool = True) -> Network:
    """Merge hidden layer ``pos`` (all of whose neurons are stably active) into the next layer."""
    check_hidden(net, pos)
    layer, nxt = net.layers[pos], net.layers[pos + 1]
    merged = Dense(nxt.W @ layer.W, nxt.W @ layer.b + nxt.b, nxt.layer_id, nxt.neuron_ids)
    if only_if_smaller and merged.parameter_count > layer.parameter_count + nxt.parameter_count:
        return net
    layers = list(net.layers)
    layers[pos:pos + 2] = [merged]
    return net.with_layers(layers)


def collapse_constant_network(net: Network) -> Network:
    """If a hidden layer has no neurons, the output is constant: replace the trunk by it."""
    empty = [i for i, layer in enumerate(net.hidden) if layer.width == 0]
    return constant_after(net, empty[-1]) if empty else net


def compress_network(net: Network, analysis) -> Network:
    """Apply all rules, layer by layer from the input, using ``analysis`` statuses.

    Fixed inputs are folded first (:func:`fold_fixed_inputs` on ``analysis.box``). Unknown and
    unstable neurons are always kept. The result computes the same function as ``net`` on the
    analysed box (up to float64 rounding). Max poolings are rewritten as one layer
    (:mod:`exactcomp.ir.lowering`): the result is lowered again, as ``net`` was. Dense layers that read a
    selection are plain dense layers during the rules and select again at the end (:mod:`exactcomp.rewrite.selection`).
    """
    raised = unselect_dense(raise_max_pools(net))
    return lower_max_pools(select_everywhere(_compress_raised(raised, analysis), analysis))


def _compress_raised(net: Network, analysis) -> Network:
    from exactcomp.results import Status

    net = fold_fixed_inputs(net, analysis.box)

    def status(net: Network, pos: int) -> np.ndarray:
        layer = net.layers[pos]
        return analysis.status_of(layer.layer_id, layer.neuron_ids)

    pos = 0
    while pos < len(net.layers) - 1:
        if isinstance(net.layers[pos], MaxPoolLayer):   # dead channels go through it (remove_dead_channels)
            pos += 1
            continue
        inactive = status(net, pos) == Status.INACTIVE
        if conv_of(net.layers[pos]) is not None:   # convolutions lose whole channels only
            net = remove_dead_channels(net, pos, inactive)
            if len(net.layers) == 1:            # every channel dead: the network became constant
                return net
            net = fold_constant_channels(net, pos, analysis.box, status)
            pos += 1
            continue
        net = remove_neurons(net, pos, inactive)   # (unchanged where the next layer or a skip cannot follow)
        if touches_skip(net, pos) or not (isinstance(net.layers[pos], Dense) and isinstance(net.layers[pos + 1], Dense)):
            pos += 1                            # the folding rules below need dense layers away from skips
            continue
        net = fold_constant_neurons(net, pos, *constant_entries(net, pos, analysis.box, status))
        net = fold_active_neurons(net, pos, status(net, pos) == Status.ACTIVE)
        if net.layers[pos].width == 0:
            return collapse_constant_network(net)
        if np.all(status(net, pos) == Status.ACTIVE) and not net.skips:   # merging renumbers the layers
            merged = merge_linear_layer(net, pos)
            if len(merged.layers) < len(net.layers):
                net = merged
                continue  # the merged layer now sits at ``pos``; it is processed with its own statuses
        pos += 1
    return net
