"""The affine ONNX ops of the importer's tracer (:mod:`exactcomp.io.onnx_import`): each maps affine values
``Σ_j A_j h_j + c`` to affine values (element-wise arithmetic with constants or between branches,
Gemm/MatMul, Conv, pooling, padding, reshapes, transposes, gathers, concatenation, batch normalisation).
:class:`AffineOps` is mixed into the tracer, which provides ``fail_node``, ``const`` and ``values``."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from exactcomp.io import onnx_conv, onnx_pool, onnx_reshape
from exactcomp.errors import UnsupportedOpError
from exactcomp.ir.pool import AveragePool
from exactcomp.io.onnx_values import FLOAT_TYPES, add_operands, Affine, basis_size, Const, Opaque, scale_rows, sparse_or_dense


class AffineOps:
    # ---------------------------------------------------------------- affine algebra
    @staticmethod
    def broadcast(value: Affine, shape: tuple[int, ...]) -> Affine:
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

    def elementwise(self, node, a, b, op: str) -> Affine:
        if isinstance(a, Affine) and isinstance(b, Affine):
            if op not in ("Add", "Sub"):
                self.fail_node(node, "product or quotient of two input-dependent tensors is not affine", UnsupportedOpError)
            shape = np.broadcast_shapes(a.shape, b.shape)
            a, b = self.broadcast(a, shape), self.broadcast(b, shape)
            sign = 1.0 if op == "Add" else -1.0
            terms = dict(a.terms)
            for j, B in b.terms.items():
                terms[j] = sign * B if j not in terms else add_operands(terms[j], sign * B)
            shared = set(a.terms) & set(b.terms)   # a term summed from both sides is no longer one convolution
            convs = {j: spec for j, spec in (*a.convs.items(), *b.convs.items()) if j not in shared}
            return Affine(terms, a.c + sign * b.c, shape, a.dtype, convs)
        affine_first = isinstance(a, Affine)
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
            return aff.map(lambda A: scale_rows(A, kf), aff.c * kf, shape, keep_convs=same)
        if op == "Div":
            if not affine_first:
                self.fail_node(node, "dividing by an input-dependent tensor is not affine", UnsupportedOpError)
            if np.any(kf == 0):
                self.fail_node(node, "division by zero in a constant divisor")
            return aff.map(lambda A: scale_rows(A, 1.0 / kf), aff.c / kf, shape, keep_convs=same)
        raise AssertionError(op)

    # ---------------------------------------------------------------- op handlers
    def op_affine(self, node, ins: list, attrs: dict) -> list:
        """The outputs of ``node`` (an op of ``AFFINE_OPS``): its handler in :data:`ANY_OPERANDS` (ops whose first
        operand may be a constant or an opaque value), or in :data:`AFFINE_OPERAND` (one affine value in, one out;
        :mod:`exactcomp.io.onnx_reshape` for the ops that only rearrange entries)."""
        op = node.op_type
        if op in ANY_OPERANDS:
            return ANY_OPERANDS[op](self, node, ins, attrs)
        x = ins[0]
        if not isinstance(x, Affine):
            self.fail_node(node, "only the first input may depend on the model input", UnsupportedOpError)
        return [AFFINE_OPERAND[op](self, node, x, attrs)]

    def passed_through(self, node, ins: list, attrs: dict) -> list:
        """Identity, Dropout (inference): the value itself; a Dropout's mask output is opaque."""
        return [ins[0]] + [Opaque(node)] * (len(node.output) - 1)

    def cast(self, node, ins: list, attrs: dict) -> list | None:
        to = attrs.get("to")
        if to not in FLOAT_TYPES:
            return None  # a cast to an integer type is not piecewise linear: head boundary
        x = ins[0]
        return [x.map(lambda A: A, x.c, x.shape, FLOAT_TYPES[to], keep_convs=True)]

    def negated(self, node, ins: list, attrs: dict) -> list:
        x = ins[0]
        return [x.map(lambda A: -A, -x.c, x.shape, keep_convs=True)]

    def arithmetic(self, node, ins: list, attrs: dict) -> list:
        return [self.elementwise(node, ins[0], ins[1], node.op_type)]

    def summed(self, node, ins: list, attrs: dict) -> list:
        acc = ins[0]
        for other in ins[1:]:
            acc = self.elementwise(node, acc, other, "Add")
        return [acc]

    def concatenated(self, node, ins: list, attrs: dict) -> list:
        return [self.concat(node, ins, attrs)]

    def padded(self, node, x: Affine, attrs: dict) -> Affine:
        S, padded, value, shape = onnx_pool.pad_selection(self, node, tuple(x.shape), attrs)
        return x.map(lambda A: sparse_or_dense(S @ A), S @ x.c + value * padded, shape)

    def average_pooled(self, node, x: Affine, attrs: dict) -> Affine:
        pool = onnx_pool.average_pool(self, node, tuple(x.shape), attrs)
        P = pool.matrix
        out = x.map(lambda A: sparse_or_dense(P @ A), P @ x.c, pool.out_shape)
        if len(x.terms) == 1 and onnx_pool.pool_of_basis(pool, x.A, x.c) is not None:
            out.convs = {x.basis: pool}   # a dense layer after it keeps the pooling (exactcomp.ir.pool)
        return out

    def concat(self, node, ins: list, attrs: dict) -> Affine:
        """Concatenation along a feature axis: the operands' rows stacked in the order of the result."""
        affine = [v for v in ins if isinstance(v, Affine)]
        rank = len(affine[0].shape)
        axis = attrs.get("axis", 1)
        axis = axis + rank + 1 if axis < 0 else axis
        if axis == 0:
            self.fail_node(node, "concatenates along the batch axis", UnsupportedOpError)
        parts, offset = [], 0
        for v in ins:
            if isinstance(v, Const):
                v = self.per_sample_const(node, v.value, rank)
                v = Affine({}, np.asarray(v, dtype=np.float64).ravel(), v.shape, affine[0].dtype)
            parts.append((v, np.arange(offset, offset + v.c.size).reshape(v.shape)))
            offset += v.c.size
        try:
            order = np.concatenate([index for _, index in parts], axis=axis - 1).ravel()
        except ValueError as exc:
            self.fail_node(node, f"operand shapes do not concatenate: {exc}")
        bases = sorted({j for v, _ in parts for j in v.terms})
        terms = {}
        for j in bases:
            blocks = [v.terms[j] if j in v.terms else sp.csr_array((v.c.size, basis_size(affine, j))) for v, _ in parts]
            stacked = sp.vstack([sp.csr_array(b) for b in blocks], format="csr") if any(sp.issparse(b) for b in blocks) \
                else np.vstack(blocks)
            terms[j] = sparse_or_dense(stacked[order])
        shape = np.concatenate([index for _, index in parts], axis=axis - 1).shape
        return Affine(terms, np.concatenate([v.c for v, _ in parts])[order], shape, affine[0].dtype)

    def gemm(self, node, x: Affine, attrs) -> Affine:
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
        return onnx_pool.after_pool(x, M, x.map(lambda A: sparse_or_dense(M @ A), M @ x.c + bias, (n,)))

    def matmul(self, node, x: Affine, attrs) -> Affine:
        W = self.const(node, node.input[1], "weight").astype(np.float64)
        if W.ndim != 2 or not x.shape or x.shape[-1] != W.shape[0]:
            self.fail_node(node, f"weight of shape {list(W.shape)} does not match input per-sample shape {list(x.shape)}",
                           UnsupportedOpError)
        lead = int(np.prod(x.shape[:-1]))
        M = W.T if lead == 1 else np.kron(np.eye(lead), W.T)
        out = x.map(lambda A: sparse_or_dense(M @ A), M @ x.c, (*x.shape[:-1], W.shape[1]))
        return onnx_pool.after_pool(x, M, out) if lead == 1 else out

    def conv(self, node, x: Affine, attrs) -> Affine:
        spec = onnx_conv.read_conv(self, node, tuple(x.shape), attrs)
        M = spec.matrix()
        out = x.map(lambda A: sparse_or_dense(M @ A), M @ x.c + spec.b, spec.value_shape)
        pool = x.convs.get(x.basis) if len(x.terms) == 1 else None
        if isinstance(pool, AveragePool):   # of an average pooling of one basis: the layer keeps both
            out.convs = {x.basis: ("pooled", pool, spec)}
        elif len(x.terms) == 1:   # a convolution of one basis (not of a sum with a skip connection)
            structured = onnx_conv.conv_of_basis(spec, x.A, x.c)
            out.convs = {x.basis: structured} if structured is not None else {}
        else:                   # of a channel concatenation of bases: one convolution per part
            out.convs = onnx_conv.conv_of_concatenation(spec, x.terms, x.c)
        return out

    def batchnorm(self, node, x: Affine, attrs) -> Affine:
        if attrs.get("training_mode", 0):
            self.fail_node(node, "training-mode batch normalization is not supported", UnsupportedOpError)
        scale, bias, mean, var = (self.const(node, node.input[i], name).astype(np.float64)
                                  for i, name in enumerate(("scale", "B", "mean", "var"), start=1))
        eps = float(attrs.get("epsilon", 1e-5))
        k = scale / np.sqrt(var + eps)
        channel = (-1,) + (1,) * (len(x.shape) - 1)
        scaled = self.elementwise(node, x, Const(k.reshape(channel)), "Mul")
        return self.elementwise(node, scaled, Const((bias - mean * k).reshape(channel)), "Add")


#: Handlers ``(ops, node, operands, attrs) -> outputs`` of the ops whose first operand may be any value.
ANY_OPERANDS = {"Identity": AffineOps.passed_through, "Dropout": AffineOps.passed_through, "Cast": AffineOps.cast,
                "Neg": AffineOps.negated, "Add": AffineOps.arithmetic, "Sub": AffineOps.arithmetic,
                "Mul": AffineOps.arithmetic, "Div": AffineOps.arithmetic, "Sum": AffineOps.summed,
                "Concat": AffineOps.concatenated}
#: Handlers ``(ops, node, affine value, attrs) -> affine value`` of the ops of one affine operand.
AFFINE_OPERAND = {**onnx_reshape.REARRANGING, "Conv": AffineOps.conv, "Pad": AffineOps.padded,
                  "AveragePool": AffineOps.average_pooled, "GlobalAveragePool": AffineOps.average_pooled,
                  "Gemm": AffineOps.gemm, "MatMul": AffineOps.matmul, "BatchNormalization": AffineOps.batchnorm}
