"""The ONNX nodes of each IR op, for :mod:`exactcomp.io.onnx_export` (which writes the trunk from them).

Each builder takes the tensor ``h`` it reads (flat ``(n, features)``, or an image ``(n, C, H, W)`` when
``image`` gives its shape) and returns the name of its output (and, where it varies, the output's image
shape or None): ``Conv`` for a convolution, ``AveragePool → Flatten → Gemm`` for a pooled dense layer,
``MaxPool``, ``Add`` of a shortcut and a bias, ``Gather`` (axis 1, int64 indices) then the inner op for a
selection, and the skip ops.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from exactcomp.ir.conv import Conv
from exactcomp.ir.pool import Pooled
from exactcomp.ir.select import Selected
from exactcomp.ir.skip import Embed

NAME_PREFIX = "exactcomp"


class GraphBuilder:
    def __init__(self, dtype: str):
        self.dtype = np.dtype(dtype)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, value, dtype=None) -> str:
        name = f"{NAME_PREFIX}/{name}"
        if any(t.name == name for t in self.initializers):  # shared constants (e.g. index 0) are stored once
            return name
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype or self.dtype), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output


#: Convolution class -> the function writing its nodes, for op units whose ONNX form differs from the 2-D
#: ``Conv`` (:mod:`exactcomp.ops.conv1d`): ``(layer, h, image, builder, tag, name) -> output name``, same contract
#: as :func:`conv_node`.
CONV_WRITERS: dict = {}


def conv_node(layer, h: str, image: bool, b: GraphBuilder, tag: str, name: str) -> str:
    """``Conv`` of ``layer`` on ``h`` (flat ``(n, C·H·W)`` unless ``image``), output ``(n, C', H', W')``."""
    writer = CONV_WRITERS.get(type(layer))
    if writer is not None:
        return writer(layer, h, image, b, tag, name)
    if not image and layer.channels_last:
        c, height, width = layer.in_shape
        h = b.node("Reshape", [h, b.const(f"{tag}/input_shape", [-1, height, width, c], np.int64)],
                   f"{NAME_PREFIX}/{tag}/image_hwc")
        h = b.node("Transpose", [h], f"{NAME_PREFIX}/{tag}/image", perm=[0, 3, 1, 2])
    elif not image:
        h = b.node("Reshape", [h, b.const(f"{tag}/input_shape", [-1, *layer.in_shape], np.int64)],
                   f"{NAME_PREFIX}/{tag}/image")
    _, _, kh, kw = layer.kernel.shape
    return b.node("Conv", [h, b.const(f"{tag}/kernel", layer.kernel), b.const(f"{tag}/bias", layer.bias)], name,
                  kernel_shape=[kh, kw], strides=list(layer.stride), pads=list(layer.pads),
                  dilations=list(layer.dilation), group=layer.groups)


def pooled_nodes(layer, h: str, image, b: GraphBuilder, tag: str, name: str):
    """``AveragePool`` (on the image, reshaped from flat if needed) then ``Flatten → Gemm`` of a pooled dense layer,
    or the ``Conv`` of a pooled convolution. Returns ``(name, image shape or None)``."""
    pool = layer.pool
    if image is None:
        h = b.node("Reshape", [h, b.const(f"{tag}/input_shape", [-1, *pool.in_shape], np.int64)], f"{NAME_PREFIX}/{tag}/image")
    h = b.node("AveragePool", [h], f"{NAME_PREFIX}/{tag}/pool", kernel_shape=list(pool.kernel), strides=list(pool.stride),
               pads=list(pool.pads), count_include_pad=int(pool.count_include_pad))
    inner = layer.inner
    if isinstance(inner, Conv):
        return conv_node(inner, h, True, b, tag, name), tuple(inner.out_shape)
    h = b.node("Flatten", [h], f"{NAME_PREFIX}/{tag}/pooled", axis=1)
    if isinstance(inner, Selected):
        h = b.node("Gather", [h, b.const(f"{tag}/select_index", inner.index, np.int64)], f"{NAME_PREFIX}/{tag}/select",
                   axis=1)
        inner = inner.inner
    return b.node("Gemm", [h, b.const(f"{tag}/weight", inner.W), b.const(f"{tag}/bias", inner.b)], name, transB=1), None


def max_pool_node(pool, h: str, image, b: GraphBuilder, tag: str) -> str:
    """``MaxPool`` on the image ``h`` (reshaped from flat if needed)."""
    if image != tuple(pool.in_shape):
        h = b.node("Reshape", [flat_node(h, image, b, tag), b.const(f"{tag}/input_shape", [-1, *pool.in_shape], np.int64)],
                   f"{NAME_PREFIX}/{tag}/image")
    extra = {"dilations": list(pool.dilation)} if pool.dilation != (1, 1) else {}
    return b.node("MaxPool", [h], f"{NAME_PREFIX}/{tag}/maxpool", kernel_shape=list(pool.kernel), strides=list(pool.stride),
                  pads=list(pool.pads), **extra)


def selected_nodes(layer, h: str, image, b: GraphBuilder, tag: str, name: str):
    """A selection then an op (:class:`~exactcomp.ir.select.Selected`): ``Gather`` on the flat input, then the
    inner op's nodes (a convolution reshapes the gathered entries to its input image). Returns ``(name, image)``."""
    flat = b.node("Gather", [flat_node(h, image, b, f"{tag}/select"), b.const(f"{tag}/select_index", layer.index, np.int64)],
                  f"{NAME_PREFIX}/{tag}/select", axis=1)
    inner = layer.inner
    if isinstance(inner, Conv):
        return conv_node(inner, flat, False, b, tag, name), tuple(inner.out_shape)
    if isinstance(inner, Pooled):
        return pooled_nodes(inner, flat, None, b, tag, name)
    return b.node("Gemm", [flat, b.const(f"{tag}/weight", inner.W), b.const(f"{tag}/bias", inner.b)], name,
                  transB=1), None


def shift_nodes(layer, h: str, image, b: GraphBuilder, tag: str, name: str):
    """A shortcut plus a bias (:class:`~exactcomp.ir.skip.Shift`): ``Add`` of the (gathered) input and the bias;
    an identity shortcut keeps the image layout. Returns ``(name, image shape or None)``."""
    term, term_image = skip_node(layer.embed, (h, image), b, f"{tag}/shortcut")
    bias = layer.bias.reshape(1, *term_image) if term_image is not None else layer.bias[None, :]
    return b.node("Add", [term, b.const(f"{tag}/bias", bias)], name), term_image


def flat_node(h: str, image, b: GraphBuilder, tag: str) -> str:
    return b.node("Flatten", [h], f"{NAME_PREFIX}/{tag}/flatten", axis=1) if image is not None else h


def skip_node(op, source: tuple, b: GraphBuilder, tag: str) -> tuple:
    """``op(h_source)`` of a skip connection: ``(name, image shape or None)``. An identity shortcut adds
    no node; a thinned one is a ``Gather`` from the source with one zero column appended."""
    h, image = source
    if isinstance(op, Embed):
        if op.is_identity:
            return h, image
        flat = flat_node(h, image, b, tag)
        zero = b.node("Mul", [b.node("Gather", [flat, b.const("zero_index_1", [0], np.int64)], f"{NAME_PREFIX}/{tag}/first",
                                     axis=1), b.const("zero", 0.0)], f"{NAME_PREFIX}/{tag}/zero")
        padded = b.node("Concat", [flat, zero], f"{NAME_PREFIX}/{tag}/padded", axis=1)
        index = np.full(op.width, op.fan_in, dtype=np.int64)
        index[op.out_index] = op.in_index
        return b.node("Gather", [padded, b.const(f"{tag}/index", index, np.int64)], f"{NAME_PREFIX}/{tag}/embed", axis=1), None
    if isinstance(op, Conv):
        return conv_node(op, h, image is not None, b, tag, f"{NAME_PREFIX}/{tag}/conv"), tuple(op.out_shape)
    if isinstance(op, Selected):
        flat = b.node("Gather", [flat_node(h, image, b, f"{tag}/select"), b.const(f"{tag}/select_index", op.index, np.int64)],
                      f"{NAME_PREFIX}/{tag}/select", axis=1)
        return skip_node(op.inner, (flat, None), b, f"{tag}/selected")
    flat = flat_node(h, image, b, tag)
    return b.node("Gemm", [flat, b.const(f"{tag}/weight", op.W), b.const(f"{tag}/bias", op.b)], f"{NAME_PREFIX}/{tag}/gemm",
                  transB=1), None
