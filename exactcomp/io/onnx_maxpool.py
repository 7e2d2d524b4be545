"""Importing ``MaxPool`` (:mod:`exactcomp.ir.maxpool`): a max pooling of a ReLU output becomes a layer of its own.

The tracer of :mod:`exactcomp.io.onnx_import` meets ``MaxPool`` in two places:

* on the output of a ``Relu`` (``Relu → MaxPool``): the pooling is a new layer (:class:`PoolMarker` in the
  tracer's layer list; its output is a new basis, read by whatever follows like a ReLU output);
* on a pre-activation (``Conv → MaxPool → Relu``, as Keras and many tutorials write it): since ReLU is
  monotone, ``relu(maxpool(g)) = maxpool(relu(g))``, so the value waits (:class:`PendingMaxPool`) for its
  ``Relu``, which then ends the layer of ``g`` before the pooling. Anything else reading it is an error.

A ``Relu`` of a pooled ReLU output changes nothing (the pooled values are ``>= 0``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from exactcomp.errors import UnsupportedOpError
from exactcomp.io.onnx_values import Affine, sparse_identity


@dataclass
class PoolMarker:
    """A max pooling in the tracer's layer list (it reads the previous basis)."""

    pool: object   # exactcomp.ir.maxpool.MaxPool
    name: str


@dataclass
class PendingMaxPool:
    """``MaxPool`` of a pre-activation ``x``: valid only under the ``Relu`` that must follow."""

    node: object
    x: Affine
    pool: object


def max_pool_spec(tracer, node, shape: tuple, attrs: dict):
    """The :class:`~exactcomp.ir.maxpool.MaxPool` of a ``MaxPool`` node on a per-sample ``(C, H, W)`` input."""
    from exactcomp.ir.maxpool import MaxPool

    if len(shape) != 3:
        tracer.fail_node(node, f"only 2-D max pooling is supported (per-sample input {list(shape)})", UnsupportedOpError)
    if len(node.output) > 1 and node.output[1]:
        tracer.fail_node(node, "the Indices output of MaxPool is not supported", UnsupportedOpError)
    kernel = tuple(attrs.get("kernel_shape", ()))
    stride = tuple(attrs.get("strides", (1, 1)))
    pads = tuple(attrs.get("pads", (0, 0, 0, 0)))
    dilation = tuple(attrs.get("dilations", (1, 1)))
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if (len(kernel) != 2 or len(stride) != 2 or len(pads) != 4 or len(dilation) != 2
            or min(kernel + stride + dilation) < 1 or min(pads) < 0):
        tracer.fail_node(node, f"max-pooling window {list(kernel)}, strides {list(stride)}, pads {list(pads)} or "
                               f"dilations {list(dilation)} invalid", UnsupportedOpError)
    if auto_pad not in ("NOTSET", "VALID", "") or attrs.get("ceil_mode", 0):
        tracer.fail_node(node, "auto_pad SAME_* and ceil_mode=1 are not supported for max pooling", UnsupportedOpError)
    try:
        return MaxPool(shape, kernel, stride, pads, dilation)
    except ValueError as exc:
        tracer.fail_node(node, str(exc), UnsupportedOpError)


def is_basis_output(tracer, x) -> bool:
    """``x`` is the newest ReLU (or pooling) output itself: one identity term, no offset."""
    if not isinstance(x, Affine) or len(x.terms) != 1 or x.basis != tracer.basis or tracer.basis == 0 or np.any(x.c):
        return False
    A = x.A
    n = x.c.size
    return A.shape == (n, n) and (A != sparse_identity(n)).nnz == 0 if hasattr(A, "nnz") else np.array_equal(A, np.eye(n))


def max_pool(tracer, node, x, attrs: dict):
    """The value of ``MaxPool(x)`` (see module doc)."""
    if not isinstance(x, Affine):
        tracer.fail_node(node, "max pooling of a constant or of the model's head is not supported", UnsupportedOpError)
    pool = max_pool_spec(tracer, node, tuple(x.shape), attrs)
    if is_basis_output(tracer, x):
        return pooled_basis(tracer, node, x, pool)
    return PendingMaxPool(node, x, pool)


def pooled_basis(tracer, node, x: Affine, pool) -> Affine:
    """Start the pooling layer on the newest basis ``x``; its output is the next basis."""
    tracer.layers.append(PoolMarker(pool, node.name or node.output[0]))
    tracer.relu_nodes.append(node.name or node.output[0])
    tracer.pooled_bases.add(tracer.basis + 1)
    tracer.basis += 1
    tracer.basis_sizes.append(pool.width)
    return Affine({tracer.basis: sparse_identity(pool.width)}, np.zeros(pool.width), pool.out_shape, x.dtype)


def relu_of_pending(tracer, relu_node, pending: PendingMaxPool) -> Affine:
    """``Relu(MaxPool(g)) = MaxPool(Relu(g))``: end the layer of ``g``, then pool its output."""
    h = tracer.relu(relu_node, pending.x)
    return pooled_basis(tracer, pending.node, h, pending.pool)
