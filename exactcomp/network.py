"""The layer-graph IR: an immutable feed-forward ReLU network with float64 weights.

A :class:`Network` computes, for a flattened input ``x`` (length ``input_size``)::

    h_0 = x
    g_l = W_l h_{l-1} + b_l          for l = 1..L
    h_l = max(g_l, 0)                for l = 1..L-1   (hidden layers)
    y   = g_L                        (the trunk output, fed to the head)

All affine pre-processing of the original model (normalisation, flatten, reshape, batch-norm,
consecutive affine layers) is folded into the ``W_l, b_l``. Non-piecewise-linear operations after
the trunk (softmax, argmax, ...) form the ``head``: an opaque serialised ONNX sub-graph that is
re-attached unchanged on export. This module never imports onnx.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


def _frozen(array: np.ndarray, dtype=np.float64) -> np.ndarray:
    out = np.array(array, dtype=dtype, copy=True)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class Dense:
    """One affine layer ``g = W h + b``.

    ``layer_id`` is the index of the hidden layer this came from in the imported network
    (1-based; the output layer has ``layer_id == L``), and ``neuron_ids`` are the original
    indices of its neurons, so that results map back to the imported model after rewriting.
    """

    W: np.ndarray
    b: np.ndarray
    layer_id: int
    neuron_ids: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "W", _frozen(self.W))
        object.__setattr__(self, "b", _frozen(self.b))
        object.__setattr__(self, "neuron_ids", _frozen(self.neuron_ids, np.int64))
        if self.W.ndim != 2 or self.b.shape != (self.W.shape[0],):
            raise ValueError(f"Dense layer shapes do not match: W {self.W.shape}, b {self.b.shape}")
        if self.neuron_ids.shape != self.b.shape:
            raise ValueError("neuron_ids must have one entry per neuron")

    @property
    def width(self) -> int:
        return self.W.shape[0]

    @property
    def fan_in(self) -> int:
        return self.W.shape[1]

    @property
    def is_constant(self) -> bool:
        """True when the layer ignores its input (``W == 0``): then ``g = b``."""
        return not np.any(self.W)

    @property
    def parameter_count(self) -> int:
        """Stored weights and biases; a constant layer stores only its bias."""
        return self.b.size if self.is_constant else self.W.size + self.b.size


@dataclass(frozen=True)
class TensorInfo:
    """Name, per-sample shape (batch axis excluded), element type and batch dimension of a tensor.

    ``batch`` is the original batch dimension: an int for a fixed size or a string for a
    symbolic (dynamic) axis.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    batch: int | str = "N"

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True)
class Head:
    """An opaque ONNX sub-graph applied to the trunk output, kept byte for byte.

    ``graph`` is a serialised ``onnx.GraphProto`` whose free input is ``input_name``; its outputs
    are the model's outputs. The opsets it needs are those of the :class:`Network` (``opsets``).
    """

    graph: bytes
    input_name: str


@dataclass(frozen=True, eq=False)
class Network:
    """A ReLU MLP on a flattened input, plus what is needed to write it back as ONNX.

    ``trunk_output`` describes the tensor ``y = g_L`` (its per-sample shape may be
    multi-dimensional; ``y`` is reshaped to it on export). ``outputs`` are the model's outputs
    (equal to ``(trunk_output,)`` when there is no head). ``compute_dtype`` is the float type of
    the trunk's arithmetic in the original model.
    """

    layers: tuple[Dense, ...]
    input: TensorInfo
    trunk_output: TensorInfo
    outputs: tuple[TensorInfo, ...]
    compute_dtype: str = "float32"
    head: Head | None = None
    opsets: tuple[tuple[str, int], ...] = (("", 17),)
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise ValueError("a network needs at least one layer")
        if self.layers[0].fan_in != self.input.size:
            raise ValueError(f"first layer expects {self.layers[0].fan_in} inputs, input has {self.input.size}")
        for prev, nxt in zip(self.layers, self.layers[1:]):
            if nxt.fan_in != prev.width:
                raise ValueError(f"layer {nxt.layer_id} expects {nxt.fan_in} inputs, previous has {prev.width}")
        if self.layers[-1].width != self.trunk_output.size:
            raise ValueError("last layer width differs from the trunk output size")

    # --- structure ---------------------------------------------------------------------
    @property
    def hidden(self) -> tuple[Dense, ...]:
        """The ReLU layers (all but the last)."""
        return self.layers[:-1]

    @property
    def input_size(self) -> int:
        return self.input.size

    @property
    def widths(self) -> list[int]:
        return [layer.width for layer in self.layers]

    @property
    def parameter_count(self) -> int:
        return sum(layer.parameter_count for layer in self.layers)

    def with_layers(self, layers) -> "Network":
        return replace(self, layers=tuple(layers))

    # --- evaluation --------------------------------------------------------------------
    def forward(self, x: np.ndarray, return_preactivations: bool = False):
        """Evaluate the trunk in float64 on a batch ``x`` of shape (batch, input_size).

        Returns ``y`` (batch, output width), and with ``return_preactivations`` also the list of
        hidden pre-activations ``[g_1, ..., g_{L-1}]``.
        """
        h = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        pre = []
        for layer in self.hidden:
            g = h @ layer.W.T + layer.b
            pre.append(g)
            h = np.maximum(g, 0.0)
        last = self.layers[-1]
        y = h @ last.W.T + last.b
        return (y, pre) if return_preactivations else y

