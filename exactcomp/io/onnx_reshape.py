"""The ONNX ops that only rearrange the entries of an affine value (Flatten, Reshape, Squeeze, Unsqueeze,
Transpose, Slice, Gather): each handler ``(ops, node, x, attrs) -> Affine`` maps ``x = Σ_j A_j h_j + c`` to
``Σ_j A_j[idx] h_j + c[idx]`` for an index array ``idx`` of the output's shape (a reshape keeps the order). ``ops``
is the importer's tracer (:class:`exactcomp.io.onnx_ops.AffineOps`): its ``const`` and ``fail_node``."""

from __future__ import annotations

import numpy as np

from exactcomp.errors import UnsupportedOpError
from exactcomp.io.onnx_values import Affine
from exactcomp.ir.pool import AveragePool


def flatten(ops, node, x: Affine, attrs: dict) -> Affine:
    if attrs.get("axis", 1) not in (1, -len(x.shape) - 1):
        ops.fail_node(node, f"Flatten with axis={attrs['axis']} mixes the batch axis", UnsupportedOpError)
    return x.reshaped((int(np.prod(x.shape)),))


def reshape(ops, node, x: Affine, attrs: dict) -> Affine:
    return x.reshaped(reshape_target(ops, node, x, attrs))


def squeeze(ops, node, x: Affine, attrs: dict) -> Affine:
    """Axes refer to the input; none given means every size-1 feature axis."""
    full = (1, *x.shape)
    chosen = axes(ops, node, attrs, len(full)) or [i for i, d in enumerate(full) if d == 1 and i > 0]
    return x.reshaped(tuple(d for i, d in enumerate(full) if i not in chosen)[1:])


def unsqueeze(ops, node, x: Affine, attrs: dict) -> Affine:
    """Axes refer to the output, whose rank grows by len(axes)."""
    n_axes = len(ops.const(node, node.input[1], "axes").ravel()) if len(node.input) > 1 else len(attrs["axes"])
    shape = [1, *x.shape]
    for a in sorted(axes(ops, node, attrs, len(shape) + n_axes)):
        shape.insert(a, 1)
    return x.reshaped(tuple(shape[1:]))


def transpose(ops, node, x: Affine, attrs: dict) -> Affine:
    perm = list(attrs.get("perm", range(len(x.shape), -1, -1)))
    if perm[0] != 0:
        ops.fail_node(node, "moves the batch axis", UnsupportedOpError)
    idx = np.arange(x.c.size).reshape(x.shape).transpose([p - 1 for p in perm[1:]])
    return x.map(lambda A: A[idx.ravel()], x.c[idx.ravel()], idx.shape)


def sliced(ops, node, x: Affine, attrs: dict) -> Affine:
    idx = slice_index(ops, node, x, attrs)
    return x.map(lambda A: A[idx.ravel()], x.c[idx.ravel()], idx.shape)


def gather(ops, node, x: Affine, attrs: dict) -> Affine:
    """A selection of entries along a feature axis (constant indices)."""
    axis = attrs.get("axis", 0)
    axis = axis + len(x.shape) + 1 if axis < 0 else axis
    if axis == 0:
        ops.fail_node(node, "gathers along the batch axis", UnsupportedOpError)
    indices = ops.const(node, node.input[1], "indices").astype(np.int64)
    dim = x.shape[axis - 1]
    if np.any((indices < -dim) | (indices >= dim)):
        ops.fail_node(node, f"indices outside [-{dim}, {dim - 1}]")
    idx = np.take(np.arange(x.c.size).reshape(x.shape), indices, axis=axis - 1)
    out = x.map(lambda A: A[idx.ravel()], x.c[idx.ravel()], idx.shape)
    if len(x.shape) == 1 and len(x.terms) == 1 and isinstance(x.convs.get(x.basis), AveragePool):
        out.convs = {x.basis: ("gathered", x.convs[x.basis], idx.ravel())}   # pooled entries a dense layer reads
    return out


def axes(ops, node, attrs: dict, rank: int) -> list[int]:
    """The ``axes`` of Squeeze/Unsqueeze (input 1 from opset 13, else an attribute), made
    non-negative for a tensor of ``rank`` (batch axis included); the batch axis is refused."""
    if len(node.input) > 1 and node.input[1]:
        axes = ops.const(node, node.input[1], "axes").astype(int).ravel().tolist()
    else:
        axes = list(attrs.get("axes", []))
    axes = [a + rank if a < 0 else a for a in axes]
    if 0 in axes:
        ops.fail_node(node, "operates on the batch axis", UnsupportedOpError)
    return axes


def slice_index(ops, node, x: Affine, attrs: dict) -> np.ndarray:
    """The entries a ``Slice`` with constant starts/ends/axes/steps keeps, as an index array shaped like its output."""
    if len(node.input) > 1:
        starts, ends = (ops.const(node, node.input[i], n).astype(np.int64).ravel() for i, n in ((1, "starts"), (2, "ends")))
        axes = ops.const(node, node.input[3], "axes").astype(np.int64).ravel() if len(node.input) > 3 and node.input[3] \
            else np.arange(starts.size)
        steps = ops.const(node, node.input[4], "steps").astype(np.int64).ravel() if len(node.input) > 4 and node.input[4] \
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
            ops.fail_node(node, "slices the batch axis", UnsupportedOpError)
        if step == 0:
            ops.fail_node(node, "has a zero step")
        slices[axis - 1] = slice(int(start), int(end), int(step))
    idx = np.arange(x.c.size).reshape(x.shape)[tuple(slices)]
    if idx.size == 0:
        ops.fail_node(node, "selects no entries")
    return idx


def reshape_target(ops, node, x: Affine, attrs: dict) -> tuple[int, ...]:
    """A Reshape's per-sample target shape (0 copies the input's axis unless ``allowzero``; one -1 is inferred)."""
    target = ops.const(node, node.input[1], "shape").astype(np.int64).tolist()
    if not target:
        ops.fail_node(node, "reshapes away the batch axis", UnsupportedOpError)
    allowzero = attrs.get("allowzero", 0)
    rest = [x.shape[i] if (d == 0 and not allowzero and i < len(x.shape)) else d for i, d in enumerate(target[1:])]
    size = int(np.prod(x.shape))
    if rest.count(-1) > 1:
        ops.fail_node(node, f"ambiguous target shape {target}", UnsupportedOpError)
    if -1 in rest:
        known = int(np.prod([d for d in rest if d != -1]))
        if known == 0 or size % known:
            ops.fail_node(node, f"cannot reshape per-sample shape {list(x.shape)} to {target}", UnsupportedOpError)
        rest[rest.index(-1)] = size // known
    if int(np.prod(rest)) != size:
        ops.fail_node(node, f"target {target} changes the batch axis (per-sample shape {list(x.shape)})", UnsupportedOpError)
    return tuple(int(d) for d in rest)


REARRANGING = {"Flatten": flatten, "Reshape": reshape, "Squeeze": squeeze, "Unsqueeze": unsqueeze,
               "Transpose": transpose, "Slice": sliced, "Gather": gather}
