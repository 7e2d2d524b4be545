"""Readers that select entries (exact on the box; pure functions Network → Network), see :mod:`exactcomp.ir.select`.

* :func:`select_fixed_winners` — max pooling at ``pos`` (a raised :class:`~exactcomp.ir.maxpool.MaxPoolLayer`)
  whose every window has a winner fixed by the comparison neurons' statuses
  (:func:`exactcomp.ir.lowering.fixed_winners`): ``pool(h) = S h``, so the pooling goes and its reader ``X``
  becomes ``X(S h)`` (:class:`~exactcomp.ir.select.Selected`), reading the convolution directly; a skip that
  read the pooling reads ``S h`` the same way.
* :func:`select_free_entries` — a dense reader ``g = W h + b`` of convolution (or max pooling) ``pos`` whose
  output has constant entries ``h_C = v`` on the box (:func:`exactcomp.rewrite.constants.constant_entries`:
  stably inactive positions, positions that read only fixed inputs, windows of constant taps):
  ``g = W[:, F] h_F + (b + W[:, C] v)``, so the reader keeps only the columns of the free entries ``F`` and
  selects ``h_F``; a dense layer after an average pooling does the same with the pooled entries whose
  window's taps are all constant (value: their average). (Dense layers lose their constant neurons outright; only the entries of a convolution or
  pooling, which cannot lose single positions, need this.)

:func:`select_everywhere` applies both after the other rules (which need plain dense readers).
"""

from __future__ import annotations

import numpy as np

from exactcomp.ir.lowering import fixed_winners, tournament
from exactcomp.ir.maxpool import MaxPoolLayer
from exactcomp.ir.network import Dense, Network
from exactcomp.ir.pool import Pooled, conv_of
from exactcomp.ir.select import Selected
from exactcomp.ir.skip import Skip
from exactcomp.rewrite.constants import constant_entries


def pool_winners(layer: MaxPoolLayer, analysis) -> np.ndarray:
    """:func:`~exactcomp.ir.lowering.fixed_winners` of a raised pooling from ``analysis``'s comparison statuses."""
    from exactcomp.results import Status

    pool = layer.pool
    counts = tournament(pool)[0]
    active, inactive = [], []
    for t, level_id in enumerate(layer.level_ids, start=1):
        ids = (np.arange(pool.in_shape[0] * counts[t]) if layer.level_neuron_ids is None
               else np.asarray(layer.level_neuron_ids[t - 1]))
        status = analysis.status_of(level_id, ids)
        active.append(status == Status.ACTIVE)
        inactive.append(status == Status.INACTIVE)
    return fixed_winners(pool, active, inactive)


def select_fixed_winners(net: Network, pos: int, winners: np.ndarray) -> Network:
    """Replace max pooling ``pos`` and its reader by the reader of the selected winners (see module doc);
    unchanged unless every window's winner is fixed (``winners >= 0``)."""
    layer = net.layers[pos]
    if not isinstance(layer, MaxPoolLayer) or pos == 0 or np.any(np.asarray(winners) < 0):
        return net
    fan_in = layer.pool.fan_in
    reader = Selected(winners, net.layers[pos + 1], fan_in)
    skips = []
    for s in net.skips:
        if s.target == pos:
            return net          # (the lowering allows none)
        op = Selected(winners, s.op, fan_in) if s.source == pos else s.op
        skips.append(Skip(s.target - (s.target > pos), s.source - (s.source >= pos), op))
    layers = list(net.layers)
    layers[pos:pos + 2] = [reader]
    return net.with_layers(layers, skips)


def select_free_entries(net: Network, pos: int, box, status) -> Network:
    """The dense reader of convolution (or max pooling) ``pos`` reads only the entries not constant on ``box``
    (see module doc)."""
    layer, reader = net.layers[pos], net.layers[pos + 1]
    if not isinstance(layer, MaxPoolLayer) and conv_of(layer) is None:
        return net
    pool = reader.pool if isinstance(reader, Pooled) else None
    op = reader.inner if pool is not None else reader           # the dense layer, after a pooling or not
    width = layer.width if pool is None else pool.width
    if isinstance(op, Dense):
        index, dense = np.arange(width), op
    elif isinstance(op, Selected) and isinstance(op.inner, Dense):
        index, dense = op.index, op.inner
    else:
        return net
    mask, values = constant_entries(net, pos, box, status)
    if pool is not None:      # a pooled entry is constant when every tap of its window is: their average
        free = pool.apply((~mask).astype(np.float64)[None])[0] > 0
        mask, values = ~free, np.where(free, 0.0, pool.apply(values[None])[0])
    constant = mask[index] | ~dense.W.any(axis=0)          # a column of zeros reads nothing either
    if not constant.any() or constant.all():
        return net
    bias = dense.b + dense.W[:, constant] @ values[index[constant]]
    selected = Selected(index[~constant], Dense(dense.W[:, ~constant], bias, dense.layer_id, dense.neuron_ids), width)
    layers = list(net.layers)
    layers[pos + 1] = selected if pool is None else Pooled(pool, selected)
    return net.with_layers(layers)


def unselect_dense(net: Network) -> Network:
    """Every dense layer that reads a selection (after an average pooling or not) as a plain dense layer with zero
    columns for the entries it does not read, so that the dense rules apply to it again (compressing a compressed
    network); :func:`select_free_entries` selects again afterwards (it drops columns of zeros too)."""
    def plain(op):
        if not (isinstance(op, Selected) and isinstance(op.inner, Dense)):
            return op
        W = np.zeros((op.width, op.fan_in))
        np.add.at(W, (slice(None), op.index), op.inner.W)
        return Dense(W, op.inner.b, op.inner.layer_id, op.inner.neuron_ids)

    layers = [Pooled(x.pool, plain(x.inner)) if isinstance(x, Pooled) and isinstance(x.inner, Selected) else plain(x)
              for x in net.layers]
    return net if all(a is b for a, b in zip(layers, net.layers)) else net.with_layers(layers)


def select_everywhere(net: Network, analysis) -> Network:
    """:func:`select_fixed_winners` on every max pooling (last first), then :func:`select_free_entries` on every
    convolution's dense reader."""
    def status(net: Network, pos: int) -> np.ndarray:
        layer = net.layers[pos]
        return analysis.status_of(layer.layer_id, layer.neuron_ids)

    for pos in reversed(range(len(net.layers) - 1)):
        if isinstance(net.layers[pos], MaxPoolLayer):
            net = select_fixed_winners(net, pos, pool_winners(net.layers[pos], analysis))
    for pos in range(len(net.layers) - 1):
        net = select_free_entries(net, pos, analysis.box, status)
    return net
