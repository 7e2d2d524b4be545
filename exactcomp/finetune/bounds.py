"""Interval bounds through an ONNX graph in torch, differentiable in its weights (for the stability losses of
``exactcomp stabilize``).

For an input box ``lower <= x <= upper`` every tensor of the graph gets bounds ``l <= t <= u``, computed node
by node: for a map linear in the data path ``t -> A t`` (Gemm, MatMul, Conv, BatchNormalization, Mul/Div by a
weight) in centre-radius form, ``c' = A c (+ b)``, ``r' = |A| r`` with ``c = (l + u) / 2``, ``r = (u - l) / 2``;
for monotone ops (ReLU, max and average pooling, Sigmoid) ``op(l), op(u)``; shape ops (Flatten, Reshape,
Transpose, Slice, Gather, Concat, Pad, ...) move ``l`` and ``u`` alike. Interval arithmetic is sound but
loose; rounding is not covered, so these bounds steer training and never decide a neuron: ``exactcomp
compress`` proves stability afterwards with its own float64 engine (widened for rounding).

:func:`relu_bounds` returns, for every ``Relu`` node, the bounds of its input (the pre-activations).
"""

from __future__ import annotations

import torch

from exactcomp.errors import UnsupportedOpError
from exactcomp.finetune.graph import TorchGraph
from exactcomp.finetune.ops import OPS


class Interval:
    """Bounds ``lower <= t <= upper`` of a tensor that depends on the input (the data path)."""

    def __init__(self, lower: torch.Tensor, upper: torch.Tensor):
        self.lower, self.upper = lower, upper

    @property
    def centre(self):
        return (self.lower + self.upper) / 2

    @property
    def radius(self):
        return (self.upper - self.lower) / 2

    @classmethod
    def of(cls, centre, radius) -> "Interval":
        return cls(centre - radius, centre + radius)


def _linear(op, args, attrs, data: int):
    """``op`` linear in argument ``data`` (an Interval; the others are points, a bias term included)."""
    c_args = [a.centre if i == data else a for i, a in enumerate(args)]
    r_args = [a.radius if i == data else (a.abs() if isinstance(a, torch.Tensor) and a.is_floating_point() else a)
              for i, a in enumerate(args)]
    centre = op(c_args, attrs)
    radius = op(_without_bias(r_args, op), {**attrs, **({"alpha": abs(attrs.get("alpha", 1.0))} if "alpha" in attrs else {})})
    return Interval.of(centre, radius)


def _without_bias(args, op):
    """The radius map has no bias term: drop Gemm's C and Conv's B."""
    if op in (OPS["Gemm"], OPS["Conv"]):
        return args[:2]
    return args


def _monotone(op, args, attrs):
    return Interval(op([args[0].lower, *args[1:]], attrs), op([args[0].upper, *args[1:]], attrs))


def _add(args, attrs, sign=1.0):
    a, b = args
    lo = lambda v, up: v.upper if up else v.lower   # noqa: E731
    if isinstance(a, Interval) and isinstance(b, Interval):
        return Interval(a.lower + (b.lower if sign > 0 else -b.upper), a.upper + (b.upper if sign > 0 else -b.lower))
    if isinstance(a, Interval):
        return Interval(a.lower + sign * b, a.upper + sign * b)
    return Interval(a + sign * lo(b, sign < 0), a + sign * lo(b, sign > 0))


def _batch_norm(args, attrs):
    x, scale, bias, mean, var = args[:5]
    shape = (1, -1) + (1,) * (x.lower.dim() - 2)
    factor = (scale / torch.sqrt(var + attrs.get("epsilon", 1e-5))).reshape(shape)
    centre = (x.centre - mean.reshape(shape)) * factor + bias.reshape(shape)
    return Interval.of(centre, x.radius * factor.abs())


def _mul(args, attrs, divide=False):
    a, b = args
    x, w = (a, b) if isinstance(a, Interval) else (b, a)
    if isinstance(w, Interval):
        raise UnsupportedOpError("a product of two input-dependent tensors cannot be bounded by exactcomp stabilize")
    w = 1 / w if divide else w
    return Interval.of(x.centre * w, x.radius * w.abs())


_STRUCTURAL = {"Identity", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Gather", "Slice", "Cast",
               "MaxPool", "AveragePool", "GlobalAveragePool", "Sigmoid"}


def _node_bounds(node, args, attrs):
    """Bounds of one node's (first) output from its arguments (Intervals on the data path, else tensors)."""
    op_type = node.op_type
    data = [i for i, a in enumerate(args) if isinstance(a, Interval)]
    if not data:
        return None   # a computation on weights or constants only: evaluated as a point
    if op_type == "Relu":
        return Interval(torch.relu(args[0].lower), torch.relu(args[0].upper))
    if op_type in _STRUCTURAL or (op_type == "Pad" and data == [0]):
        return _monotone(OPS[op_type], args, attrs)
    if op_type == "Dropout":
        return args[0]
    if op_type in ("Gemm", "MatMul", "Conv") and len(data) == 1:
        return _linear(OPS[op_type], args, attrs, data[0])
    if op_type == "Concat":
        return Interval(torch.cat([a.lower if isinstance(a, Interval) else a for a in args], dim=attrs["axis"]),
                        torch.cat([a.upper if isinstance(a, Interval) else a for a in args], dim=attrs["axis"]))
    if op_type in ("Add", "Sub"):
        return _add(args, attrs, 1.0 if op_type == "Add" else -1.0)
    if op_type == "Neg":
        return Interval(-args[0].upper, -args[0].lower)
    if op_type in ("Mul", "Div") and not (op_type == "Div" and data == [1]):
        return _mul(args, attrs, divide=op_type == "Div")
    if op_type == "BatchNormalization" and data == [0]:
        return _batch_norm(args, attrs)
    if op_type == "Shape":
        return OPS["Shape"]([args[0].lower], attrs)
    raise UnsupportedOpError(f"node {node.name or node.output[0]!r}: op {op_type} on the data path cannot be bounded "
                             "by exactcomp stabilize")


_HEAD = {"Softmax", "LogSoftmax", "ArgMax"}


def relu_bounds(graph: TorchGraph, lower: torch.Tensor, upper: torch.Tensor) -> dict:
    """``{relu node name: Interval of its input}`` over the box ``[lower, upper]`` (batched: one box per row).
    Ops of the head (Softmax, LogSoftmax, ArgMax) end the propagation on their path."""
    values = graph.tensors()
    values[graph.input_name] = Interval(torch.as_tensor(lower, dtype=torch.float64),
                                        torch.as_tensor(upper, dtype=torch.float64))
    out = {}
    for index, node in enumerate(graph.nodes):
        args = [values.get(i) if i else None for i in node.input]
        if any(a is _STOP for a in args) or node.op_type in _HEAD:
            values.update((name, _STOP) for name in node.output)
            continue
        attrs = graph.attributes[index]
        bounds = _node_bounds(node, args, attrs)
        if bounds is None:
            result = OPS[node.op_type](args, attrs)
            results = result if isinstance(result, tuple) else (result,)
            values.update(zip(node.output, results))
            continue
        if node.op_type == "Relu":
            out[node.name or node.output[0]] = args[0]
        values[node.output[0]] = bounds
    return out


_STOP = object()
