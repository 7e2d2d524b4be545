"""The affine ONNX ops of the importer's tracer (:mod:`exactcomp.io.onnx_import`): each maps affine values
``Σ_j A_j h_j + c`` to affine values (element-wise arithmetic with constants or between branches,
Gemm/MatMul, Conv, pooling, padding, reshapes, transposes, gathers, concatenation, batch normalisation).
:class:`AffineOps` is mixed into the tracer, which provides ``fail_node``, ``const`` and ``values``."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from exactcomp.io import onnx_conv, onnx_pool
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
            return [x] + [Opaque(node)] * (len(node.output) - 1)
        if op == "Cast":
            to = attrs.get("to")
            if to not in FLOAT_TYPES:
                return None  # a cast to an integer type is not piecewise linear: head boundary
            return [x.map(lambda A: A, x.c, x.shape, FLOAT_TYPES[to], keep_convs=True)]
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
        if not isinstance(x, Affine):
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
        if op == "Slice":
            idx = self.slice_index(node, x, attrs)
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
            out = x.map(lambda A: A[idx.ravel()], x.c[idx.ravel()], idx.shape)
            if len(x.shape) == 1 and len(x.terms) == 1 and isinstance(x.convs.get(x.basis), AveragePool):
                out.convs = {x.basis: ("gathered", x.convs[x.basis], idx.ravel())}   # pooled entries a dense layer reads
            return [out]
        if op == "Conv":
            return [self.conv(node, x, attrs)]
        if op == "Pad":
            S, padded, value, shape = onnx_pool.pad_selection(self, node, tuple(x.shape), attrs)
            return [x.map(lambda A: sparse_or_dense(S @ A), S @ x.c + value * padded, shape)]
        if op in ("AveragePool", "GlobalAveragePool"):
            pool = onnx_pool.average_pool(self, node, tuple(x.shape), attrs)
            P = pool.matrix
            out = x.map(lambda A: sparse_or_dense(P @ A), P @ x.c, pool.out_shape)
            if len(x.terms) == 1 and onnx_pool.pool_of_basis(pool, x.A, x.c) is not None:
                out.convs = {x.basis: pool}   # a dense layer after it keeps the pooling (exactcomp.ir.pool)
            return [out]
        if op == "Gemm":
            return [self.gemm(node, ins, attrs)]
        if op == "MatMul":
            return [self.matmul(node, x)]
        if op == "BatchNormalization":
            return [self.batchnorm(node, x, attrs)]
        raise AssertionError(op)

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

    def slice_index(self, node, x: Affine, attrs: dict) -> np.ndarray:
        """The entries a ``Slice`` with constant starts/ends/axes/steps keeps, as an index array shaped like its output."""
        if len(node.input) > 1:
            starts, ends = (self.const(node, node.input[i], n).astype(np.int64).ravel() for i, n in ((1, "starts"), (2, "ends")))
            axes = self.const(node, node.input[3], "axes").astype(np.int64).ravel() if len(node.input) > 3 and node.input[3] \
                else np.arange(starts.size)
            steps = self.const(node, node.input[4], "steps").astype(np.int64).ravel() if len(node.input) > 4 and node.input[4] \
                else np.ones(starts.size, np.int64)
        else:
            starts, ends = np.asarray(attrs["starts"]), np.asarray(attrs["ends"])
            axes = np.asarray(attrs.get("axes", range(starts.size)))
            steps = np.ones(starts.size, np.int64)
        rank = len(x.shape) + 1
        slices = [slice(None)] * len(x.shape)
        for axis, start, end, step in zip(axes, starts, ends, steps):
            axis = int(axis) + rank if axis < 0 else int(axis)
            if axis == 0:
                if start == 0 and end >= 2 ** 31 - 1 and step == 1:
                    continue   # the whole batch axis
                self.fail_node(node, "slices the batch axis", UnsupportedOpError)
            if step == 0:
                self.fail_node(node, "has a zero step")
            slices[axis - 1] = slice(int(start), int(end), int(step))
        idx = np.arange(x.c.size).reshape(x.shape)[tuple(slices)]
        if idx.size == 0:
            self.fail_node(node, "selects no entries")
        return idx

    def reshape_target(self, node, x: Affine, attrs: dict) -> tuple[int, ...]:
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

    def gemm(self, node, ins, attrs) -> Affine:
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
        return onnx_pool.after_pool(x, M, x.map(lambda A: sparse_or_dense(M @ A), M @ x.c + bias, (n,)))

    def matmul(self, node, x: Affine) -> Affine:
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
