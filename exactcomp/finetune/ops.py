"""The ONNX ops of :class:`~exactcomp.finetune.graph.TorchGraph` in torch: ``OPS[op_type](args, attrs)`` with
``args`` the node's inputs (tensors; None for an omitted optional input) and ``attrs`` its attributes, returning
its output (or a tuple of outputs). Float tensors are float64; semantics follow the ONNX operator docs
(opset 7 onwards, inputs-as-attributes of older opsets included where they differ)."""

from __future__ import annotations

import math

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper

from exactcomp.errors import UnsupportedOpError

FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}


def _ints(t) -> list[int]:
    return [int(v) for v in torch.as_tensor(t).reshape(-1).tolist()]


def _gemm(a, at):
    A, B = a[0], a[1]
    A = A.T if at.get("transA", 0) else A
    B = B.T if at.get("transB", 0) else B
    y = at.get("alpha", 1.0) * (A @ B)
    return y + at.get("beta", 1.0) * a[2] if len(a) > 2 and a[2] is not None else y


def _spatial_pads(pads, n):
    """ONNX pads ``[b1..bn, e1..en]`` as F.pad's ``(bn, en, ..., b1, e1)``."""
    pads = list(pads) if pads else [0] * (2 * n)
    out = []
    for i in reversed(range(n)):
        out += [pads[i], pads[i + n]]
    return out


def _auto_pads(x, at, kernel, strides, dilations):
    mode = at.get("auto_pad", b"NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    n = len(kernel)
    if mode in ("NOTSET", ""):
        return list(at.get("pads", [0] * (2 * n)))
    if mode == "VALID":
        return [0] * (2 * n)
    begin, end = [], []
    for i in range(n):
        size = x.shape[2 + i]
        total = max((math.ceil(size / strides[i]) - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size, 0)
        small, large = total // 2, total - total // 2
        begin.append(small if mode == "SAME_UPPER" else large)
        end.append(large if mode == "SAME_UPPER" else small)
    return begin + end


def _conv(a, at):
    x, w = a[0], a[1]
    n = w.dim() - 2
    kernel = list(at.get("kernel_shape", w.shape[2:]))
    strides, dilations = list(at.get("strides", [1] * n)), list(at.get("dilations", [1] * n))
    x = F.pad(x, _spatial_pads(_auto_pads(x, at, kernel, strides, dilations), n))
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[n]
    return conv(x, w, a[2] if len(a) > 2 else None, stride=strides, dilation=dilations, groups=at.get("group", 1))


def _max_pool(a, at):
    x = a[0]
    kernel = list(at["kernel_shape"])
    n = len(kernel)
    strides, dilations = list(at.get("strides", [1] * n)), list(at.get("dilations", [1] * n))
    x = F.pad(x, _spatial_pads(_auto_pads(x, at, kernel, strides, dilations), n), value=-math.inf)
    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[n]
    return pool(x, kernel, strides, dilation=dilations, ceil_mode=bool(at.get("ceil_mode", 0)))


def _average_pool(a, at):
    x = a[0]
    kernel = list(at["kernel_shape"])
    n = len(kernel)
    strides = list(at.get("strides", [1] * n))
    pads = _auto_pads(x, at, kernel, strides, [1] * n)
    if at.get("count_include_pad", 0) or not any(pads):
        x = F.pad(x, _spatial_pads(pads, n))
        pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[n]
        return pool(x, kernel, strides, ceil_mode=bool(at.get("ceil_mode", 0)))
    ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype)   # average over the taps inside the input only
    total = _average_pool([F.pad(x, _spatial_pads(pads, n))], {**at, "pads": [0] * (2 * n), "auto_pad": "NOTSET"})
    count = _average_pool([F.pad(ones, _spatial_pads(pads, n))], {**at, "pads": [0] * (2 * n), "auto_pad": "NOTSET"})
    return total / count


def _batch_norm(a, at):
    x, scale, bias, mean, var = a[:5]
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + at.get("epsilon", 1e-5)) * scale.reshape(shape) \
        + bias.reshape(shape)


def _reshape(a, at):
    x, shape = a[0], _ints(a[1])
    if not at.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _axes(a, at):
    return _ints(a[1]) if len(a) > 1 and a[1] is not None else list(at.get("axes", []))


def _squeeze(a, at):
    axes = _axes(a, at)
    x = a[0]
    return x.squeeze() if not axes else x.squeeze(tuple(ax % x.dim() for ax in axes))


def _unsqueeze(a, at):
    x = a[0]
    for ax in sorted(ax % (x.dim() + len(_axes(a, at))) for ax in _axes(a, at)):
        x = x.unsqueeze(ax)
    return x


def _slice(a, at):
    """ONNX Slice: per axis, the indices ``range(start, end, step)`` after ONNX's clamping (negative steps too)."""
    x = a[0]
    starts, ends = _ints(a[1]), _ints(a[2])
    axes = _ints(a[3]) if len(a) > 3 and a[3] is not None else list(range(len(starts)))
    steps = _ints(a[4]) if len(a) > 4 and a[4] is not None else [1] * len(starts)
    for s, e, ax, st in zip(starts, ends, axes, steps):
        size = x.shape[ax]
        s, e = s + size if s < 0 else s, e + size if e < 0 else e
        s, e = (min(max(s, 0), size), min(max(e, 0), size)) if st > 0 else \
            (min(max(s, 0), size - 1), min(max(e, -1), size - 1))
        x = torch.index_select(x, ax % x.dim(), torch.arange(s, e, st, dtype=torch.int64))
    return x


def _pad(a, at):
    x = a[0]
    pads = _ints(a[1]) if len(a) > 1 and a[1] is not None else list(at["pads"])
    value = float(a[2]) if len(a) > 2 and a[2] is not None else float(at.get("value", 0.0))
    mode = at.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    n = x.dim()
    torch_pads = []
    for i in reversed(range(n)):
        torch_pads += [pads[i], pads[i + n]]
    while len(torch_pads) > 2 and torch_pads[-2:] == [0, 0]:   # F.pad's non-constant modes pad trailing dims only
        torch_pads = torch_pads[:-2]
    return F.pad(x, torch_pads, mode={"edge": "replicate"}.get(mode, mode), value=value if mode == "constant" else None)


def _cast(a, at):
    to = at["to"]
    if to in FLOAT_TYPES:
        return a[0].to(torch.float64)
    return a[0].to(torch.from_numpy(np.zeros(0, helper.tensor_dtype_to_np_dtype(to))).dtype)


def _constant(at):
    if "value" not in at:
        raise UnsupportedOpError(f"Constant with {', '.join(at)} cannot be trained by exactcomp stabilize")
    value = torch.from_numpy(np.array(numpy_helper.to_array(at["value"])))
    return value.to(torch.float64) if at["value"].data_type in FLOAT_TYPES else value


def _constant_of_shape(a, at):
    fill = _constant(at) if "value" in at else torch.zeros(1, dtype=torch.float64)
    return fill.reshape(-1)[0].expand(*_ints(a[0])).clone()


def _flatten(x, axis: int):
    axis = axis % x.dim() if x.dim() else 0
    return x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)


def _argmax(a, at):
    axis, keep = at.get("axis", 0), bool(at.get("keepdims", 1))
    x = a[0].flip(axis) if at.get("select_last_index", 0) else a[0]
    idx = torch.argmax(x, dim=axis, keepdim=keep)
    return (a[0].shape[axis] - 1 - idx) if at.get("select_last_index", 0) else idx


OPS = {
    "Identity": lambda a, at: a[0],
    "Dropout": lambda a, at: (a[0], torch.ones_like(a[0], dtype=torch.bool)),
    "Constant": lambda a, at: _constant(at),
    "Cast": _cast,
    "Gemm": _gemm,
    "MatMul": lambda a, at: a[0] @ a[1],
    "Add": lambda a, at: a[0] + a[1],
    "Sub": lambda a, at: a[0] - a[1],
    "Mul": lambda a, at: a[0] * a[1],
    "Div": lambda a, at: a[0] / a[1],
    "Neg": lambda a, at: -a[0],
    "Relu": lambda a, at: torch.relu(a[0]),
    "Sigmoid": lambda a, at: torch.sigmoid(a[0]),
    "Softmax": lambda a, at: torch.softmax(a[0], dim=at.get("axis", -1)),
    "LogSoftmax": lambda a, at: torch.log_softmax(a[0], dim=at.get("axis", -1)),
    "ArgMax": _argmax,
    "Flatten": lambda a, at: _flatten(a[0], at.get("axis", 1)),
    "Reshape": _reshape,
    "Transpose": lambda a, at: a[0].permute(*(at.get("perm") or reversed(range(a[0].dim())))),
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Concat": lambda a, at: torch.cat(a, dim=at["axis"]),
    "Gather": lambda a, at: torch.index_select(a[0], at.get("axis", 0) % a[0].dim(),
                                               torch.as_tensor(a[1]).reshape(-1) % a[0].shape[at.get("axis", 0)])
    .reshape(*a[0].shape[:at.get("axis", 0) % a[0].dim()], *torch.as_tensor(a[1]).shape,
             *a[0].shape[at.get("axis", 0) % a[0].dim() + 1:]),
    "Slice": _slice,
    "Pad": _pad,
    "ConstantOfShape": lambda a, at: _constant_of_shape(a, at),
    "Shape": lambda a, at: torch.tensor(a[0].shape, dtype=torch.int64)[at.get("start", 0):at.get("end", None)],
    "Conv": _conv,
    "MaxPool": _max_pool,
    "AveragePool": _average_pool,
    "GlobalAveragePool": lambda a, at: a[0].mean(dim=tuple(range(2, a[0].dim())), keepdim=True),
    "BatchNormalization": _batch_norm,
}
