""":class:`~exactcomp.network.Network` → ONNX.

The trunk is written as ``Flatten → [Cast] → (Gemm → Relu)* → Gemm → [Reshape]`` with weights in
the original compute dtype; the head sub-graph is re-attached unchanged. Input and output names,
element types, per-sample shapes and the batch axis are those of the imported model. A layer whose
weights are all zero is written as a broadcast of its bias (``Expand``), so a network whose output
does not depend on its input stores only that constant.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import ModelError
from .files import write_atomic
from .network import Network, TensorInfo

_PREFIX = "exactcomp"


def _elem_type(dtype: str) -> int:
    if dtype == "string":
        return onnx.TensorProto.STRING
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def _value_info(info: TensorInfo) -> onnx.ValueInfoProto:
    dims = [info.batch, *info.shape]
    dims = [None if d == "?" else d for d in dims]
    return helper.make_tensor_value_info(info.name, _elem_type(info.dtype), dims)


class _GraphBuilder:
    def __init__(self, dtype: str):
        self.dtype = np.dtype(dtype)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, value, dtype=None) -> str:
        name = f"{_PREFIX}/{name}"
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype or self.dtype), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output


def _trunk_nodes(net: Network, b: _GraphBuilder) -> None:
    h = b.node("Flatten", [net.input.name], f"{_PREFIX}/flatten", axis=1)
    if net.input.dtype != net.compute_dtype:
        h = b.node("Cast", [h], f"{_PREFIX}/cast", to=_elem_type(net.compute_dtype))
    last = len(net.layers) - 1
    out_shape = net.trunk_output.shape
    needs_reshape = len(out_shape) != 1
    for i, layer in enumerate(net.layers):
        final = i == last
        name = net.trunk_output.name if final and not needs_reshape else f"{_PREFIX}/layer{i + 1}/gemm"
        bias = b.const(f"layer{i + 1}/bias", layer.b)
        if layer.is_constant:
            batch = b.node("Shape", [h], f"{_PREFIX}/layer{i + 1}/shape", start=0, end=1)
            shape = b.node("Concat", [batch, b.const(f"layer{i + 1}/width", [layer.width], np.int64)],
                           f"{_PREFIX}/layer{i + 1}/target", axis=0)
            h = b.node("Expand", [bias, shape], name)
        else:
            h = b.node("Gemm", [h, b.const(f"layer{i + 1}/weight", layer.W), bias], name, transB=1)
        if not final:
            h = b.node("Relu", [h], f"{_PREFIX}/layer{i + 1}/relu")
    if needs_reshape:
        target = b.const("output_shape", [-1, *out_shape], np.int64)
        b.node("Reshape", [h, target], net.trunk_output.name)


def to_onnx(net: Network) -> onnx.ModelProto:
    """Build the ONNX model of ``net`` (trunk plus re-attached head) and check it."""
    builder = _GraphBuilder(net.compute_dtype)
    _trunk_nodes(net, builder)
    nodes, inits = builder.nodes, builder.initializers
    outputs = [_value_info(o) for o in net.outputs]
    if net.head is not None:
        head = onnx.GraphProto()
        head.ParseFromString(net.head.graph)
        nodes = nodes + list(head.node)
        inits = inits + list(head.initializer)
        outputs = list(head.output)
    graph = helper.make_graph(nodes, "exactcomp_compressed", [_value_info(net.input)], outputs, initializer=inits)
    opsets = [helper.make_opsetid(domain, version) for domain, version in net.opsets]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="exactcomp")
    model.ir_version = int(net.metadata.get("ir_version", model.ir_version))
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"exported model fails onnx.checker: {str(exc).strip().splitlines()[0]}") from None
    return model


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
