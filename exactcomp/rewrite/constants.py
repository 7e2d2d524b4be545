"""Entries that are constant on the domain, and folding constant convolution channels (exact; pure functions).

An entry of a layer's output ``h_l = relu(g_l)`` is *constant on the box* when

* it is proven stably inactive (``h = 0``), or
* its pre-activation reads only constant entries of the layer's input: ``|M_l|[i, :] · 1[not constant] = 0``
  (every weight on a non-constant entry is zero), so ``h_i = relu(M_l[i, :] v + b_i)`` with ``v`` the
  constant values (zero elsewhere) — the input entries fixed by the box (``lower == upper``) for the first
  layer, the constant entries of layer ``l - 1`` (:func:`constant_entries`, recursively) after it;
* or, through a max pooling, every tap of its window is constant (the maximum of constants).

A layer that a skip connection feeds counts only its stably inactive entries (the skip's terms are not
followed). A kernel of zeros is the special case where every position reads nothing: ``relu(bias)``.

:func:`fold_constant_channels` folds a convolution's output channel ``c`` whose every position is constant
(its values ``v_c``, one per position, not necessarily equal) into the layer that reads it, where that is exact:

* a dense reader (or an average pooling then dense): ``b' = b + W[:, cols(c)] v_c``;
* a convolution reader (or an average pooling then a convolution): the term ``conv(v_c)`` it adds is a
  ``(C_out, H', W')`` pattern; when it is the same at every position of each output channel (up to float64
  rounding, relative ``UNIFORM_TOLERANCE``) it is a bias ``b'_o = b_o + conv(v_c)[o, ·]``; otherwise (zero
  padding at the borders, values that differ per position, ...) the channel stays.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from exactcomp.ir.conv import Conv
from exactcomp.ir.maxpool import MaxPoolLayer
from exactcomp.ir.network import Dense, Network
from exactcomp.ir.pool import Pooled, conv_of
from exactcomp.rewrite.base import check_hidden, replace_pair
from exactcomp.rewrite.channels import keep_input_channels
from exactcomp.rewrite.skips import touches_skip

#: Largest spread, relative to ``max(1, |term|)``, of a folded convolution term over the positions of a channel.
UNIFORM_TOLERANCE = 1e-12


def _input_constants(net: Network, box) -> tuple[np.ndarray, np.ndarray]:
    """``(mask, values)`` of the entries the first layer reads that the box fixes."""
    read = np.arange(net.input_size) if net.input_indices is None else np.asarray(net.input_indices)
    fixed = box.lower[read] == box.upper[read]
    return fixed, np.where(fixed, box.lower[read], 0.0)


def constant_entries(net: Network, pos: int, box, status) -> tuple[np.ndarray, np.ndarray]:
    """``(mask, values)`` of the output entries of hidden layer ``pos`` constant on ``box`` (see module doc).

    ``status(net, pos)`` gives the statuses of layer ``pos``'s neurons (a max pooling has none)."""
    from exactcomp.results import Status

    mask, values = _input_constants(net, box) if pos == 0 else constant_entries(net, pos - 1, box, status)
    layer = net.layers[pos]
    free = (~mask).astype(np.float64)[None, :]
    if isinstance(layer, MaxPoolLayer):
        reads_constants = layer.apply(free)[0] == 0
        return reads_constants, np.where(reads_constants, layer.apply(values[None, :])[0], 0.0)
    inactive = status(net, pos) == Status.INACTIVE
    if net.skips_into(pos) or not hasattr(layer, "apply_abs"):
        return inactive, np.zeros(layer.width)
    reads_constants = layer.apply_abs(free)[0] == 0
    value = np.maximum(layer.apply(values[None, :])[0], 0.0)
    constant = inactive | reads_constants
    return constant, np.where(reads_constants & ~inactive, value, 0.0)


def fold_constant_channels(net: Network, pos: int, box, status) -> Network:
    """Fold the output channels of convolution ``pos`` that are constant on ``box`` into its reader (module doc)."""
    check_hidden(net, pos)
    layer, nxt = net.layers[pos], net.layers[pos + 1]
    conv, reader = conv_of(layer), conv_of(nxt)
    if conv is None or conv.groups != 1 or touches_skip(net, pos):
        return net
    mask, values = constant_entries(net, pos, box, status)
    constant = mask.reshape(conv.channels, conv.positions).all(axis=1)
    if not constant.any() or constant.all():
        return net
    patterns = np.zeros((int(constant.sum()), layer.width))     # one input per constant channel: its values
    per_channel = np.arange(layer.width).reshape(conv.channels, conv.positions)[constant]
    patterns[np.arange(len(patterns))[:, None], per_channel] = values[per_channel]
    terms = nxt.apply(patterns) - nxt.b
    if isinstance(nxt, (Dense, Pooled)) and reader is None:
        folded, shift = constant, terms.sum(axis=0)
    elif reader is not None and reader.groups == 1 and not reader.channels_last:
        terms = terms.reshape(len(patterns), reader.channels, reader.positions)
        spread = np.ptp(terms, axis=2).max(axis=1)
        uniform = spread <= UNIFORM_TOLERANCE * np.maximum(1.0, np.abs(terms).max(axis=(1, 2)))
        if not uniform.any():
            return net
        folded = constant.copy()
        folded[constant] = uniform
        shift = terms[uniform].mean(axis=2).sum(axis=0)
    else:
        return net          # a max pooling or a shortcut reads it: kept
    nxt = keep_input_channels(_with_bias_shift(nxt, shift), ~folded, conv.positions)
    return replace_pair(net, pos, layer.keep_output_channels(~folded), nxt)


def _with_bias_shift(op, shift: np.ndarray):
    """A dense or convolution reader, possibly after an average pooling, with ``shift`` added to its bias (per
    output of a dense layer, per channel of a convolution)."""
    inner = op.inner if isinstance(op, Pooled) else op
    if isinstance(inner, Conv):
        inner = replace(inner, bias=inner.bias + shift)
    else:
        inner = Dense(inner.W, inner.b + shift, inner.layer_id, inner.neuron_ids)
    return Pooled(op.pool, inner) if isinstance(op, Pooled) else inner
