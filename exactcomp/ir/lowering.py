"""Lowering max poolings to ReLU comparison layers, and raising them back (pure functions Network → Network).

:func:`lower_max_pools` replaces each :class:`~exactcomp.ir.maxpool.MaxPoolLayer` by the tournament of
:mod:`exactcomp.ir.maxpool`: for a pooling at position ``q`` (reading hidden layer ``q - 1``, output ``h``),
levels ``t = 1..T`` of comparison neurons ``r_t = relu(u - v)``, where ``u`` and ``v`` are sums of
entries of ``h`` and of earlier levels (main op on the previous level, skip ops on the others). The pooled
value of a window is ``p = r_T + c`` with ``c`` the carried entries, so a layer reading the pooling with op
``X`` computes ``X(p) = X(r_T) + Σ_s X(S_s h_s)``: its own op on the last level plus one
:class:`~exactcomp.ir.maxpool.PoolCarry` skip per earlier level ``s`` (``S_s`` selects the carried entries).
:func:`raise_max_pools` undoes it: the comparison levels become one layer again, the carries go.
``lower_max_pools(raise_max_pools(net))`` rebuilds ``net`` (same layer and neuron ids).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from exactcomp.ir.maxpool import MaxPool, MaxPoolLayer, PoolCarry, PoolLevel
from exactcomp.ir.skip import Skip


def _play(pool: MaxPool, initial, match):
    """Play the tournament of every window of one channel: ``initial(tap)`` is a tap's value, ``match(t, j, u, v)``
    the value of comparison neuron ``j`` of level ``t`` (between values ``u`` and ``v``; an odd value waits a
    level). Returns ``(counts, finals)``: neurons per level (``counts[0]`` the ``H·W`` entries) and each window's
    final value. The pairing is the lowering's: every caller sees the same comparison neurons."""
    depth = pool.depth
    counts = [pool.in_shape[1] * pool.in_shape[2]] + [0] * depth
    finals = []
    for taps in pool.windows:
        values = [initial(int(i)) for i in taps]
        for t in range(1, depth + 1):
            winners = []
            for a in range(0, len(values) - 1, 2):
                winners.append(match(t, counts[t], values[a], values[a + 1]))
                counts[t] += 1
            values = winners + ([values[-1]] if len(values) % 2 else [])
        assert len(values) == 1, "tournament levels are uneven"
        finals.append(values[0])
    return counts, finals


def tournament(pool: MaxPool):
    """The comparisons of one channel's windows (every channel has the same).

    Returns ``(counts, entries, carried)``: ``counts[t]`` comparison neurons at level ``t`` (``counts[0]`` is
    the ``H·W`` entries of the channel), ``entries[(t, s)] = (rows, cols, signs)`` the ``±1`` entries of
    level ``t``'s pre-activations on level ``s`` (``s = 0``: the pooled input), and ``carried[s] = (rows, cols)``
    the entries of level ``s`` summed into each window's value besides its last comparison neuron.
    The last level has one neuron per window, in window order.
    """
    triplets: dict = {}

    def match(t, j, u, v):          # each value: terms (level, index), coefficients +1
        for terms, sign in ((u, 1.0), (v, -1.0)):
            for s, i in terms:
                triplets.setdefault((t, s), []).append((j, i, sign))
        return [(t, j), *v]

    counts, finals = _play(pool, lambda i: [(0, i)], match)
    carried: dict = {}
    for w, (last, *rest) in enumerate(finals):
        assert last == (pool.depth, w), "tournament levels are uneven"
        for s, i in rest:
            carried.setdefault(s, []).append((w, i))
    entries = {key: tuple(np.array(col) for col in zip(*rows)) for key, rows in triplets.items()}
    return counts, entries, {s: tuple(np.array(col) for col in zip(*rows)) for s, rows in carried.items()}


def fixed_winners(pool: MaxPool, level_active: list, level_inactive: list) -> np.ndarray:
    """Per pooled output (channel-major), the flat index into the pooled input of the entry that is the window's
    maximum on the whole domain, or ``-1`` where that is not proven.

    ``level_active[t - 1]`` / ``level_inactive[t - 1]``: masks of level ``t``'s comparison neurons
    ``relu(u - v)`` proven stably active (``u >= v``: ``max(u, v) = u``) or inactive (``u <= v``: ``= v``), in
    the lowering's order (channel-major, ``counts[t]`` per channel). Ties are harmless: either argument is the
    maximum. Never taken from sample points."""
    channels, area = pool.in_shape[0], pool.in_shape[1] * pool.in_shape[2]
    active = [np.asarray(a, dtype=bool).reshape(channels, -1) for a in level_active]
    inactive = [np.asarray(a, dtype=bool).reshape(channels, -1) for a in level_inactive]

    def match(t, j, u, v):
        won = np.where(active[t - 1][:, j], u, np.where(inactive[t - 1][:, j], v, -1))
        return np.where((u < 0) | (v < 0), -1, won)

    _, finals = _play(pool, lambda i: np.full(channels, i), match)
    taps = np.stack(finals, axis=1)                           # (channels, positions): in-channel tap or -1
    flat = taps + area * np.arange(channels)[:, None]
    return np.where(taps < 0, -1, flat).ravel()


def _per_channel(block_rows, block_cols, rows, cols, data, channels: int):
    """The block-diagonal ``kron(I_channels, B)`` of one channel's sparse block ``B``."""
    block = sp.csr_array((data, (rows, cols)), shape=(block_rows, block_cols))
    return sp.csr_array(sp.kron(sp.eye_array(channels), block))


def _expand(net, q: int, layer: MaxPoolLayer, first: int):
    """The level layers of pooling ``layer`` (raised position ``q``, first level at lowered position ``first``),
    their skips, and ``carries(target, X)`` giving the carry skips of a reader ``X``."""
    pool, channels = layer.pool, layer.pool.in_shape[0]
    counts, entries, carried = tournament(pool)
    depth = pool.depth
    source = {0: first - 1, **{s: first + s - 1 for s in range(1, depth + 1)}}
    levels, skips = [], []
    for t in range(1, depth + 1):
        ops = {s: _per_channel(counts[t], counts[s], *entries[(t, s)], channels)
               for s in range(t) if (t, s) in entries}
        main = ops.pop(t - 1, sp.csr_array((channels * counts[t], channels * counts[t - 1])))
        ids = np.arange(channels * counts[t]) if layer.level_neuron_ids is None else layer.level_neuron_ids[t - 1]
        levels.append(PoolLevel(main, layer.level_ids[t - 1], ids, layer, t))
        skips += [Skip(first + t - 1, source[s], PoolLevel(M, layer.level_ids[t - 1], ids, layer, t))
                  for s, M in ops.items()]
    selections = {s: _per_channel(pool.positions, counts[s], rows, cols, np.ones(rows.size), channels)
                  for s, (rows, cols) in carried.items()}

    def carries(target: int, reader) -> list:
        return [Skip(target, source[s], PoolCarry(S, reader)) for s, S in sorted(selections.items())]

    return levels, skips, carries


def lower_max_pools(net):
    """``net`` with every :class:`MaxPoolLayer` replaced by its comparison levels (see module doc)."""
    if not any(isinstance(layer, MaxPoolLayer) for layer in net.layers):
        return net
    where, layers, skips, carry_of = {-1: -1}, [], [], {}
    for q, layer in enumerate(net.layers):
        if isinstance(layer, MaxPoolLayer):
            if q == 0 or q == len(net.layers) - 1 or isinstance(net.layers[q + 1], MaxPoolLayer) or net.skips_into(q):
                raise ValueError(f"max pooling at position {q} must read a hidden layer and be read by an affine layer")
            levels, level_skips, carry_of[q] = _expand(net, q, layer, len(layers))
            layers += levels
            skips += level_skips
        else:
            layers.append(layer)
        where[q] = len(layers) - 1
    for q, carries in carry_of.items():
        skips += carries(where[q + 1], net.layers[q + 1])
    for skip in net.skips:
        skips.append(Skip(where[skip.target], where[skip.source], skip.op))
        if skip.source in carry_of:
            skips += carry_of[skip.source](where[skip.target], skip.op)
    return net.with_layers(layers, skips)


def raise_max_pools(net):
    """``net`` with each lowered max pooling one :class:`MaxPoolLayer` again (its carries dropped)."""
    if not any(isinstance(layer, PoolLevel) for layer in net.layers):
        return net
    where, layers, pos = {-1: -1}, [], 0
    while pos < len(net.layers):
        layer = net.layers[pos]
        if isinstance(layer, PoolLevel):
            depth = layer.pool.pool.depth
            levels = net.layers[pos:pos + depth]
            if [getattr(x, "level", None) for x in levels] != list(range(1, depth + 1)):
                raise ValueError(f"the comparison levels of the max pooling at position {pos} are incomplete")
            layers.append(MaxPoolLayer(layer.pool.pool, tuple(x.layer_id for x in levels),
                                       tuple(np.asarray(x.neuron_ids) for x in levels)))
            pos += depth
        else:
            layers.append(layer)
            pos += 1
        where[pos - 1] = len(layers) - 1
    skips = [Skip(where[s.target], where[s.source], s.op) for s in net.skips
             if not isinstance(s.op, (PoolCarry, PoolLevel))]
    return net.with_layers(layers, skips)
