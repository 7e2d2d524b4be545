"""Importing convolutions: the ONNX ``Conv`` node, and recognising a layer that is still a convolution.

The tracer of :mod:`exactcomp.io.onnx_import` keeps every affine value as ``t = A h + c`` on the current
basis ``h``; a ``Conv`` multiplies ``A`` by the convolution's sparse matrix, so any sequence of affine
ops stays exact. To keep the *structure*, the value also remembers the :class:`~exactcomp.ir.conv.Conv`
it came from when the convolution read the basis itself, up to a per-channel scale ``s`` and shift
``t`` (``conv(s ⊙ h + t) = conv_{K s}(h) + Σ K t`` exactly when there is no padding or ``t = 0``).
When the layer ends (a ``Relu``, or the trunk output), :func:`exactcomp.io.onnx_layers.layer_from_affine` checks whether
``A = D M`` and ``c`` is constant per channel, with ``M`` the remembered convolution's matrix and ``D``
a per-output-channel scale (batch normalisation, a bias ``Add``, ``Mul`` by a per-channel constant
after the ``Conv``): then the layer is that convolution with kernel ``D K`` and bias ``c``; otherwise
a :class:`~exactcomp.ir.network.Dense` layer with ``W = A``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from exactcomp.ir.conv import Conv
from exactcomp.errors import UnsupportedOpError
from exactcomp.ir.network import Dense

#: Largest dense weight matrix (entries) an unstructured layer may become (1.6 GB of float64).
MAX_DENSE_ENTRIES = 200_000_000
#: Relative tolerance of the structure checks (float64 rounding of the traced products).
STRUCTURE_RTOL = 1e-12


def _same_pads(size: int, kernel: int, stride: int, dilation: int, upper: bool) -> tuple[int, int]:
    """``auto_pad=SAME_*``: output ``ceil(size / stride)``; the odd pad goes at the end (UPPER) or start."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    small = total // 2
    return (small, total - small) if upper else (total - small, small)


#: Rank of an ONNX ``Conv`` weight -> the function reading such a node into a :class:`Conv` (2-D here; op units
#: such as :mod:`exactcomp.ops.conv1d` add theirs): ``(tracer, node, shape, attrs, kernel) -> Conv``.
CONV_READERS: dict = {}


def read_conv(tracer, node, shape: tuple[int, ...], attrs: dict) -> Conv:
    """The :class:`Conv` (or subclass) an ONNX ``Conv`` node applies to a per-sample tensor of ``shape``."""
    kernel = tracer.const(node, node.input[1], "weight").astype(np.float64)
    reader = CONV_READERS.get(kernel.ndim, conv_spec)
    return reader(tracer, node, shape, attrs, kernel)


def conv_spec(tracer, node, shape: tuple[int, ...], attrs: dict, kernel: np.ndarray) -> Conv:
    """The 2-D :class:`Conv` an ONNX ``Conv`` node with the 4-D ``kernel`` applies to a per-sample tensor of
    ``shape``."""
    if kernel.ndim != 4 or len(shape) != 3:
        tracer.fail_node(node, f"only 2-D convolutions are supported (weight {list(kernel.shape)}, per-sample input "
                               f"{list(shape)})", UnsupportedOpError)
    c_out, _, kh, kw = kernel.shape
    bias = np.zeros(c_out)
    if len(node.input) > 2 and node.input[2]:
        bias = tracer.const(node, node.input[2], "bias").astype(np.float64).ravel()
        if bias.shape != (c_out,):
            tracer.fail_node(node, f"bias has {bias.size} entries for {c_out} output channels")
    if "kernel_shape" in attrs and tuple(attrs["kernel_shape"]) != (kh, kw):
        tracer.fail_node(node, f"kernel_shape {attrs['kernel_shape']} differs from the weight's {[kh, kw]}")
    stride = tuple(attrs.get("strides", (1, 1)))
    dilation = tuple(attrs.get("dilations", (1, 1)))
    if len(stride) != 2 or len(dilation) != 2 or min(stride + dilation) < 1:
        tracer.fail_node(node, f"strides {list(stride)} and dilations {list(dilation)} must be two positive integers each")
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        (top, bottom), (left, right) = (_same_pads(shape[1 + a], (kh, kw)[a], stride[a], dilation[a],
                                                   auto_pad == "SAME_UPPER") for a in (0, 1))
        pads = (top, left, bottom, right)
    elif auto_pad in ("NOTSET", "VALID", ""):
        pads = tuple(attrs.get("pads", (0, 0, 0, 0))) if auto_pad != "VALID" else (0, 0, 0, 0)
    else:
        tracer.fail_node(node, f"auto_pad={auto_pad} is not supported", UnsupportedOpError)
    if len(pads) != 4 or min(pads) < 0:
        tracer.fail_node(node, f"pads {list(pads)} must be four integers >= 0", UnsupportedOpError)
    groups = int(attrs.get("group", 1))
    h_out, w_out = out_hw(shape, (kh, kw), stride, pads, dilation)
    if min(h_out, w_out) < 1:
        tracer.fail_node(node, f"output would be empty (input {list(shape)}, kernel {[kh, kw]}, pads {list(pads)})")
    try:
        return Conv(kernel, bias, shape, 0, np.arange(c_out * h_out * w_out), stride, pads, dilation, groups)
    except ValueError as exc:
        tracer.fail_node(node, str(exc))
        raise  # pragma: no cover - fail_node raises


def out_hw(shape, kernel, stride, pads, dilation) -> tuple[int, int]:
    from exactcomp.ir.conv import conv_output_size

    return (conv_output_size(shape[1], kernel[0], stride[0], dilation[0], pads[0], pads[2]),
            conv_output_size(shape[2], kernel[1], stride[1], dilation[1], pads[1], pads[3]))


def _per_channel(values: np.ndarray, channels: int) -> np.ndarray | None:
    """The per-channel constant of ``values`` (flat, channel-major), or None if it varies in a channel."""
    rows = values.reshape(channels, -1)
    first = rows[:, :1]
    if np.all(np.abs(rows - first) <= STRUCTURE_RTOL * max(np.abs(rows).max(initial=0.0), 1e-300)):
        return first[:, 0].copy()
    return None


def channel_affine(A, c: np.ndarray, shape: tuple[int, int, int], channels_last: bool = False):
    """``(s, t)`` when ``(A h + c)[r] = s h[π(r)] + t`` with ``s, t`` constant per channel, else None.

    ``π`` is the identity (``A`` diagonal) or, with ``channels_last``, the map from the channel-major
    index ``(c, y, x)`` to the channels-last one ``(y, x, c)`` (a ``Transpose`` of an NHWC input)."""
    n = int(np.prod(shape))
    if not sp.issparse(A) or A.shape != (n, n):
        return None
    channels, H, W = shape
    expected = np.arange(n)
    if channels_last:
        expected = np.arange(n).reshape(H, W, channels).transpose(2, 0, 1).ravel()
    coo = sp.coo_array(A)
    if np.any(coo.col != expected[coo.row]):
        return None
    s = _per_channel(np.asarray(sp.csr_array(A)[np.arange(n), expected]).ravel(), channels)
    t = _per_channel(np.asarray(c, dtype=np.float64), channels)
    return None if s is None or t is None else (s, t)


def conv_of_basis(spec: Conv, A, c: np.ndarray) -> Conv | None:
    """``spec`` applied to ``A h + c`` as a convolution of the basis ``h`` itself, if that is exact."""
    channels_last = False
    found = channel_affine(A, c, spec.in_shape)
    if found is None:
        channels_last, found = True, channel_affine(A, c, spec.in_shape, channels_last=True)
    if found is None:
        return None
    s, t = found
    cpg = spec.kernel.shape[1]
    group_of = np.arange(spec.channels) // (spec.channels // spec.groups)
    s_in = s[group_of[:, None] * cpg + np.arange(cpg)[None, :]]          # (C_out, C_in/groups)
    t_in = t[group_of[:, None] * cpg + np.arange(cpg)[None, :]]
    if np.any(t_in != 0) and any(spec.pads):
        return None  # padding zeros are not shifted: not a convolution of h
    kernel = spec.kernel * s_in[:, :, None, None]
    bias = spec.bias + np.einsum("ocij,oc->o", spec.kernel, t_in)
    return replace(spec, kernel=kernel, bias=bias, layer_id=0, channels_last=channels_last)


def conv_of_concatenation(spec: Conv, terms: dict, c: np.ndarray) -> dict:
    """Per basis, the convolution ``spec`` applies to it when the input is a channel concatenation of whole
    bases (each term an identity block over a range of channels, no constant): a convolution is linear
    in its input channels, so ``conv(concat(h_1, h_2)) = conv_{K[:, C_1]}(h_1) + conv_{K[:, C_2]}(h_2)``
    (the bias goes with the layer). Empty when the input is anything else."""
    c_in, H, W = spec.in_shape
    if spec.groups != 1 or np.any(c):
        return {}
    out = {}
    for basis, A in terms.items():
        coo = sp.coo_array(A)
        n = A.shape[1]
        if coo.nnz != n or n % (H * W) or np.any(coo.data != 1.0):
            return {}
        order = np.argsort(coo.col)
        offset = coo.row[order] - coo.col[order]
        if not np.array_equal(coo.col[order], np.arange(n)) or np.any(offset != offset[0]) or offset[0] % (H * W):
            return {}
        first = int(offset[0]) // (H * W)
        channels = slice(first, first + n // (H * W))
        out[basis] = replace(spec, kernel=spec.kernel[:, channels], bias=np.zeros(spec.channels),
                             in_shape=(n // (H * W), H, W), layer_id=0)
    return out


def as_conv(A, c: np.ndarray, spec: Conv, layer_id: int, after=None) -> Conv | None:
    """The convolution ``D spec`` with bias ``c`` when ``A = D M_spec`` (``A = D M_spec P`` with ``after = P``, a
    map applied before the convolution) and ``c`` is per-channel constant."""
    M = spec.matrix() if after is None else sp.csr_array(spec.matrix() @ after)
    if not sp.issparse(A) or A.shape != M.shape:
        return None
    bias = _per_channel(np.asarray(c, dtype=np.float64), spec.channels)
    if bias is None:
        return None
    pivot = np.asarray(abs(M).argmax(axis=1)).ravel()
    m_pivot = M[np.arange(M.shape[0]), pivot]
    a_pivot = sp.csr_array(A)[np.arange(M.shape[0]), pivot]
    ratio = np.where(m_pivot != 0, a_pivot / np.where(m_pivot != 0, m_pivot, 1.0), 1.0)
    d = _per_channel(ratio, spec.channels)
    if d is None:
        return None
    scaled = sp.diags_array(np.repeat(d, spec.positions)) @ M
    scale = max(abs(A).max(), 1e-300)
    if (abs(sp.csr_array(A) - scaled)).max() > STRUCTURE_RTOL * scale * 10:
        return None
    return replace(spec, kernel=spec.kernel * d[:, None, None, None], bias=bias, layer_id=layer_id,
                   neuron_ids=np.arange(spec.width))


def zero_columns_as_selections(layers: list) -> list:
    """A dense layer reading a convolution (or a max pooling, or an average pooling) with all-zero weight columns
    reads only the other entries
    (:class:`~exactcomp.ir.select.Selected`: what exactcomp writes as ``Gather → Gemm``), so that a compressed
    model read back has the structure, and the parameter count, it was written with."""
    from exactcomp.ir.maxpool import MaxPoolLayer
    from exactcomp.ir.pool import conv_of
    from exactcomp.ir.select import Selected

    from exactcomp.ir.pool import Pooled

    def selected(dense: Dense):
        read = dense.W.any(axis=0)
        if not read.any() or read.all():
            return dense
        return Selected(np.flatnonzero(read), Dense(dense.W[:, read], dense.b, dense.layer_id, dense.neuron_ids),
                        dense.fan_in)

    out = list(layers)
    for i in range(1, len(out)):
        layer = out[i]
        if isinstance(layer, Dense) and (conv_of(out[i - 1]) is not None or isinstance(out[i - 1], MaxPoolLayer)):
            out[i] = selected(layer)
        elif isinstance(layer, Pooled) and isinstance(layer.inner, Dense):
            out[i] = Pooled(layer.pool, selected(layer.inner))
    return out
