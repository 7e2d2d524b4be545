"""An ONNX model as a trainable torch function, and its new weights written back into the same graph.

``exactcomp stabilize`` (issue 21) fine-tunes a user's model and must hand back *the same model with new
weights*: the same nodes, op types, attributes, input/output names, dtypes, batch axis and opsets. So it
does not train exactcomp's IR (where batch norm, normalisation and consecutive affine maps are folded) but
the ONNX graph itself: :class:`TorchGraph` evaluates the graph's nodes in order with torch (float64), its
float initializers being ``torch.nn.Parameter`` s, and :func:`with_weights` writes trained values back into
a copy of the model, converted to each initializer's own dtype; nothing else of the model changes.

The ops are those of the networks exactcomp imports (:mod:`exactcomp.io.onnx_import`) and their heads:
affine and arithmetic ops, ReLU, convolutions, poolings, batch normalisation (inference form), shape ops,
Softmax/LogSoftmax/Sigmoid/ArgMax. Any other op is a :class:`~exactcomp.errors.UnsupportedOpError` naming
the node.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from exactcomp.errors import UnsupportedOpError
from exactcomp.finetune.ops import FLOAT_TYPES, OPS


class TorchGraph(torch.nn.Module):
    """``forward(x)`` runs ``model``'s graph on a batch ``x`` (its first input) and returns the list of its
    outputs; float tensors are float64. ``parameter(name)`` is the trainable tensor of initializer ``name``.

    ``masks`` (``{relu node name: tensor of one entry per unit}``, a unit being a feature or a channel, axis 1)
    multiply the Relu nodes' outputs during ``forward`` (empty: the model's own function); with
    ``keep_activations`` set, ``activations`` holds the Relu outputs of the last ``forward`` in node order.
    """

    def __init__(self, model: onnx.ModelProto):
        super().__init__()
        graph = model.graph
        self.input_name = next(i.name for i in graph.input if i.name not in {t.name for t in graph.initializer})
        self.output_names = [o.name for o in graph.output]
        self.nodes = list(graph.node)
        self.attributes = [{a.name: helper.get_attribute_value(a) for a in node.attribute} for node in self.nodes]
        for node in self.nodes:
            if node.op_type not in OPS or node.domain not in ("", "ai.onnx"):
                raise UnsupportedOpError(f"node {node.name or node.output[0]!r}: op {node.op_type} cannot be trained "
                                         "by exactcomp stabilize")
        self.relu_names = [node.name or node.output[0] for node in self.nodes if node.op_type == "Relu"]
        self.masks: dict[str, torch.Tensor] = {}
        self.keep_activations, self.activations = False, []
        self.weights = torch.nn.ParameterDict()
        self._keys: dict[str, str] = {}
        self._constants: dict[str, torch.Tensor] = {}
        for init in graph.initializer:
            value = torch.from_numpy(np.array(numpy_helper.to_array(init)))
            if init.data_type in FLOAT_TYPES:
                key = f"w{len(self._keys)}"
                self._keys[init.name] = key
                self.weights[key] = torch.nn.Parameter(value.to(torch.float64))
            else:
                self._constants[init.name] = value

    def _apply(self, fn, *args, **kwargs):   # ``.to(device)`` moves the integer constants too
        out = super()._apply(fn, *args, **kwargs)
        self._constants = {name: fn(value) for name, value in self._constants.items()}
        return out

    def tensors(self) -> dict:
        """Every initializer by its ONNX name: the constants and the trainable weights."""
        values = dict(self._constants)
        values.update((name, self.weights[key]) for name, key in self._keys.items())
        return values

    def parameter(self, name: str) -> torch.nn.Parameter:
        return self.weights[self._keys[name]]

    def _after_relu(self, name: str, out: torch.Tensor) -> torch.Tensor:
        mask = self.masks.get(name)
        if mask is not None:
            out = out * mask.reshape((1, -1) + (1,) * (out.dim() - 2))
        if self.keep_activations:
            self.activations.append(out)
        return out

    def initializer_values(self) -> dict[str, np.ndarray]:
        """The current float64 value of every float initializer, by its ONNX name."""
        return {name: self.weights[key].detach().cpu().numpy().copy() for name, key in self._keys.items()}

    def forward(self, x) -> list:
        values = self.tensors()
        x = torch.as_tensor(x)
        values[self.input_name] = x.to(torch.float64) if x.is_floating_point() else x
        self.activations = []
        for node, attrs in zip(self.nodes, self.attributes):
            args = [values[i] if i else None for i in node.input]
            out = OPS[node.op_type](args, attrs)
            if node.op_type == "Relu":
                out = self._after_relu(node.name or node.output[0], out)
            outs = out if isinstance(out, tuple) else (out,)
            for name, value in zip(node.output, outs):
                if name:
                    values[name] = value
        return [values[name] for name in self.output_names]


def with_weights(model: onnx.ModelProto, values: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of ``model`` whose float initializers named in ``values`` hold those values (cast to each
    initializer's own dtype, shapes checked); every node, attribute, input, output and opset is kept."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for init in out.graph.initializer:
        if init.name not in values:
            continue
        old = numpy_helper.to_array(init)
        new = np.asarray(values[init.name], dtype=np.float64)
        if new.shape != old.shape:
            raise ValueError(f"initializer {init.name}: shape {new.shape}, the model's is {old.shape}")
        init.CopyFrom(numpy_helper.from_array(new.astype(old.dtype), init.name))
    return out
