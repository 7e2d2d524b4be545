""":class:`~exactcomp.ir.network.Network` → ONNX.

The trunk is written as ``Flatten → [Gather] → [Cast] → (Layer → Relu)* → Layer → [Reshape]`` with
``Layer`` a ``Gemm`` for a dense layer and ``Reshape`` to ``(C, H, W)`` (unless the previous convolution's
output already has that shape) ``→ Conv`` for a convolution (``Flatten`` after it when a dense layer follows),
weights in the original compute dtype (``Gather`` on axis 1, its indices an int64 initializer,
when the network reads only ``input_indices``); the head sub-graph is re-attached unchanged. Input
and output names, element types, per-sample shapes and the batch axis (symbolic or fixed) are those
of the imported model. A layer whose weights are all zero is written as a broadcast of its bias to
``(n, width)``, ``n = Gather(Shape(h), [0])`` the batch size (``Expand``; below opset 8, which
lacks ``Expand``, ``Tile`` of the ``(1, width)`` bias), so a network whose output does not depend
on its input stores only that constant.

Versions: the model keeps its opsets and IR version. Every op written exists with these semantics
from opset 7 on (Gemm-7 broadcasts its bias); older opsets are refused. Below IR version 4 every
initializer must also be a graph input, so there the initializers are listed as inputs too.
:func:`check_exportable` writes an imported network, its constant form and a form reading only
some inputs, so that a model whose compressed form could not be written fails before the analysis.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

import exactcomp.ops  # noqa: F401  (the op units register their readers and writers)
from exactcomp.errors import ModelError
from exactcomp.io.files import write_atomic
from exactcomp.ir.conv import Conv
from exactcomp.ir.network import Dense, Network, TensorInfo
from exactcomp.ir.lowering import raise_max_pools
from exactcomp.ir.maxpool import MaxPoolLayer
from exactcomp.ir.pool import Pooled
from exactcomp.ir.select import Selected
from exactcomp.ir.skip import Shift
from exactcomp.io.onnx_nodes import (NAME_PREFIX, GraphBuilder, conv_node, flat_node, max_pool_node, pooled_nodes,
                                     selected_nodes, shift_nodes, skip_node)

#: Oldest default-domain opset the exported trunk is valid for (Gemm-7 broadcasts its bias).
MIN_OPSET = 7


def _elem_type(dtype: str) -> int:
    if dtype == "string":
        return onnx.TensorProto.STRING
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def _value_info(info: TensorInfo) -> onnx.ValueInfoProto:
    dims = [info.batch, *info.shape]
    dims = [None if d == "?" else d for d in dims]
    return helper.make_tensor_value_info(info.name, _elem_type(info.dtype), dims)


def _opset(net: Network) -> int:
    """The model's default-domain (``ai.onnx``) opset version."""
    return dict(net.opsets).get("", dict(net.opsets).get("ai.onnx", onnx.defs.onnx_opset_version()))


def _broadcast_bias(layer, h: str, b: GraphBuilder, i: int, name: str, opset: int) -> str:
    """``(n, width)`` copies of the bias of the constant ``layer``, ``n`` the batch size of ``h``."""
    batch = b.node("Gather", [b.node("Shape", [h], f"{NAME_PREFIX}/layer{i}/shape"), b.const("zero_index", [0], np.int64)],
                   f"{NAME_PREFIX}/layer{i}/batch", axis=0)
    if opset >= 8:
        target = b.node("Concat", [batch, b.const(f"layer{i}/width", [layer.width], np.int64)],
                        f"{NAME_PREFIX}/layer{i}/target", axis=0)
        return b.node("Expand", [b.const(f"layer{i}/bias", layer.b), target], name)
    repeats = b.node("Concat", [batch, b.const("one", [1], np.int64)], f"{NAME_PREFIX}/layer{i}/repeats", axis=0)
    return b.node("Tile", [b.const(f"layer{i}/bias", layer.b[None, :]), repeats], name)


def _add_skips(net: Network, i: int, h: str, image, posts: dict, b: GraphBuilder) -> str:
    """``h`` (layer ``i``'s affine output) plus every skip connection into layer ``i``, in ``h``'s layout."""
    for n, skip in enumerate(net.skips_into(i)):
        tag = f"layer{i + 1}/skip{n}"
        term, term_image = skip_node(skip.op, posts[skip.source], b, tag)
        if image is None:
            term = flat_node(term, term_image, b, tag)
        elif term_image is None:
            term = b.node("Reshape", [term, b.const(f"{tag}/shape", [-1, *image], np.int64)], f"{NAME_PREFIX}/{tag}/image")
        h = b.node("Add", [h, term], f"{NAME_PREFIX}/{tag}/add")
    return h


def _trunk_nodes(net: Network, b: GraphBuilder) -> None:
    opset = _opset(net)
    h = b.node("Flatten", [net.input.name], f"{NAME_PREFIX}/flatten", axis=1)
    if net.input.dtype != net.compute_dtype:
        h = b.node("Cast", [h], f"{NAME_PREFIX}/cast", to=_elem_type(net.compute_dtype))
    posts = {-1: (h, None)}   # post-activation tensors (name, image shape or None) that skips read
    if net.input_indices is not None and not net.layers[0].is_constant:
        h = b.node("Gather", [h, b.const("input_indices", net.input_indices, np.int64)], f"{NAME_PREFIX}/select", axis=1)
    last = len(net.layers) - 1
    out_shape = net.trunk_output.shape
    image = None  # the (C, H, W) of h when it is a 4-D convolution output, else None (h is flat)
    for i, layer in enumerate(net.layers):
        final = i == last
        if isinstance(layer, MaxPoolLayer):   # reads a ReLU output; its own ReLU is the identity
            h, image = max_pool_node(layer.pool, h, image, b, f"layer{i + 1}"), tuple(layer.pool.out_shape)
            posts[i] = (h, image)
            continue
        convolution = isinstance(layer, Conv) and not layer.is_constant
        shift = isinstance(layer, Shift)
        selected = isinstance(layer, Selected) and not layer.is_constant
        pooled = isinstance(layer, Pooled) and not layer.is_constant
        image_out = (selected or pooled) and isinstance(layer.inner, Conv)   # a convolution inside: 4-D output
        keeps_image = (convolution and tuple(layer.in_shape) == image and not layer.channels_last) or (
            isinstance(layer, Pooled) and tuple(layer.pool.in_shape) == image) or shift
        if image is not None and not keeps_image and not selected:
            h, image = b.node("Flatten", [h], f"{NAME_PREFIX}/layer{i}/flatten", axis=1), None
        skips = net.skips_into(i)
        direct = final and not skips and not image_out and (
            tuple(out_shape) == (layer.out_shape if convolution else (layer.width,)))
        name = net.trunk_output.name if direct else f"{NAME_PREFIX}/layer{i + 1}/{'conv' if convolution else 'gemm'}"
        if layer.is_constant:
            h = _broadcast_bias(layer, h, b, i + 1, name, opset)
        elif convolution:
            h, image = conv_node(layer, h, image is not None, b, f"layer{i + 1}", name), tuple(layer.out_shape)
        elif pooled:
            h, image = pooled_nodes(layer, h, image, b, f"layer{i + 1}", name)
        elif shift:
            h, image = shift_nodes(layer, h, image, b, f"layer{i + 1}", name)
        elif selected:
            h, image = selected_nodes(layer, h, image, b, f"layer{i + 1}", name)
        else:
            h = b.node("Gemm", [h, b.const(f"layer{i + 1}/weight", layer.W), b.const(f"layer{i + 1}/bias", layer.b)],
                       name, transB=1)
        spatial = convolution or ((shift or selected or pooled) and image is not None)
        h = _add_skips(net, i, h, image if spatial else None, posts, b) if skips else h
        if not final:
            h = b.node("Relu", [h], f"{NAME_PREFIX}/layer{i + 1}/relu")
            posts[i] = (h, image if spatial else None)
        elif not direct:
            target = b.const("output_shape", [-1, *out_shape], np.int64)
            b.node("Reshape", [h, target], net.trunk_output.name)


def to_onnx(net: Network) -> onnx.ModelProto:
    """Build the ONNX model of ``net`` (trunk plus re-attached head) and check it."""
    if _opset(net) < MIN_OPSET:
        raise ModelError(f"opset {_opset(net)} is older than {MIN_OPSET}, the oldest exactcomp can export "
                         "(and onnxruntime can run)")
    net = raise_max_pools(net)
    builder = GraphBuilder(net.compute_dtype)
    _trunk_nodes(net, builder)
    nodes, inits = builder.nodes, builder.initializers
    outputs = [_value_info(o) for o in net.outputs]
    if net.head is not None:
        head = onnx.GraphProto()
        head.ParseFromString(net.head.graph)
        nodes = nodes + list(head.node)
        inits = inits + list(head.initializer)
        outputs = list(head.output)
    opsets = [helper.make_opsetid(domain, version) for domain, version in net.opsets]
    # the original's IR version; for a network built in Python, the oldest that its opsets allow (the newest
    # onnx writes may be newer than the installed onnxruntime reads)
    ir_version = int(net.metadata.get("ir_version", helper.find_min_ir_version_for(opsets, ignore_unknown=True)))
    inputs = [_value_info(net.input)]
    if ir_version < 4:  # IR 3: every initializer is also a graph input
        inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits]
    graph = helper.make_graph(nodes, "exactcomp_compressed", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=opsets, producer_name="exactcomp")
    model.ir_version = ir_version
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"exported model fails onnx.checker: {str(exc).strip().splitlines()[0]}") from None
    return model


def check_exportable(net: Network) -> None:
    """Raise :class:`ModelError` (one line) unless ``net`` can be written as a valid model as it is,
    as the constant network compression may turn it into, and reading only some of its inputs
    (:func:`to_onnx` on each).

    Meant to run right after import, so that a model whose compressed form could not be written
    fails before the analysis rather than after it.
    """
    last = net.layers[-1]
    constant = net.with_layers([Dense(np.zeros((last.width, net.layers[0].fan_in)), last.b, last.layer_id,
                                      last.neuron_ids)], skips=())
    variants = [("the network", net), ("a constant network", constant)]
    full = net.with_full_input()
    if full.input_size > 1 and isinstance(full.layers[0], Dense):  # the first input fixed, the others read through a Gather
        first = full.layers[0]
        selected = Dense(first.W[:, 1:], first.b, first.layer_id, first.neuron_ids)
        variants.append(("an input selection", replace(full, layers=(selected, *full.layers[1:]),
                                                         input_indices=np.arange(1, full.input_size))))
    source = net.metadata.get("source", "model")
    for what, variant in variants:
        try:
            to_onnx(variant)
        except ModelError as exc:
            raise ModelError(f"{source}: cannot write {what} back as ONNX: {exc}") from None


def save_onnx(net: Network, path: str | Path) -> Path:
    """Write ``net`` to ``path`` atomically: the file appears complete or not at all."""
    path = Path(path)
    model = to_onnx(net)
    return write_model_atomic(model, path)


def write_model_atomic(model: onnx.ModelProto, path: str | Path) -> Path:
    path = Path(path)
    if not path.parent.exists():
        raise ModelError(f"{path}: directory {path.parent} does not exist")
    return write_atomic(path, lambda fh: fh.write(model.SerializeToString()))
