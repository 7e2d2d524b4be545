"""Importing padding and average pooling (affine maps the tracer of :mod:`exactcomp.io.onnx_import` applies
exactly), and recognising a dense layer that reads an average pooling of a ReLU output, which then
stays :class:`~exactcomp.ir.pool.Pooled` instead of being folded into a larger dense matrix."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from exactcomp.errors import UnsupportedOpError
from exactcomp.io.onnx_conv import STRUCTURE_RTOL, as_conv, out_hw, channel_affine
from exactcomp.ir.conv import Conv
from exactcomp.ir.network import Dense


def average_pool(tracer, node, shape: tuple[int, ...], attrs: dict):
    """The sparse matrix of ``AveragePool`` / ``GlobalAveragePool`` on a per-sample ``(C, H, W)`` tensor.

    Each output is the mean of its window: a depthwise convolution with kernel ``1 / (k_h k_w)``, or
    with ``count_include_pad=0`` the mean over the taps inside the image (padding taps excluded).
    Returns the :class:`~exactcomp.ir.pool.AveragePool` (its ``matrix`` is ``P``).
    """
    from exactcomp.ir.pool import AveragePool

    if len(shape) != 3:
        tracer.fail_node(node, f"only 2-D pooling is supported (per-sample input {list(shape)})", UnsupportedOpError)
    channels, H, W = shape
    if node.op_type == "GlobalAveragePool":
        kernel, stride, pads, include_pad = (H, W), (1, 1), (0, 0, 0, 0), True
    else:
        kernel = tuple(attrs["kernel_shape"])
        stride = tuple(attrs.get("strides", (1, 1)))
        pads = tuple(attrs.get("pads", (0, 0, 0, 0)))
        if len(kernel) != 2 or len(stride) != 2 or len(pads) != 4 or min(kernel + stride) < 1 or min(pads) < 0:
            tracer.fail_node(node, f"pooling window {list(kernel)}, strides {list(stride)} or pads {list(pads)} invalid",
                             UnsupportedOpError)
        auto_pad = attrs.get("auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        if auto_pad not in ("NOTSET", "VALID", "") or attrs.get("ceil_mode", 0) or tuple(attrs.get("dilations", (1, 1))) != (1, 1):
            tracer.fail_node(node, "auto_pad SAME_*, ceil_mode=1 and dilations are not supported for pooling",
                             UnsupportedOpError)
        pads = tuple(attrs.get("pads", (0, 0, 0, 0)))
        include_pad = bool(attrs.get("count_include_pad", 0))
    h_out, w_out = out_hw(shape, kernel, stride, pads, (1, 1))
    if min(h_out, w_out) < 1:
        tracer.fail_node(node, f"pooling window {list(kernel)} is larger than the input {list(shape)}")
    return AveragePool(shape, kernel, stride, pads, include_pad)


def pool_of_basis(pool, A, c: np.ndarray):
    """``pool`` when it reads the basis itself (``A = I``, ``c = 0``): then a dense layer after it can keep it."""
    found = channel_affine(A, c, pool.in_shape)
    return pool if found is not None and np.all(found[0] == 1.0) and np.all(found[1] == 0.0) else None


def after_pool(x, M: np.ndarray, out):
    """``out = M x`` for a dense map ``M`` (a traced value): when ``x`` is an average pooling of the basis (or some of
    its entries, picked by a ``Gather``: ``M``'s columns go to the gathered entries), remember the pooling and
    ``M``, so that the layer keeps the pooling (:func:`as_pooled`)."""
    from exactcomp.ir.pool import AveragePool

    pool = x.convs.get(x.basis)
    if len(x.terms) == 1 and isinstance(pool, AveragePool):
        out.convs = {x.basis: ("pooled", pool, np.asarray(M))}
    elif len(x.terms) == 1 and isinstance(pool, tuple) and pool[0] == "gathered":   # pooling, Gather, then M
        _, pool, index = pool
        full = np.zeros((M.shape[0], pool.width))
        np.add.at(full, (slice(None), index), np.asarray(M))
        out.convs = {x.basis: ("pooled", pool, full)}
    return out


def as_pooled(A, c: np.ndarray, spec, layer_id: int):
    """``Pooled(pool, Dense(M, c))`` when ``A = M P`` (a dense layer after an average pooling of the basis), or
    ``Pooled(pool, D K)`` when ``A = D K P`` (a convolution ``K``, scaled per channel by what follows it)."""
    from exactcomp.ir.pool import Pooled

    _, pool, M = spec
    if isinstance(M, Conv):              # a convolution after the pooling: A = D K P, c per channel
        conv = as_conv(A, c, M, layer_id, after=pool.matrix)
        return Pooled(pool, conv) if conv is not None else None
    if A.shape != (M.shape[0], int(np.prod(pool.in_shape))):
        return None
    expected = np.asarray((sp.csr_array(M) @ pool.matrix).todense())
    actual = A.toarray() if sp.issparse(A) else np.asarray(A)
    if np.abs(actual - expected).max(initial=0.0) > STRUCTURE_RTOL * 10 * max(np.abs(actual).max(initial=0.0), 1e-300):
        return None
    return Pooled(pool, Dense(M, c, layer_id, np.arange(M.shape[0])))


def pad_selection(tracer, node, shape: tuple[int, ...], attrs: dict):
    """``Pad`` as an affine map ``t = S a + v z``: ``S`` selects (or for ``reflect``/``edge`` repeats) input
    entries, padded entries (``z = 1``) take the constant ``v``; negative pads crop.
    Returns ``(S, padded, value, out_shape)``."""
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if len(node.input) > 1 and node.input[1]:
        pads = tracer.const(node, node.input[1], "pads").astype(np.int64).ravel().tolist()
        value = float(tracer.const(node, node.input[2], "constant_value").ravel()[0]) \
            if len(node.input) > 2 and node.input[2] else 0.0
        if len(node.input) > 3 and node.input[3]:
            tracer.fail_node(node, "Pad with explicit axes is not supported", UnsupportedOpError)
    else:
        pads, value = list(attrs.get("pads", [])), float(attrs.get("value", 0.0))
    rank = len(shape) + 1
    if len(pads) != 2 * rank or mode not in ("constant", "reflect", "edge"):
        tracer.fail_node(node, f"unsupported Pad (mode {mode}, pads {pads})", UnsupportedOpError)
    if pads[0] or pads[rank]:
        tracer.fail_node(node, "pads the batch axis", UnsupportedOpError)
    before, after = pads[1:rank], pads[rank + 1:]
    index = np.arange(int(np.prod(shape))).reshape(shape)
    grow = [(max(b, 0), max(a, 0)) for b, a in zip(before, after)]
    if mode == "constant":
        index = np.pad(index, grow, mode="constant", constant_values=-1)
    else:
        index = np.pad(index, grow, mode=mode)
    crop = tuple(slice(max(-b, 0), index.shape[i] - max(-a, 0)) for i, (b, a) in enumerate(zip(before, after)))
    index = index[crop]
    flat = index.ravel()
    inside = flat >= 0
    S = sp.csr_array((np.ones(int(inside.sum())), (np.flatnonzero(inside), flat[inside])),
                     shape=(flat.size, int(np.prod(shape))))
    return S, ~inside, value, tuple(index.shape)
