"""ONNX → :class:`~exactcomp.network.Network`.

The importer interprets the graph symbolically. Every tensor is one of

* a *constant* (initializers, ``Constant`` nodes and anything computed from constants only);
* an *affine* value ``t = A · h + c`` of the current *basis* ``h`` (the flattened model input,
  or the output of the most recent ``Relu``), with its per-sample shape;
* an *opaque* value: something non-piecewise-linear was applied (softmax, argmax, ...).

Affine operations (Conv, Gemm, MatMul, Add/Sub/Mul/Div with constants, Flatten, Reshape, BatchNorm,
Identity, Dropout, Gather of constant indices along a feature axis, ...) update ``A`` and ``c``
(``A`` sparse where it can be: a basis starts as the sparse identity);
consecutive affine operations therefore fold into one layer. A ``Relu`` applied to an affine value
ends a layer ``(W, b) = (A, c)`` and starts a new basis; a layer that is still a convolution of
its basis becomes a :class:`~exactcomp.conv.Conv` (:mod:`exactcomp.onnx_conv`), any other a dense layer. The first affine tensor consumed by a
non-affine operation is the *trunk output*; every opaque node downstream of it forms the *head*,
copied unchanged into the exported model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import scipy.sparse as sp
from onnx import helper, numpy_helper

from . import onnx_conv
from .errors import ModelError, UnsupportedOpError
from .network import Head, Network, TensorInfo

AFFINE_OPS = (
    "Conv", "AveragePool", "GlobalAveragePool", "Pad", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Neg", "Sum", "Concat", "Flatten", "Reshape", "Squeeze",
    "Unsqueeze", "Transpose", "BatchNormalization", "Identity", "Dropout", "Cast", "Gather",
)
#: Ops that, when they appear after a non-linear op, mean that op sat inside the ReLU trunk.
LAYER_OPS = frozenset({"Relu", "Gemm", "MatMul", "Conv", "ConvTranspose", "MatMulInteger", "QLinearMatMul"})
_FLOAT_TYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.DOUBLE: "float64", onnx.TensorProto.FLOAT16: "float16"}


@dataclass
class _Const:
    value: np.ndarray
    batch_dependent: bool = False


@dataclass
class _Affine:
    """``t = Σ_j A_j h_j + c`` for one sample, ``t`` reshaped to ``shape``: ``terms`` maps a basis ``j``
    (0: the model input, ``j``: the output of the ``j``-th ReLU) to ``A_j``. One term is a chain; a
    term on an earlier basis besides the newest one is a skip connection (a residual ``Add``).

    Each ``A_j`` is a dense array or a ``scipy.sparse`` array (a basis starts as the sparse identity).
    ``convs``: per basis, the convolution of that basis its term may still be (:mod:`exactcomp.onnx_conv`).
    """

    terms: dict
    c: np.ndarray
    shape: tuple[int, ...]
    dtype: str
    convs: dict = field(default_factory=dict)

    @property
    def basis(self) -> int:
        """The newest basis the value depends on (its main input)."""
        return max(self.terms)

    @property
    def A(self):
        return self.terms[self.basis]

    def map(self, f, c: np.ndarray, shape, dtype: str | None = None, keep_convs: bool = False) -> "_Affine":
        """The value with every ``A_j`` replaced by ``f(A_j)`` (one linear map applied to all terms)."""
        return _Affine({j: f(A) for j, A in self.terms.items()}, c, tuple(shape), dtype or self.dtype,
                       dict(self.convs) if keep_convs else {})

    def reshaped(self, shape) -> "_Affine":
        return _Affine(dict(self.terms), self.c, tuple(shape), self.dtype, dict(self.convs))


def _basis_size(values, basis: int) -> int:
    return next(v.terms[basis].shape[1] for v in values if basis in v.terms)


def _sparse_or_dense(A):
    return sp.csr_array(A) if sp.issparse(A) else np.asarray(A)


def _identity(n: int):
    return sp.identity(n, format="csr", dtype=np.float64)


def _scale_rows(A, k: np.ndarray):
    """``diag(k) A`` for a dense or sparse ``A``."""
    return sp.csr_array(sp.diags_array(k) @ A) if sp.issparse(A) else A * k[:, None]


def _add(A, B):
    """``A + B`` for dense or sparse operands (sparse only when both are)."""
    if sp.issparse(A) and sp.issparse(B):
        return sp.csr_array(A + B)
    return (A.toarray() if sp.issparse(A) else A) + (B.toarray() if sp.issparse(B) else B)


@dataclass
class _Opaque:
    origin: onnx.NodeProto


def _dims(value_info: onnx.ValueInfoProto, unknown: str) -> list:
    """Dimensions of a tensor value info: ints, symbolic names, or ``unknown`` where unset."""
    return [d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else unknown)
            for d in value_info.type.tensor_type.shape.dim]


def _node_label(node: onnx.NodeProto, index: int) -> str:
    return f"node '{node.name}'" if node.name else f"node #{index} ({node.op_type} -> {', '.join(node.output)})"


class _Tracer:
    def __init__(self, model: onnx.ModelProto, source: str):
        self.model = model
        self.graph = model.graph
        self.source = source
        self.values: dict[str, object] = {}
        self.layers: list[tuple] = []  # (A, c, conv spec or None) per ReLU layer
        self.basis = 0
        self.head_inputs: dict[str, int] = {}  # trunk tensor name -> first consuming node index
        self.opaque_nodes: list[int] = []
        self.node_index = 0

    # ---------------------------------------------------------------- errors
    def fail(self, message: str, cls=ModelError):
        raise cls(f"{self.source}: {message}")

    def fail_node(self, node, message: str, cls=ModelError):
        self.fail(f"{_node_label(node, self.node_index)} (op {node.op_type}): {message}", cls)

    # ---------------------------------------------------------------- inputs
    def read_input(self) -> TensorInfo:
        inits = {t.name for t in self.graph.initializer}
        inputs = [i for i in self.graph.input if i.name not in inits]
        if len(inputs) != 1:
            self.fail(f"expected exactly one graph input, found {len(inputs)} ({', '.join(i.name for i in inputs)})")
        info = inputs[0]
        tt = info.type.tensor_type
        if tt.elem_type not in _FLOAT_TYPES:
            self.fail(f"input '{info.name}' has element type {onnx.TensorProto.DataType.Name(tt.elem_type)}; "
                      "only float, double and float16 inputs are supported")
        dims = _dims(info, "N")
        if len(dims) < 2:
            self.fail(f"input '{info.name}' has shape {dims}; a leading batch axis plus at least one feature axis is required")
        shape = tuple(dims[1:])
        if not all(isinstance(d, int) and d > 0 for d in shape):
            self.fail(f"input '{info.name}' has non-fixed feature dimensions {dims[1:]}; only the batch axis may be dynamic")
        dtype = _FLOAT_TYPES[tt.elem_type]
        n = int(np.prod(shape))
        self.values[info.name] = _Affine({0: _identity(n)}, np.zeros(n), shape, dtype)
        return TensorInfo(info.name, shape, dtype, dims[0] if dims[0] not in ("", 0) else "N")

    def read_initializers(self):
        for init in self.graph.initializer:
            try:
                self.values[init.name] = _Const(numpy_helper.to_array(init))
            except Exception as exc:  # noqa: BLE001 - onnx raises various types
                self.fail(f"cannot read initializer '{init.name}': {exc}")

    # ---------------------------------------------------------------- helpers
    def get(self, node, name: str):
        if name == "":
            return None
        if name not in self.values:
            self.fail_node(node, f"input '{name}' is not produced by any earlier node (graph not topologically sorted?)")
        return self.values[name]

    def const(self, node, name: str, what: str) -> np.ndarray:
        value = self.get(node, name)
        if not isinstance(value, _Const):
            self.fail_node(node, f"{what} '{name}' must be a constant", UnsupportedOpError)
        arr = value.value
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            self.fail_node(node, f"{what} '{name}' contains NaN or infinite values")
        return arr

    def eval_constant(self, node) -> list[np.ndarray]:
        from onnx.reference import ReferenceEvaluator

        inputs = [self.values[name].value for name in node.input if name]
        names = [name for name in node.input if name]
        graph = helper.make_graph(
            [node], "fold",
            [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for n, v in zip(names, inputs)],
            [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output if o],
        )
        model = helper.make_model(graph, opset_imports=self.model.opset_import, ir_version=self.model.ir_version)
        return ReferenceEvaluator(model).run(None, dict(zip(names, inputs)))

    # ---------------------------------------------------------------- affine algebra
    @staticmethod
    def broadcast(value: _Affine, shape: tuple[int, ...]) -> _Affine:
        if tuple(shape) == tuple(value.shape):
            return value
        idx = np.broadcast_to(np.arange(value.c.size).reshape(value.shape), shape).ravel()
        return value.map(lambda A: A[idx], value.c[idx], shape)

    def per_sample_const(self, node, arr: np.ndarray, rank: int) -> np.ndarray:
        """Strip a constant's batch axis for broadcasting against a per-sample tensor of ``rank``."""
        arr = np.asarray(arr, dtype=np.float64)
        if arr.ndim > rank:
            if arr.ndim > rank + 1 or arr.shape[0] != 1:
                self.fail_node(node, f"constant of shape {list(arr.shape)} would broadcast over the batch axis", UnsupportedOpError)
            arr = arr[0]
        return arr

    def elementwise(self, node, a, b, op: str) -> _Affine:
        if isinstance(a, _Affine) and isinstance(b, _Affine):
            if op not in ("Add", "Sub"):
                self.fail_node(node, "product or quotient of two input-dependent tensors is not affine", UnsupportedOpError)
            shape = np.broadcast_shapes(a.shape, b.shape)
            a, b = self.broadcast(a, shape), self.broadcast(b, shape)
            sign = 1.0 if op == "Add" else -1.0
            terms = dict(a.terms)
            for j, B in b.terms.items():
                terms[j] = sign * B if j not in terms else _add(terms[j], sign * B)
            shared = set(a.terms) & set(b.terms)   # a term summed from both sides is no longer one convolution
            convs = {j: spec for j, spec in (*a.convs.items(), *b.convs.items()) if j not in shared}
            return _Affine(terms, a.c + sign * b.c, shape, a.dtype, convs)
        affine_first = isinstance(a, _Affine)
        aff, k = (a, b) if affine_first else (b, a)
        k = self.per_sample_const(node, k.value, len(aff.shape))
        if not np.isfinite(k).all():
            self.fail_node(node, "constant operand contains NaN or infinite values")
        shape = tuple(np.broadcast_shapes(aff.shape, k.shape))
        same = shape == tuple(aff.shape)
        aff = self.broadcast(aff, shape)
        kf = np.broadcast_to(k, shape).ravel()
        if op == "Add":
            return aff.map(lambda A: A, aff.c + kf, shape, keep_convs=same)
        if op == "Sub":
            if affine_first:
                return aff.map(lambda A: A, aff.c - kf, shape, keep_convs=same)
            return aff.map(lambda A: -A, kf - aff.c, shape, keep_convs=same)
        if op == "Mul":
            return aff.map(lambda A: _scale_rows(A, kf), aff.c * kf, shape, keep_convs=same)
        if op == "Div":
            if not affine_first:
                self.fail_node(node, "dividing by an input-dependent tensor is not affine", UnsupportedOpError)
            if np.any(kf == 0):
                self.fail_node(node, "division by zero in a constant divisor")
            return aff.map(lambda A: _scale_rows(A, 1.0 / kf), aff.c / kf, shape, keep_convs=same)
        raise AssertionError(op)

    def axes(self, node, attrs: dict, rank: int) -> list[int]:
        """The ``axes`` of Squeeze/Unsqueeze (input 1 from opset 13, else an attribute), made
        non-negative for a tensor of ``rank`` (batch axis included); the batch axis is refused."""
        if len(node.input) > 1 and node.input[1]:
            axes = self.const(node, node.input[1], "axes").astype(int).ravel().tolist()
        else:
            axes = list(attrs.get("axes", []))
        axes = [a + rank if a < 0 else a for a in axes]
        if 0 in axes:
            self.fail_node(node, "operates on the batch axis", UnsupportedOpError)
        return axes

    # ---------------------------------------------------------------- op handlers
    def op_affine(self, node, ins: list, attrs: dict) -> list:
        op = node.op_type
        x = ins[0]
        if op in ("Identity", "Dropout"):
            return [x] + [_Opaque(node)] * (len(node.output) - 1)
        if op == "Cast":
            to = attrs.get("to")
            if to not in _FLOAT_TYPES:
                return None  # a cast to an integer type is not piecewise linear: head boundary
            return [x.map(lambda A: A, x.c, x.shape, _FLOAT_TYPES[to], keep_convs=True)]
        if op == "Neg":
            return [x.map(lambda A: -A, -x.c, x.shape, keep_convs=True)]
        if op in ("Add", "Sub", "Mul", "Div"):
            return [self.elementwise(node, ins[0], ins[1], op)]
        if op == "Sum":
            acc = ins[0]
            for other in ins[1:]:
                acc = self.elementwise(node, acc, other, "Add")
            return [acc]
        if op == "Concat":
            return [self.concat(node, ins, attrs)]
        if not isinstance(x, _Affine):
            self.fail_node(node, "only the first input may depend on the model input", UnsupportedOpError)
        if op == "Flatten":
            if attrs.get("axis", 1) not in (1, -len(x.shape) - 1):
                self.fail_node(node, f"Flatten with axis={attrs['axis']} mixes the batch axis", UnsupportedOpError)
            return [x.reshaped((int(np.prod(x.shape)),))]
        if op == "Reshape":
            return [x.reshaped(self.reshape_target(node, x, attrs))]
        if op == "Squeeze":  # axes refer to the input; none given means every size-1 feature axis
            full = (1, *x.shape)
            axes = self.axes(node, attrs, len(full)) or [i for i, d in enumerate(full) if d == 1 and i > 0]
            return [x.reshaped(tuple(d for i, d in enumerate(full) if i not in axes)[1:])]
        if op == "Unsqueeze":  # axes refer to the output, whose rank grows by len(axes)
            n_axes = len(self.const(node, node.input[1], "axes").ravel()) if len(node.input) > 1 else len(attrs["axes"])
            shape = [1, *x.shape]
            for a in sorted(self.axes(node, attrs, len(shape) + n_axes)):
                shape.insert(a, 1)
            return [x.reshaped(tuple(shape[1:]))]
        if op == "Transpose":
            perm = list(attrs.get("perm", range(len(x.shape), -1, -1)))
            if perm[0] != 0:
                self.fail_node(node, "moves the batch axis", UnsupportedOpError)
            idx = np.arange(x.c.size).reshape(x.shape).transpose([p - 1 for p in perm[1:]])
            return [x.map(lambda A: A[idx.ravel()], x.c[idx.ravel()], idx.shape)]
        if op == "Gather":  # a selection of entries along a feature axis (constant indices)
            axis = attrs.get("axis", 0)
            axis = axis + len(x.shape) + 1 if axis < 0 else axis
            if axis == 0:
                self.fail_node(node, "gathers along the batch axis", UnsupportedOpError)
            indices = self.const(node, node.input[1], "indices").astype(np.int64)
            dim = x.shape[axis - 1]
            if np.any((indices < -dim) | (indices >= dim)):
                self.fail_node(node, f"indices outside [-{dim}, {dim - 1}]")
            idx = np.take(np.arange(x.c.size).reshape(x.shape), indices, axis=axis - 1)
            return [x.map(lambda A: A[idx.ravel()], x.c[idx.ravel()], idx.shape)]
        if op == "Conv":
            return [self.conv(node, x, attrs)]
        if op == "Pad":
            S, padded, value, shape = onnx_conv.pad_selection(self, node, tuple(x.shape), attrs)
            return [x.map(lambda A: _sparse_or_dense(S @ A), S @ x.c + value * padded, shape)]
        if op in ("AveragePool", "GlobalAveragePool"):
            P, shape = onnx_conv.average_pool_matrix(self, node, tuple(x.shape), attrs)
            return [x.map(lambda A: _sparse_or_dense(P @ A), P @ x.c, shape)]
        if op == "Gemm":
            return [self.gemm(node, ins, attrs)]
        if op == "MatMul":
            return [self.matmul(node, x)]
        if op == "BatchNormalization":
            return [self.batchnorm(node, x, attrs)]
        raise AssertionError(op)

    def concat(self, node, ins: list, attrs: dict) -> _Affine:
        """Concatenation along a feature axis: the operands' rows stacked in the order of the result."""
        affine = [v for v in ins if isinstance(v, _Affine)]
        rank = len(affine[0].shape)
        axis = attrs.get("axis", 1)
        axis = axis + rank + 1 if axis < 0 else axis
        if axis == 0:
            self.fail_node(node, "concatenates along the batch axis", UnsupportedOpError)
        parts, offset = [], 0
        for v in ins:
            if isinstance(v, _Const):
                v = self.per_sample_const(node, v.value, rank)
                v = _Affine({}, np.asarray(v, dtype=np.float64).ravel(), v.shape, affine[0].dtype)
            parts.append((v, np.arange(offset, offset + v.c.size).reshape(v.shape)))
            offset += v.c.size
        try:
            order = np.concatenate([index for _, index in parts], axis=axis - 1).ravel()
        except ValueError as exc:
            self.fail_node(node, f"operand shapes do not concatenate: {exc}")
        bases = sorted({j for v, _ in parts for j in v.terms})
        terms = {}
        for j in bases:
            blocks = [v.terms[j] if j in v.terms else sp.csr_array((v.c.size, _basis_size(affine, j))) for v, _ in parts]
            stacked = sp.vstack([sp.csr_array(b) for b in blocks], format="csr") if any(sp.issparse(b) for b in blocks) \
                else np.vstack(blocks)
            terms[j] = _sparse_or_dense(stacked[order])
        shape = np.concatenate([index for _, index in parts], axis=axis - 1).shape
        return _Affine(terms, np.concatenate([v.c for v, _ in parts])[order], shape, affine[0].dtype)

    def reshape_target(self, node, x: _Affine, attrs: dict) -> tuple[int, ...]:
        target = self.const(node, node.input[1], "shape").astype(np.int64).tolist()
        if not target:
            self.fail_node(node, "reshapes away the batch axis", UnsupportedOpError)
        allowzero = attrs.get("allowzero", 0)
        rest = [x.shape[i] if (d == 0 and not allowzero and i < len(x.shape)) else d for i, d in enumerate(target[1:])]
        size = int(np.prod(x.shape))
        if rest.count(-1) > 1:
            self.fail_node(node, f"ambiguous target shape {target}", UnsupportedOpError)
        if -1 in rest:
            known = int(np.prod([d for d in rest if d != -1]))
            if known == 0 or size % known:
                self.fail_node(node, f"cannot reshape per-sample shape {list(x.shape)} to {target}", UnsupportedOpError)
            rest[rest.index(-1)] = size // known
        if int(np.prod(rest)) != size:
            self.fail_node(node, f"target {target} changes the batch axis (per-sample shape {list(x.shape)})", UnsupportedOpError)
        return tuple(int(d) for d in rest)

    def gemm(self, node, ins, attrs) -> _Affine:
        x = ins[0]
        if attrs.get("transA", 0):
            self.fail_node(node, "transA=1 on an input-dependent tensor mixes the batch axis", UnsupportedOpError)
        if len(x.shape) != 1:
            self.fail_node(node, f"expects a 2-D input, got per-sample shape {list(x.shape)}", UnsupportedOpError)
        B = self.const(node, node.input[1], "weight B").astype(np.float64)
        if B.ndim != 2:
            self.fail_node(node, f"weight B has shape {list(B.shape)}, expected 2-D")
        Bm = B.T if attrs.get("transB", 0) else B
        if Bm.shape[0] != x.shape[0]:
            self.fail_node(node, f"weight shape {list(B.shape)} does not match input width {x.shape[0]}")
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        n = Bm.shape[1]
        bias = np.zeros(n)
        if len(node.input) > 2 and node.input[2]:
            C = self.per_sample_const(node, self.const(node, node.input[2], "bias C"), 1)
            bias = beta * np.broadcast_to(C, (n,))
        M = alpha * Bm.T
        return x.map(lambda A: _sparse_or_dense(M @ A), M @ x.c + bias, (n,))

    def matmul(self, node, x: _Affine) -> _Affine:
        W = self.const(node, node.input[1], "weight").astype(np.float64)
        if W.ndim != 2 or not x.shape or x.shape[-1] != W.shape[0]:
            self.fail_node(node, f"weight of shape {list(W.shape)} does not match input per-sample shape {list(x.shape)}",
                           UnsupportedOpError)
        lead = int(np.prod(x.shape[:-1]))
        M = W.T if lead == 1 else np.kron(np.eye(lead), W.T)
        return x.map(lambda A: _sparse_or_dense(M @ A), M @ x.c, (*x.shape[:-1], W.shape[1]))

    def conv(self, node, x: _Affine, attrs) -> _Affine:
        spec = onnx_conv.conv_spec(self, node, tuple(x.shape), attrs)
        M = spec.matrix()
        out = x.map(lambda A: _sparse_or_dense(M @ A), M @ x.c + spec.b, spec.out_shape)
        if len(x.terms) == 1:   # a convolution of one basis (not of a sum with a skip connection)
            structured = onnx_conv.conv_of_basis(spec, x.A, x.c)
            out.convs = {x.basis: structured} if structured is not None else {}
        return out

    def batchnorm(self, node, x: _Affine, attrs) -> _Affine:
        if attrs.get("training_mode", 0):
            self.fail_node(node, "training-mode batch normalization is not supported", UnsupportedOpError)
        scale, bias, mean, var = (self.const(node, node.input[i], name).astype(np.float64)
                                  for i, name in enumerate(("scale", "B", "mean", "var"), start=1))
        eps = float(attrs.get("epsilon", 1e-5))
        k = scale / np.sqrt(var + eps)
        channel = (-1,) + (1,) * (len(x.shape) - 1)
        scaled = self.elementwise(node, x, _Const(k.reshape(channel)), "Mul")
        return self.elementwise(node, scaled, _Const((bias - mean * k).reshape(channel)), "Add")

    def relu(self, node, x: _Affine) -> _Affine:
        if x.basis != self.basis:
            self.fail_node(node, "applies to a tensor that does not depend on the previous ReLU (parallel branches "
                                 "are not supported; skip connections into a later layer are)", UnsupportedOpError)
        self.layers.append(x)
        self.basis += 1
        n = x.c.size
        return _Affine({self.basis: _identity(n)}, np.zeros(n), x.shape, x.dtype)

    # ---------------------------------------------------------------- main loop
    def run_node(self, node):
        ins = [self.get(node, name) for name in node.input]
        present = [v for v in ins if v is not None]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        opaque = [v for v in present if isinstance(v, _Opaque)]
        if opaque:
            if node.op_type in LAYER_OPS:
                origin = opaque[0].origin
                self.fail(f"node '{origin.name or origin.output[0]}' (op {origin.op_type}) inside the ReLU trunk is not "
                          f"supported (it is followed by {node.op_type} node '{node.name or node.output[0]}'); "
                          f"supported trunk ops: {', '.join(AFFINE_OPS)}, Relu", UnsupportedOpError)
            self.set_opaque(node, opaque[0].origin)
            return
        if all(isinstance(v, _Const) for v in present):
            self.fold_constant(node, present)
            return
        if node.op_type == "Shape":
            x = present[0]
            full = np.array([1, *x.shape], dtype=np.int64)
            start, end = attrs.get("start", 0), attrs.get("end", None)
            self.values[node.output[0]] = _Const(full[start:end], batch_dependent=True)
            return
        if node.op_type == "Relu":
            self.values[node.output[0]] = self.relu(node, present[0])
            return
        outs = self.op_affine(node, ins, attrs) if node.op_type in AFFINE_OPS else None
        if outs is None:  # first non-affine op: its affine inputs are trunk outputs
            for name, v in zip(node.input, ins):
                if isinstance(v, _Affine):
                    self.head_inputs.setdefault(name, self.node_index)
            self.set_opaque(node, node)
            return
        for name, value in zip(node.output, outs):
            if name:
                self.values[name] = value

    def set_opaque(self, node, origin):
        self.opaque_nodes.append(self.node_index)
        for name in node.output:
            if name:
                self.values[name] = _Opaque(origin)

    def fold_constant(self, node, present):
        try:
            results = self.eval_constant(node)
        except Exception:  # noqa: BLE001 - anything the reference evaluator cannot do stays opaque
            self.set_opaque(node, node)
            return
        dep = any(v.batch_dependent for v in present)
        for name, value in zip([o for o in node.output if o], results):
            self.values[name] = _Const(np.asarray(value), batch_dependent=dep)

    def run(self):
        for index, node in enumerate(self.graph.node):
            self.node_index = index
            self.run_node(node)


def _output_info(vi: onnx.ValueInfoProto) -> TensorInfo:
    tt = vi.type.tensor_type
    dims = _dims(vi, "?")
    np_type = helper.tensor_dtype_to_np_dtype(tt.elem_type) if tt.elem_type != onnx.TensorProto.STRING else None
    dtype = "string" if np_type is None else np.dtype(np_type).name
    return TensorInfo(vi.name, tuple(dims[1:]), dtype, dims[0] if dims else "N")


def _build_head(tracer: _Tracer, trunk_name: str) -> Head | None:
    graph = tracer.graph
    head_node_ids = set(tracer.opaque_nodes)
    output_names = [o.name for o in graph.output]
    if not head_node_ids and output_names == [trunk_name]:
        return None
    produced = {}
    for i, node in enumerate(graph.node):
        for o in node.output:
            produced[o] = i
    inits = {t.name: t for t in graph.initializer}
    needed_inits, extra_inits = {}, []
    stack = sorted(head_node_ids)
    seen = set(stack)
    while stack:
        node = graph.node[stack.pop()]
        for name in node.input:
            if not name or name == trunk_name:
                continue
            value = tracer.values.get(name)
            if name in inits:
                needed_inits[name] = inits[name]
            elif isinstance(value, _Const) and not value.batch_dependent:
                extra_inits.append(numpy_helper.from_array(value.value, name))
            elif name in produced and produced[name] not in seen and not isinstance(value, _Affine):
                seen.add(produced[name])
                stack.append(produced[name])
            elif isinstance(value, _Affine):
                tracer.fail(f"the head (node '{node.name or node.output[0]}') reads trunk tensor '{name}' besides the "
                            f"trunk output '{trunk_name}'", UnsupportedOpError)
    nodes = [graph.node[i] for i in sorted(seen)]
    out_infos = [o for o in graph.output]
    head_graph = helper.make_graph(nodes, "exactcomp_head", [], out_infos,
                                   initializer=list(needed_inits.values()) + extra_inits)
    return Head(head_graph.SerializeToString(), trunk_name)


def _load_model(path: Path) -> onnx.ModelProto:
    if not path.exists():
        raise ModelError(f"{path}: no such file")
    try:
        model = onnx.load(str(path))
    except FileNotFoundError as exc:
        raise ModelError(f"{path}: external data file not found ({exc.filename or exc})") from None
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise ModelError(f"{path}: not a valid ONNX model ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:  # noqa: BLE001 - ValidationError and C++ errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: malformed ONNX model: {first}") from None
    return model


def import_model(model: onnx.ModelProto | str | Path, source: str | None = None) -> Network:
    """Import an ONNX ReLU MLP (a ``ModelProto`` or a path) into the layer-graph IR."""
    if not isinstance(model, onnx.ModelProto):
        path = Path(model)
        source = source or str(path)
        model = _load_model(path)
    source = source or "model"
    tracer = _Tracer(model, source)
    tracer.read_initializers()
    input_info = tracer.read_input()
    tracer.run()

    graph_outputs = [o.name for o in model.graph.output]
    trunk_names = dict(tracer.head_inputs)
    for name in graph_outputs:
        value = tracer.values.get(name)
        if value is None:
            tracer.fail(f"graph output '{name}' is not produced by any node")
        if isinstance(value, _Affine):
            trunk_names.setdefault(name, len(model.graph.node))
        elif isinstance(value, _Const):
            tracer.fail(f"graph output '{name}' does not depend on the input")
    if not trunk_names:
        tracer.fail("no output depends piecewise-linearly on the input")
    if len(trunk_names) > 1:
        tracer.fail(f"the non-linear head reads several trunk tensors ({', '.join(trunk_names)}); "
                    "exactly one trunk output is supported", UnsupportedOpError)
    trunk_name = next(iter(trunk_names))
    trunk = tracer.values[trunk_name]
    if trunk.basis != tracer.basis:
        tracer.fail(f"trunk output '{trunk_name}' does not depend on the last ReLU layer (branches are not supported)",
                    UnsupportedOpError)
    if not tracer.layers:
        tracer.fail("the model has no Relu: there is nothing to compress", UnsupportedOpError)

    layers, skips = _assemble(tracer, [*tracer.layers, trunk], trunk_name)
    head = _build_head(tracer, trunk_name)
    outputs = tuple(_output_info(o) for o in model.graph.output)
    trunk_info = TensorInfo(trunk_name, trunk.shape, trunk.dtype, input_info.batch)
    opsets = tuple((o.domain, o.version) for o in model.opset_import)
    return Network(
        layers=tuple(layers), input=input_info, trunk_output=trunk_info, outputs=outputs,
        compute_dtype=trunk.dtype, head=head, opsets=opsets, skips=tuple(skips),
        metadata={"source": source, "ir_version": model.ir_version, "producer": model.producer_name,
                  "stored_parameters": _stored_trunk_parameters(model, head)},
    )


def _assemble(tracer: _Tracer, traced: list[_Affine], trunk_name: str):
    """The IR layers (main terms) and skip connections (terms on earlier bases) of the traced values."""
    from .skip import Skip

    layers, skips = [], []
    for i, value in enumerate(traced):
        what = f"layer {i + 1}" if i < len(traced) - 1 else f"the trunk output '{trunk_name}'"
        for A in value.terms.values():
            data = A.data if sp.issparse(A) else A
            if not (np.isfinite(data).all() and np.isfinite(value.c).all()):
                tracer.fail(f"folded weights of {what} are not finite (overflow in the model's constants?)")
        layers.append(onnx_conv.layer_from_affine(tracer, value.terms[i], value.c, value.convs.get(i), i + 1, what))
        for j in sorted(b for b in value.terms if b != i):
            op = onnx_conv.skip_op_from_affine(tracer, value.terms[j], value.convs.get(j), f"the skip connection into {what}")
            skips.append(Skip(i, j - 1, op))
    return layers, skips


def _stored_trunk_parameters(model: onnx.ModelProto, head: Head | None) -> int:
    """Float entries the original model stores outside its head (initializers and ``Constant`` nodes):
    what a compressed trunk should not exceed."""
    def floats(tensors) -> int:
        return sum(int(np.prod(t.dims)) for t in tensors if t.data_type in _FLOAT_TYPES)

    constants = [a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"]
    total = floats(model.graph.initializer) + floats(constants)
    if head is not None:
        graph = onnx.GraphProto()
        graph.ParseFromString(head.graph)
        total -= floats(graph.initializer) + floats(a.t for n in graph.node if n.op_type == "Constant"
                                                    for a in n.attribute if a.name == "value")
    return max(total, 0)


def external_data_files(path: str | Path) -> list[Path]:
    """The external-data files an ONNX file at ``path`` refers to (empty if unreadable or none)."""
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - a bad model is reported by import_model
        return []
    files = {path.parent / ExternalDataInfo(t).location for t in _get_all_tensors(model) if uses_external_data(t)}
    return sorted(files)


def model_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of the ONNX file at ``path`` (empty if unreadable)."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - a bad model is reported when it is run
        return {}
    return {p.key: p.value for p in model.metadata_props}
