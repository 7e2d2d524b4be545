"""The values the ONNX importer traces (:mod:`exactcomp.io.onnx_import`): constants, affine values over one or
more bases (the model input and the ReLU outputs), and opaque values, with the sparse/dense matrix helpers
their algebra uses."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import scipy.sparse as sp

AFFINE_OPS = (
    "Conv", "AveragePool", "GlobalAveragePool", "Pad", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Neg", "Sum", "Concat", "Flatten", "Reshape", "Squeeze",
    "Unsqueeze", "Transpose", "BatchNormalization", "Identity", "Dropout", "Cast", "Gather", "Slice",
)
#: Ops that, when they appear after a non-linear op, mean that op sat inside the ReLU trunk.
LAYER_OPS = frozenset({"Relu", "Gemm", "MatMul", "Conv", "ConvTranspose", "MatMulInteger", "QLinearMatMul"})
FLOAT_TYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.DOUBLE: "float64", onnx.TensorProto.FLOAT16: "float16"}


@dataclass
class Const:
    value: np.ndarray
    batch_dependent: bool = False


@dataclass
class Affine:
    """``t = Σ_j A_j h_j + c`` for one sample, ``t`` reshaped to ``shape``: ``terms`` maps a basis ``j``
    (0: the model input, ``j``: the output of the ``j``-th ReLU) to ``A_j``. One term is a chain; a
    term on an earlier basis besides the newest one is a skip connection (a residual ``Add``).

    Each ``A_j`` is a dense array or a ``scipy.sparse`` array (a basis starts as the sparse identity).
    ``convs``: per basis, the convolution of that basis its term may still be (:mod:`exactcomp.io.onnx_conv`).
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

    def map(self, f, c: np.ndarray, shape, dtype: str | None = None, keep_convs: bool = False) -> "Affine":
        """The value with every ``A_j`` replaced by ``f(A_j)`` (one linear map applied to all terms)."""
        return Affine({j: f(A) for j, A in self.terms.items()}, c, tuple(shape), dtype or self.dtype,
                       dict(self.convs) if keep_convs else {})

    def reshaped(self, shape) -> "Affine":
        return Affine(dict(self.terms), self.c, tuple(shape), self.dtype, dict(self.convs))


def basis_size(values, basis: int) -> int:
    return next(v.terms[basis].shape[1] for v in values if basis in v.terms)


def sparse_or_dense(A):
    return sp.csr_array(A) if sp.issparse(A) else np.asarray(A)


def sparse_identity(n: int):
    return sp.identity(n, format="csr", dtype=np.float64)


def scale_rows(A, k: np.ndarray):
    """``diag(k) A`` for a dense or sparse ``A``."""
    return sp.csr_array(sp.diags_array(k) @ A) if sp.issparse(A) else A * k[:, None]


def add_operands(A, B):
    """``A + B`` for dense or sparse operands (sparse only when both are)."""
    if sp.issparse(A) and sp.issparse(B):
        return sp.csr_array(A + B)
    return (A.toarray() if sp.issparse(A) else A) + (B.toarray() if sp.issparse(B) else B)


@dataclass
class Opaque:
    origin: onnx.NodeProto


def dims_of(value_info: onnx.ValueInfoProto, unknown: str) -> list:
    """Dimensions of a tensor value info: ints, symbolic names, or ``unknown`` where unset."""
    return [d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else unknown)
            for d in value_info.type.tensor_type.shape.dim]


def node_label(node: onnx.NodeProto, index: int) -> str:
    return f"node '{node.name}'" if node.name else f"node #{index} ({node.op_type} -> {', '.join(node.output)})"
