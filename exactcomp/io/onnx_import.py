"""ONNX → :class:`~exactcomp.ir.network.Network`.

The importer interprets the graph symbolically. Every tensor is one of

* a *constant* (initializers, ``Constant`` nodes and anything computed from constants only);
* an *affine* value ``t = A · h + c`` of the current *basis* ``h`` (the flattened model input,
  or the output of the most recent ``Relu``), with its per-sample shape;
* an *opaque* value: something non-piecewise-linear was applied (softmax, argmax, ...).

Affine operations (Conv, Gemm, MatMul, Add/Sub/Mul/Div with constants, Flatten, Reshape, BatchNorm,
Identity, Dropout, Gather of constant indices along a feature axis, ...) update ``A`` and ``c``
(``A`` sparse where it can be: a basis starts as the sparse identity);
consecutive affine operations therefore fold into one layer. A ``Relu`` applied to an affine value
ends a layer ``(W, b) = (A, c)`` and starts a new basis; a layer that is still a convolution of
its basis becomes a :class:`~exactcomp.ir.conv.Conv` (:mod:`exactcomp.io.onnx_conv`), any other a dense layer. The first affine tensor consumed by a
non-affine operation is the *trunk output*; every opaque node downstream of it forms the *head*,
copied unchanged into the exported model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import scipy.sparse as sp
from onnx import helper, numpy_helper

import exactcomp.ops  # noqa: F401  (the op units register their readers and writers)
from exactcomp.io import onnx_conv, onnx_layers, onnx_maxpool
from exactcomp.errors import ModelError, UnsupportedOpError
from exactcomp.ir.lowering import lower_max_pools
from exactcomp.ir.maxpool import MaxPoolLayer
from exactcomp.ir.network import Network, TensorInfo
from exactcomp.io.onnx_file import load_onnx_file
from exactcomp.io.onnx_head import build_head, output_info, stored_trunk_parameters
from exactcomp.io.onnx_ops import AffineOps
from exactcomp.io.onnx_values import AFFINE_OPS, LAYER_OPS, FLOAT_TYPES, Affine, Const, dims_of, sparse_identity, node_label, Opaque


class _Tracer(AffineOps):
    def __init__(self, model: onnx.ModelProto, source: str):
        self.model = model
        self.graph = model.graph
        self.source = source
        self.values: dict[str, object] = {}
        self.layers: list[Affine] = []      # the pre-activation of each ReLU layer
        self.relu_nodes: list[str] = []      # the name (or output) of each layer's Relu node
        self.basis = 0
        self.pooled_bases: set[int] = set()  # bases that are max-pooling outputs (onnx_maxpool)
        self.head_inputs: dict[str, int] = {}  # trunk tensor name -> first consuming node index
        self.opaque_nodes: list[int] = []
        self.node_index = 0

    # ---------------------------------------------------------------- errors
    def fail(self, message: str, cls=ModelError):
        raise cls(f"{self.source}: {message}")

    def fail_node(self, node, message: str, cls=ModelError):
        self.fail(f"{node_label(node, self.node_index)} (op {node.op_type}): {message}", cls)

    # ---------------------------------------------------------------- inputs
    def read_input(self) -> TensorInfo:
        inits = {t.name for t in self.graph.initializer}
        inputs = [i for i in self.graph.input if i.name not in inits]
        if len(inputs) != 1:
            self.fail(f"expected exactly one graph input, found {len(inputs)} ({', '.join(i.name for i in inputs)})")
        info = inputs[0]
        tt = info.type.tensor_type
        if tt.elem_type not in FLOAT_TYPES:
            self.fail(f"input '{info.name}' has element type {onnx.TensorProto.DataType.Name(tt.elem_type)}; "
                      "only float, double and float16 inputs are supported")
        dims = dims_of(info, "N")
        if len(dims) < 2:
            self.fail(f"input '{info.name}' has shape {dims}; a leading batch axis plus at least one feature axis is required")
        shape = tuple(dims[1:])
        if not all(isinstance(d, int) and d > 0 for d in shape):
            self.fail(f"input '{info.name}' has non-fixed feature dimensions {dims[1:]}; only the batch axis may be dynamic")
        dtype = FLOAT_TYPES[tt.elem_type]
        n = int(np.prod(shape))
        self.values[info.name] = Affine({0: sparse_identity(n)}, np.zeros(n), shape, dtype)
        self.basis_sizes = [n]   # entries of each basis: the input, then each ReLU layer
        return TensorInfo(info.name, shape, dtype, dims[0] if dims[0] not in ("", 0) else "N")

    def read_initializers(self):
        for init in self.graph.initializer:
            try:
                self.values[init.name] = Const(numpy_helper.to_array(init))
            except Exception as exc:  # noqa: BLE001 - onnx raises various types
                self.fail(f"cannot read initializer '{init.name}': {exc}")

    # ---------------------------------------------------------------- helpers
    def get(self, node, name: str):
        if name == "":
            return None
        if name not in self.values:
            self.fail_node(node, f"input '{name}' is not produced by any earlier node (graph not topologically sorted?)")
        return self.values[name]

    def const(self, node, name: str, what: str) -> np.ndarray:
        value = self.get(node, name)
        if not isinstance(value, Const):
            self.fail_node(node, f"{what} '{name}' must be a constant", UnsupportedOpError)
        arr = value.value
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            self.fail_node(node, f"{what} '{name}' contains NaN or infinite values")
        return arr

    def eval_constant(self, node) -> list[np.ndarray]:
        from onnx.reference import ReferenceEvaluator

        inputs = [self.values[name].value for name in node.input if name]
        names = [name for name in node.input if name]
        graph = helper.make_graph(
            [node], "fold",
            [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for n, v in zip(names, inputs)],
            [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output if o],
        )
        model = helper.make_model(graph, opset_imports=self.model.opset_import, ir_version=self.model.ir_version)
        return ReferenceEvaluator(model).run(None, dict(zip(names, inputs)))

    def relu(self, node, x: Affine) -> Affine:
        if self.basis in self.pooled_bases and onnx_maxpool.is_basis_output(self, x):
            return x   # pooled ReLU outputs are >= 0
        self.layers.append(self.on_newest_basis(x))
        self.relu_nodes.append(node.name or node.output[0])
        self.basis += 1
        n = x.c.size
        self.basis_sizes.append(n)
        return Affine({self.basis: sparse_identity(n)}, np.zeros(n), x.shape, x.dtype)

    def on_newest_basis(self, x: Affine) -> Affine:
        """``x`` with a term on the newest basis: a value that does not read the previous ReLU (a parallel
        branch, e.g. the second tower of an Inception block) gets a zero term there, and everything it does
        read becomes a skip connection."""
        if x.basis == self.basis:
            return x
        terms = dict(x.terms)
        terms[self.basis] = sp.csr_array((x.c.size, self.basis_sizes[self.basis]))
        return Affine(terms, x.c, x.shape, x.dtype, dict(x.convs))

    # ---------------------------------------------------------------- main loop
    def run_node(self, node):
        ins = [self.get(node, name) for name in node.input]
        present = [v for v in ins if v is not None]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        pending = [v for v in present if isinstance(v, onnx_maxpool.PendingMaxPool)]
        if pending:
            if node.op_type != "Relu":
                self.fail_node(pending[0].node, f"max pooling of a pre-activation must be followed by Relu (it is read "
                                                f"by {node_label(node, self.node_index)}, op {node.op_type})",
                               UnsupportedOpError)
            self.values[node.output[0]] = onnx_maxpool.relu_of_pending(self, node, pending[0])
            return
        opaque = [v for v in present if isinstance(v, Opaque)]
        if opaque:
            if node.op_type in LAYER_OPS:
                origin = opaque[0].origin
                self.fail(f"node '{origin.name or origin.output[0]}' (op {origin.op_type}) inside the ReLU trunk is not "
                          f"supported (it is followed by {node.op_type} node '{node.name or node.output[0]}'); "
                          f"supported trunk ops: {', '.join(AFFINE_OPS)}, Relu", UnsupportedOpError)
            self.set_opaque(node, opaque[0].origin)
            return
        if all(isinstance(v, Const) for v in present):
            self.fold_constant(node, present)
            return
        if node.op_type == "Shape":
            x = present[0]
            full = np.array([1, *x.shape], dtype=np.int64)
            start, end = attrs.get("start", 0), attrs.get("end", None)
            self.values[node.output[0]] = Const(full[start:end], batch_dependent=True)
            return
        if node.op_type == "Relu":
            self.values[node.output[0]] = self.relu(node, present[0])
            return
        if node.op_type == "MaxPool":
            self.values[node.output[0]] = onnx_maxpool.max_pool(self, node, present[0], attrs)
            return
        outs = self.op_affine(node, ins, attrs) if node.op_type in AFFINE_OPS else None
        if outs is None:  # first non-affine op: its affine inputs are trunk outputs
            for name, v in zip(node.input, ins):
                if isinstance(v, Affine):
                    self.head_inputs.setdefault(name, self.node_index)
            self.set_opaque(node, node)
            return
        for name, value in zip(node.output, outs):
            if name:
                self.values[name] = value

    def set_opaque(self, node, origin):
        self.opaque_nodes.append(self.node_index)
        for name in node.output:
            if name:
                self.values[name] = Opaque(origin)

    def fold_constant(self, node, present):
        try:
            results = self.eval_constant(node)
        except Exception:  # noqa: BLE001 - anything the reference evaluator cannot do stays opaque
            self.set_opaque(node, node)
            return
        dep = any(v.batch_dependent for v in present)
        for name, value in zip([o for o in node.output if o], results):
            self.values[name] = Const(np.asarray(value), batch_dependent=dep)

    def run(self):
        for index, node in enumerate(self.graph.node):
            self.node_index = index
            self.run_node(node)


def import_model(model: onnx.ModelProto | str | Path, source: str | None = None) -> Network:
    """Import an ONNX ReLU MLP (a ``ModelProto`` or a path) into the layer-graph IR."""
    if not isinstance(model, onnx.ModelProto):
        path = Path(model)
        source = source or str(path)
        model = load_onnx_file(path)
    source = source or "model"
    tracer = _Tracer(model, source)
    tracer.read_initializers()
    input_info = tracer.read_input()
    tracer.run()

    graph_outputs = [o.name for o in model.graph.output]
    trunk_names = dict(tracer.head_inputs)
    for name in graph_outputs:
        value = tracer.values.get(name)
        if value is None:
            tracer.fail(f"graph output '{name}' is not produced by any node")
        if isinstance(value, Affine):
            trunk_names.setdefault(name, len(model.graph.node))
        elif isinstance(value, Const):
            tracer.fail(f"graph output '{name}' does not depend on the input")
    if not trunk_names:
        tracer.fail("no output depends piecewise-linearly on the input")
    if len(trunk_names) > 1:
        tracer.fail(f"the non-linear head reads several trunk tensors ({', '.join(trunk_names)}); "
                    "exactly one trunk output is supported", UnsupportedOpError)
    trunk_name = next(iter(trunk_names))
    trunk = tracer.values[trunk_name]
    trunk = tracer.on_newest_basis(trunk)
    if not tracer.layers:
        tracer.fail("the model has no Relu: there is nothing to compress", UnsupportedOpError)

    layers, skips, ids = _assemble(tracer, [*tracer.layers, trunk], trunk_name)
    head = build_head(tracer, trunk_name)
    outputs = tuple(output_info(o) for o in model.graph.output)
    trunk_info = TensorInfo(trunk_name, trunk.shape, trunk.dtype, input_info.batch)
    opsets = tuple((o.domain, o.version) for o in model.opset_import)
    relu_nodes = {}
    for layer, name in zip(layers, tracer.relu_nodes):
        relu_nodes.update({i: name for i in getattr(layer, "level_ids", (layer.layer_id,))})
    return lower_max_pools(Network(
        layers=tuple(layers), input=input_info, trunk_output=trunk_info, outputs=outputs,
        compute_dtype=trunk.dtype, head=head, opsets=opsets, skips=tuple(skips),
        metadata={"source": source, "ir_version": model.ir_version, "producer": model.producer_name,
                  "stored_parameters": stored_trunk_parameters(model, head),
                  "relu_nodes": relu_nodes},
    ))


def _assemble(tracer: _Tracer, traced: list[Affine], trunk_name: str):
    """The IR layers (main terms) and skip connections (terms on earlier bases) of the traced values."""
    from exactcomp.ir.skip import Skip

    layers, skips = [], []
    # layer ids count the comparison levels of max poolings (exactcomp.ir.lowering)
    ids = [int(i) for i in np.cumsum([1] + [layers_of(value) for value in traced[:-1]])]
    for i, value in enumerate(traced):
        what = f"layer {ids[i]}" if i < len(traced) - 1 else f"the trunk output '{trunk_name}'"
        if isinstance(value, onnx_maxpool.PoolMarker):
            layers.append(MaxPoolLayer(value.pool, tuple(range(ids[i], ids[i] + value.pool.depth))))
            continue
        for A in value.terms.values():
            data = A.data if sp.issparse(A) else A
            if not (np.isfinite(data).all() and np.isfinite(value.c).all()):
                tracer.fail(f"folded weights of {what} are not finite (overflow in the model's constants?)")
        layers.append(onnx_layers.layer_from_affine(tracer, value.terms[i], value.c, value.convs.get(i), ids[i], what))
        for j in sorted(b for b in value.terms if b != i):
            op = onnx_layers.skip_op_from_affine(tracer, value.terms[j], value.convs.get(j), f"the skip connection into {what}")
            skips.append(Skip(i, j - 1, op))
    return onnx_conv.zero_columns_as_selections(layers), skips, ids



def layers_of(value) -> int:
    """Layers a traced value becomes after lowering: the comparison levels of a max pooling, else one."""
    return value.pool.depth if isinstance(value, onnx_maxpool.PoolMarker) else 1
