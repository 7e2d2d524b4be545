"""Channel rules of convolutions (exact; pure functions Network → Network).

Notation as in :mod:`exactcomp.rewrite.rules`; ``pos`` is a convolution's position in ``net.layers``.

* :func:`remove_dead_channels` — a convolution's output channel ``o`` stably inactive at every
  position: ``h[o, :, :] = 0``, so delete its filter and bias entry, and what reads it: the matching
  input channel of a following convolution, or the ``H·W`` columns of a following dense layer.
  (Dense rules do not apply inside a convolution: removing single positions would break the structure.)
* constant channels (stably inactive or reading only constants at every position): folded into the
  reader by :func:`exactcomp.rewrite.constants.fold_constant_channels`.

A layer that never fires and that one identity shortcut jumps over (a residual branch that is constant
on the domain) collapses: :func:`collapse_dead_layer`.

A max pooling of the convolution (:class:`~exactcomp.ir.maxpool.MaxPoolLayer`) pools a dead channel to
zero: the channel goes from the pooling and from what reads the pooling alike.
"""

from __future__ import annotations

import numpy as np

from exactcomp.ir.conv import Conv
from exactcomp.ir.maxpool import MaxPoolLayer
from exactcomp.ir.network import Dense, Network
from exactcomp.ir.pool import Pooled, conv_of
from exactcomp.rewrite.base import check_hidden, replace_pair, constant_after
from exactcomp.rewrite.skips import crossed, thinned_skips


def remove_dead_channels(net: Network, pos: int, inactive: np.ndarray) -> Network:
    """Delete the output channels of convolution ``pos`` whose every neuron is in ``inactive`` (see module doc).

    A grouped convolution, or one followed by a grouped convolution, is left as it is.
    """
    check_hidden(net, pos)
    layer, nxt = net.layers[pos], net.layers[pos + 1]
    conv, reader = conv_of(layer), conv_of(nxt)
    if conv is None or conv.groups != 1 or (reader is not None and reader.groups != 1):
        return net
    dead = np.asarray(inactive, dtype=bool).reshape(conv.channels, conv.positions).all(axis=1)
    if dead.all() and crossed(net, pos):
        collapsed = collapse_dead_layer(net, pos)
        if collapsed is not net:
            return collapsed
        dead = dead.copy()
        dead[0] = False  # a shortcut jumps over the layer: keep one (dead) channel, the network is not constant
    keep = ~dead
    skips = thinned_skips(net, pos, np.repeat(keep, conv.positions), keep)
    if not dead.any() or skips is None:
        return net
    if dead.all():
        return remove_all_channels(net, pos)
    if isinstance(nxt, MaxPoolLayer):
        return _remove_channels_through_pool(net, pos, keep, skips)
    nxt = keep_input_channels(nxt, keep, conv.positions)
    if nxt is None:
        return net
    return replace_pair(net, pos, layer.keep_output_channels(keep), nxt, skips)


def keep_input_channels(op, keep: np.ndarray, positions: int):
    """``op`` reading only the input channels where ``keep`` is true (``positions`` entries per channel); None
    where it cannot (a selection feeding a convolution)."""
    from exactcomp.ir.select import Selected
    from exactcomp.ir.skip import Shift

    if isinstance(op, (Conv, Pooled)):
        return op.keep_input_channels(keep)
    if isinstance(op, (Shift, Selected)):
        return op.keep_inputs(np.repeat(keep, positions))
    return Dense(op.W[:, np.repeat(keep, positions)], op.b, op.layer_id, op.neuron_ids)


def _remove_channels_through_pool(net: Network, pos: int, keep: np.ndarray, skips) -> Network:
    """Dead channels of convolution ``pos`` read by a max pooling: a pooled dead channel is zero, so the channel
    goes from the convolution, the pooling and the pooling's readers (``skips``: already thinned at ``pos``)."""
    layer, pool, reader = net.layers[pos], net.layers[pos + 1], net.layers[pos + 2]
    positions = pool.pool.positions
    if conv_of(reader) is not None and conv_of(reader).groups != 1:
        return net
    skips = thinned_skips(net, pos + 1, np.repeat(keep, positions), keep, skips=skips)
    reader = keep_input_channels(reader, keep, positions)
    if skips is None or reader is None:
        return net
    layers = list(net.layers)
    layers[pos:pos + 3] = [layer.keep_output_channels(keep), pool.keep_channels(keep), reader]
    return net.with_layers(layers, skips)


def collapse_dead_layer(net: Network, pos: int) -> Network:
    """Hidden layer ``pos`` never fires and one identity-like shortcut jumps over it, from layer ``pos - 1`` into
    ``pos + 1``: the residual branch is constant, ``g_{pos+1} = A·0 + b + E h_{pos-1} = E h_{pos-1} + b``. The
    layer goes, layer ``pos + 1`` reads layer ``pos - 1`` through :class:`~exactcomp.ir.skip.Shift` (the
    shortcut plus the bias), the skips into and out of the dead layer go (they add to, or read, nothing that
    matters), later positions shift by one. Unchanged when the shortcut is not an ``Embed`` or anything else
    crosses the layer."""
    from exactcomp.ir.skip import Embed, Shift, Skip

    crossing = [s for s in net.skips if s.source < pos < s.target]
    if pos < 1 or len(crossing) != 1:
        return net
    shortcut = crossing[0]
    nxt = net.layers[pos + 1]
    if shortcut.source != pos - 1 or shortcut.target != pos + 1 or not isinstance(shortcut.op, Embed):
        return net
    main = Shift(shortcut.op, nxt.b, nxt.layer_id, nxt.neuron_ids)
    skips = [Skip(s.target - (s.target > pos), s.source - (s.source > pos), s.op) for s in net.skips
             if s is not shortcut and pos not in (s.source, s.target)]
    layers = list(net.layers)
    layers[pos:pos + 2] = [main]
    return net.with_layers(layers, skips)


def remove_all_channels(net: Network, pos: int) -> Network:
    """Convolution ``pos`` is stably inactive everywhere: the network is constant from there on."""
    return constant_after(net, pos)
