"""The head of an imported model (the ops after the piecewise-linear trunk, kept byte for byte), the
output descriptions, and the count of parameters the original trunk stores."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from exactcomp.errors import UnsupportedOpError
from exactcomp.ir.network import Head, TensorInfo
from exactcomp.io.onnx_values import FLOAT_TYPES, Affine, Const, dims_of

def output_info(vi: onnx.ValueInfoProto) -> TensorInfo:
    tt = vi.type.tensor_type
    dims = dims_of(vi, "?")
    np_type = helper.tensor_dtype_to_np_dtype(tt.elem_type) if tt.elem_type != onnx.TensorProto.STRING else None
    dtype = "string" if np_type is None else np.dtype(np_type).name
    return TensorInfo(vi.name, tuple(dims[1:]), dtype, dims[0] if dims else "N")


def build_head(tracer, trunk_name: str) -> Head | None:
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
            elif isinstance(value, Const) and not value.batch_dependent:
                extra_inits.append(numpy_helper.from_array(value.value, name))
            elif name in produced and produced[name] not in seen and not isinstance(value, Affine):
                seen.add(produced[name])
                stack.append(produced[name])
            elif isinstance(value, Affine):
                tracer.fail(f"the head (node '{node.name or node.output[0]}') reads trunk tensor '{name}' besides the "
                            f"trunk output '{trunk_name}'", UnsupportedOpError)
    nodes = [graph.node[i] for i in sorted(seen)]
    out_infos = [o for o in graph.output]
    head_graph = helper.make_graph(nodes, "exactcomp_head", [], out_infos,
                                   initializer=list(needed_inits.values()) + extra_inits)
    return Head(head_graph.SerializeToString(), trunk_name)


def stored_trunk_parameters(model: onnx.ModelProto, head: Head | None) -> int:
    """Float entries the original model stores outside its head (initializers and ``Constant`` nodes):
    what a compressed trunk should not exceed."""
    def floats(tensors) -> int:
        return sum(int(np.prod(t.dims)) for t in tensors if t.data_type in FLOAT_TYPES)

    constants = [a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"]
    total = floats(model.graph.initializer) + floats(constants)
    if head is not None:
        graph = onnx.GraphProto()
        graph.ParseFromString(head.graph)
        total -= floats(graph.initializer) + floats(a.t for n in graph.node if n.op_type == "Constant"
                                                    for a in n.attribute if a.name == "value")
    return max(total, 0)
