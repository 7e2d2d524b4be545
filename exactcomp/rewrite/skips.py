"""Rewrites next to skip connections: keeping the skip ops consistent when neurons or channels go.

When neurons of hidden layer ``pos`` are removed (stably inactive: ``h = 0``), every skip that reads
layer ``pos`` loses the matching inputs, and every skip into layer ``pos`` the matching outputs (those
pre-activations are gone). An :class:`~exactcomp.ir.skip.Embed` keeps the pairs that survive; a dense op
loses columns or rows; a convolution loses input or output channels (only whole channels: a
convolution cannot drop single positions, so such a removal is not done). Removing the last neurons of
a layer that a skip connection jumps over would not make the network constant (the skip still carries
its input): that is not done either. The rules that fold or merge layers (``fold_active_neurons``,
``merge_linear_layer``, ...) are not applied to layers a skip reads or feeds.
"""

from __future__ import annotations

import numpy as np

from exactcomp.ir.conv import Conv
from exactcomp.ir.network import Dense, Network
from exactcomp.ir.select import Selected
from exactcomp.ir.skip import Embed, Skip


def touches_skip(net: Network, pos: int) -> bool:
    """Layer ``pos`` is read or fed by a skip, or a skip jumps over it."""
    return any(s.source <= pos <= s.target for s in net.skips)


def crossed(net: Network, pos: int) -> bool:
    """A skip connection jumps over layer ``pos`` (reads an earlier layer, feeds a later one)."""
    return any(s.source < pos < s.target for s in net.skips)


def _thin(op, keep: np.ndarray, channels: np.ndarray | None, side: str):
    """``op`` without the inputs (``side='in'``) or outputs (``'out'``) where ``keep`` is false; None if
    that is not possible (a convolution and no whole-channel mask)."""
    if isinstance(op, (Embed, Selected)):
        return op.keep_inputs(keep) if side == "in" else op.keep_outputs(keep)
    if isinstance(op, Conv):
        if channels is None or op.groups != 1:
            return None
        return op.keep_input_channels(channels) if side == "in" else op.keep_output_channels(channels)
    if side == "in":
        return Dense(op.W[:, keep], op.b, op.layer_id, op.neuron_ids)
    return Dense(op.W[keep], op.b[keep], op.layer_id, op.neuron_ids[keep])


def thinned_skips(net: Network, pos: int, keep: np.ndarray, channels: np.ndarray | None = None, skips=None):
    """The skips of ``net`` after removing the neurons of layer ``pos`` where ``keep`` is false
    (``channels``: the same as a per-channel mask when ``pos`` is a convolution); None when a skip op
    cannot follow, or when the layer would become empty under a skip that jumps over it. When every neuron of
    ``pos`` goes, a skip into it is dropped, and so is one out of it whose op adds nothing on zeros (no bias).
    ``skips``: thin these instead of ``net.skips`` (a second removal in the same rewrite)."""
    if not keep.any() and crossed(net, pos):
        return None
    source, skips = (net.skips if skips is None else skips), []
    for skip in source:
        op = skip.op
        if not keep.any() and pos in (skip.source, skip.target):
            if skip.target == pos or not np.any(np.asarray(op.b) != 0):
                continue        # it adds into no neuron, or reads only zeros and adds op(0) = 0: gone
            return None
        if skip.source == pos:
            op = _thin(op, keep, channels, "in")
        if op is not None and skip.target == pos:
            op = _thin(op, keep, channels, "out")
        if op is None:
            return None
        skips.append(Skip(skip.target, skip.source, op))
    return tuple(skips)


def evaluate_from(net: Network, pos: int, h: np.ndarray) -> np.ndarray:
    """The trunk output when hidden layer ``pos`` outputs ``h`` (rows) and no skip jumps over ``pos``:
    the layers after ``pos`` evaluated with their skips (which read layers ``>= pos`` only)."""
    post = {pos: h}
    for i in range(pos + 1, len(net.layers)):
        g = net.layers[i].apply(post[i - 1])
        for skip in net.skips_into(i):
            g = g + skip.op.apply(post[skip.source])
        if i == len(net.layers) - 1:
            return g
        post[i] = np.maximum(g, 0.0)
    raise ValueError("pos must be a hidden layer")
