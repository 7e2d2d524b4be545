"""The IR layer that ends a traced affine value ``g = A h + c`` (:mod:`exactcomp.io.onnx_import`): a
convolution or an average-pooled layer when the value still has that structure
(:mod:`exactcomp.io.onnx_conv`, :mod:`exactcomp.io.onnx_pool`), else a dense layer; the same for the op of a
skip connection."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from exactcomp.errors import UnsupportedOpError
from exactcomp.io.onnx_conv import MAX_DENSE_ENTRIES, as_conv
from exactcomp.io.onnx_pool import as_pooled
from exactcomp.ir.conv import Conv
from exactcomp.ir.network import Dense


def layer_from_affine(tracer, A, c: np.ndarray, spec: Conv | None, layer_id: int, what: str):
    """The IR layer for ``g = A h + c``: a :class:`Conv` if ``spec`` still describes it, else :class:`Dense`."""
    if isinstance(spec, Conv):
        conv = as_conv(A, c, spec, layer_id)
        if conv is not None:
            return conv
    if isinstance(spec, tuple) and spec[0] == "pooled":
        pooled = as_pooled(A, c, spec, layer_id)
        if pooled is not None:
            return pooled
    if A.shape[0] * A.shape[1] > MAX_DENSE_ENTRIES:
        tracer.fail(f"{what} is affine but not a plain convolution, and as a dense matrix it would have "
                    f"{A.shape[0]} x {A.shape[1]} entries", UnsupportedOpError)
    W = A.toarray() if sp.issparse(A) else np.asarray(A)
    return Dense(W, np.asarray(c, dtype=np.float64), layer_id, np.arange(len(c)))


def skip_op_from_affine(tracer, A, spec: Conv | None, what: str):
    """The op of a skip connection ``A h`` (no bias): a convolution if ``spec`` still describes it, an
    :class:`~exactcomp.ir.skip.Embed` if ``A`` is a 0/1 selection (an identity shortcut), else dense."""
    from exactcomp.ir.skip import Embed

    if isinstance(spec, Conv):
        conv = as_conv(A, np.zeros(A.shape[0]), spec, 0)
        if conv is not None:
            return conv
    coo = sp.coo_array(A)
    coo.sum_duplicates()
    ones = coo.data == 1.0
    if ones.all() and np.unique(coo.row).size == coo.nnz and np.unique(coo.col).size == coo.nnz:
        return Embed(A.shape[1], A.shape[0], coo.col, coo.row)
    return layer_from_affine(tracer, A, np.zeros(A.shape[0]), None, 0, what)
