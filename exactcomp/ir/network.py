"""The layer-graph IR: an immutable feed-forward ReLU network with float64 weights.

A :class:`Network` computes, for a flattened input ``x`` (length ``input_size``)::

    h_0 = x[S]                       (S = input_indices; all of x when None)
    g_l = W_l h_{l-1} + b_l          for l = 1..L
    h_l = max(g_l, 0)                for l = 1..L-1   (hidden layers)
    y   = g_L                        (the trunk output, fed to the head)

All affine pre-processing of the original model (normalisation, flatten, reshape, batch-norm,
consecutive affine layers) is folded into the ``W_l, b_l``. Non-piecewise-linear operations after
the trunk (softmax, argmax, ...) form the ``head``: an opaque serialised ONNX sub-graph that is
re-attached unchanged on export. The optional input selection ``S`` (strictly increasing flat
indices) lets the first layer read only some input entries, e.g. after the fixed ones were folded
into its bias (:func:`exactcomp.rewrite.rules.fold_fixed_inputs`); it is exported as a ``Gather``.
This module never imports onnx.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np


def frozen_array(array: np.ndarray, dtype=np.float64) -> np.ndarray:
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
        object.__setattr__(self, "W", frozen_array(self.W))
        object.__setattr__(self, "b", frozen_array(self.b))
        object.__setattr__(self, "neuron_ids", frozen_array(self.neuron_ids, np.int64))
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

    # --- the linear-operator interface: what bounds, witnesses and provers use, so that other
    # --- affine ops (convolutions, skip connections) can stand in for a dense matrix
    def apply(self, h: np.ndarray) -> np.ndarray:
        """``g = W h + b`` for each row ``h`` of a batch ``(batch, fan_in)``."""
        return h @ self.W.T + self.b

    def apply_transpose(self, lam: np.ndarray) -> np.ndarray:
        """``λ W`` for each row ``λ`` of coefficients on ``g``: the same linear form on the layer's input."""
        return lam @ self.W

    def apply_abs(self, r: np.ndarray) -> np.ndarray:
        """``|W| r`` per row: the radius of ``W h`` when each ``h_i`` ranges over ``±r_i`` (interval arithmetic)."""
        return r @ np.abs(self.W).T

    def apply_abs_transpose(self, m: np.ndarray) -> np.ndarray:
        """``m |W|`` per row: magnitudes pulled back to the input (rounding-slack bounds)."""
        return m @ np.abs(self.W)

    def rows(self, neurons) -> np.ndarray:
        """The linear forms of some outputs on the layer's input (rows of ``W``)."""
        return self.W[neurons]

    def matrix(self):
        """``W`` as a ``scipy.sparse`` CSR matrix (what the MILP formulations read; built once)."""
        return self._csr

    @cached_property
    def _csr(self):
        import scipy.sparse as sp

        return sp.csr_array(self.W)


class WrapsInner:
    """An op around an inner op ``inner`` (a pooling or a selection before it): the layer's identity, width, bias
    and parameters are the inner op's."""

    layer_id = property(lambda self: self.inner.layer_id)
    neuron_ids = property(lambda self: self.inner.neuron_ids)
    width = property(lambda self: self.inner.width)
    b = property(lambda self: self.inner.b)
    is_constant = property(lambda self: self.inner.is_constant)
    parameter_count = property(lambda self: self.inner.parameter_count)


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
    """A ReLU network on a flattened input, plus what is needed to write it back as ONNX.

    Its layers are affine ops: :class:`Dense` or :class:`exactcomp.ir.conv.Conv` (each reads the
    previous layer's output flattened; a convolution interprets it as ``(C, H, W)``).

    ``trunk_output`` describes the tensor ``y = g_L`` (its per-sample shape may be
    multi-dimensional; ``y`` is reshaped to it on export). ``outputs`` are the model's outputs
    (equal to ``(trunk_output,)`` when there is no head). ``compute_dtype`` is the float type of
    the trunk's arithmetic in the original model. ``input_indices`` (strictly increasing flat
    indices into the input, or None for all of it) are the entries the first layer reads: its
    ``fan_in`` is their number, while ``input_size`` stays the size of the model input.

    ``skips`` (:class:`exactcomp.ir.skip.Skip`) add ``op(h_source)`` to layer ``target``'s pre-activation
    (skip connections: the network is then a layer graph, not a chain); ``source = -1`` reads the
    whole model input.
    """

    layers: tuple  # of Dense / Conv
    input: TensorInfo
    trunk_output: TensorInfo
    outputs: tuple[TensorInfo, ...]
    compute_dtype: str = "float32"
    head: Head | None = None
    opsets: tuple[tuple[str, int], ...] = (("", 17),)
    metadata: dict = field(default_factory=dict)
    input_indices: np.ndarray | None = None
    skips: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise ValueError("a network needs at least one layer")
        read = self.input.size
        if self.input_indices is not None:
            idx = frozen_array(self.input_indices, np.int64)
            object.__setattr__(self, "input_indices", idx)
            if idx.ndim != 1 or np.any(np.diff(idx) <= 0) or (idx.size and not 0 <= idx[0] <= idx[-1] < self.input.size):
                raise ValueError(f"input_indices must be strictly increasing indices below the input size {self.input.size}")
            read = idx.size
        if self.layers[0].fan_in != read:
            raise ValueError(f"first layer expects {self.layers[0].fan_in} inputs, the network reads {read}")
        for prev, nxt in zip(self.layers, self.layers[1:]):
            if nxt.fan_in != prev.width:
                raise ValueError(f"layer {nxt.layer_id} expects {nxt.fan_in} inputs, previous has {prev.width}")
        if self.layers[-1].width != self.trunk_output.size:
            raise ValueError("last layer width differs from the trunk output size")
        object.__setattr__(self, "skips", tuple(sorted(self.skips, key=lambda s: (s.target, s.source))))
        for skip in self.skips:
            if not -1 <= skip.source < skip.target - 1 or skip.target >= len(self.layers):
                raise ValueError(f"skip from {skip.source} into {skip.target} does not go forward past a layer")
            if skip.op.fan_in != self.source_width(skip.source) or skip.op.width != self.layers[skip.target].width:
                raise ValueError(f"skip from {skip.source} into {skip.target}: op {skip.op.fan_in} -> {skip.op.width} "
                                 f"does not join widths {self.source_width(skip.source)} -> {self.layers[skip.target].width}")
            if np.any(skip.op.b):
                raise ValueError("a skip op has no bias (the target layer's bias holds the constants)")

    # --- structure ---------------------------------------------------------------------
    @property
    def hidden(self) -> tuple:
        """The ReLU layers (all but the last)."""
        return self.layers[:-1]

    @property
    def input_size(self) -> int:
        return self.input.size

    def source_width(self, source: int) -> int:
        """Width of a skip source: hidden layer ``source``'s output, or the whole input (``-1``)."""
        return self.input_size if source < 0 else self.layers[source].width

    def skips_into(self, target: int) -> tuple:
        return tuple(s for s in self.skips if s.target == target)

    def skips_from(self, source: int) -> tuple:
        return tuple(s for s in self.skips if s.source == source)

    @property
    def widths(self) -> list[int]:
        return [layer.width for layer in self.layers]

    @property
    def parameter_count(self) -> int:
        """Weights and biases of the layers (:attr:`Dense.parameter_count`). The ``input_indices``
        are not counted: like the exported ``Reshape`` targets, they are structure (which entries
        are read), not parameters of the function."""
        return sum(layer.parameter_count for layer in self.layers) + sum(s.op.parameter_count for s in self.skips)

    def with_layers(self, layers, skips=None) -> "Network":
        """The network with other layers (and skip connections: kept unless given)."""
        return replace(self, layers=tuple(layers), skips=self.skips if skips is None else tuple(skips))

    def with_full_input(self) -> "Network":
        """The same function with the first layer reading the whole input: ``W_1`` gets zero
        columns at the entries outside ``input_indices`` (what bounds, witnesses and MILPs expect)."""
        if self.input_indices is None:
            return self
        first = self.layers[0]
        W = np.zeros((first.width, self.input_size))
        W[:, self.input_indices] = first.W
        layer = Dense(W, first.b, first.layer_id, first.neuron_ids)
        return replace(self, layers=(layer, *self.layers[1:]), input_indices=None)

    def backpropagate(self, k: int, v: np.ndarray, pre: list[np.ndarray]) -> np.ndarray:
        """Rows ``v`` of coefficients on layer ``k``'s *pre-activation inputs* pulled back to the input
        through the ReLUs' derivatives ``[g_i > 0]`` at the points whose pre-activations are ``pre``
        (row-aligned with ``v``): the gradient ``∂(v · g_k)/∂x``, every skip path included.
        ``v`` holds coefficients on layer ``k``'s output ``g_k`` (not yet through its ops)."""
        pending: dict[int, np.ndarray] = {}

        def add(key, value):
            pending[key] = value if key not in pending else pending[key] + value

        def through(i, lam):
            add(i - 1, self.layers[i].apply_transpose(lam))
            for skip in self.skips_into(i):
                add(skip.source, skip.op.apply_transpose(lam))

        through(k, v)
        for i in range(k - 1, -1, -1):
            if i in pending:
                through(i, pending.pop(i) * (pre[i] > 0))
        return pending.get(-1, np.zeros((len(v), self.input_size)))

    # --- evaluation --------------------------------------------------------------------
    def forward(self, x: np.ndarray, return_preactivations: bool = False):
        """Evaluate the trunk in float64 on a batch ``x`` of shape (batch, input_size).

        Returns ``y`` (batch, output width), and with ``return_preactivations`` also the list of
        hidden pre-activations ``[g_1, ..., g_{L-1}]``.
        """
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        h = x if self.input_indices is None else x[:, self.input_indices]
        pre, post = [], []
        for pos, layer in enumerate(self.layers):
            g = layer.apply(h)
            for skip in self.skips_into(pos):
                g = g + skip.op.apply(x if skip.source < 0 else post[skip.source])
            if pos == len(self.layers) - 1:
                return (g, pre) if return_preactivations else g
            pre.append(g)
            h = np.maximum(g, 0.0)
            post.append(h if self.skips_from(pos) else None)  # kept only where a skip reads it

