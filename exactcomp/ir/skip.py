"""Skip connections of the layer graph: extra affine inputs of a layer from earlier layers.

A :class:`~exactcomp.ir.network.Network` computes ``g_l = A_l h_{l-1} + b_l + Σ_{s into l} S_s h_{src(s)}``:
besides its main op ``A_l`` (reading the previous layer), layer ``l`` may add affine maps ``S_s`` (without
bias: the layer's bias ``b_l`` holds every constant) of the output of an earlier hidden layer, or of
the network input (``source = -1``). A residual block ``y = relu(x + B(x))`` is the skip
``S = identity`` from the layer of ``x`` into the block's last layer; a down-sampling shortcut is a
1x1 convolution. Skip ops have the same linear-operator interface as layers.

:class:`Embed` is the skip op of an identity shortcut, kept exact when neurons are removed on either
side: ``out[out_index[j]] += h[in_index[j]]`` (a 0/1 matrix with at most one 1 per row and column).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from exactcomp.ir.network import frozen_array


@dataclass(frozen=True, eq=False)
class Embed:
    """``out = E h`` with ``E[out_index[j], in_index[j]] = 1`` (an identity shortcut, possibly thinned)."""

    fan_in: int
    width: int
    in_index: np.ndarray
    out_index: np.ndarray
    shape: tuple[int, ...] | None = None   # per-sample (C, H, W) of both sides when it joins convolutions

    def __post_init__(self):
        object.__setattr__(self, "in_index", frozen_array(self.in_index, np.int64))
        object.__setattr__(self, "out_index", frozen_array(self.out_index, np.int64))
        if self.in_index.shape != self.out_index.shape or self.in_index.ndim != 1:
            raise ValueError("Embed needs matching index arrays")
        if self.in_index.size and (self.in_index.min() < 0 or self.in_index.max() >= self.fan_in
                                   or self.out_index.min() < 0 or self.out_index.max() >= self.width):
            raise ValueError("Embed index out of range")

    @classmethod
    def identity(cls, width: int, shape=None) -> "Embed":
        return cls(width, width, np.arange(width), np.arange(width), shape)

    @property
    def is_identity(self) -> bool:
        return self.fan_in == self.width == self.in_index.size and bool(
            np.array_equal(self.in_index, np.arange(self.width)) and np.array_equal(self.out_index, np.arange(self.width)))

    @property
    def parameter_count(self) -> int:
        return 0

    @property
    def is_constant(self) -> bool:
        return self.in_index.size == 0

    @cached_property
    def b(self) -> np.ndarray:
        return frozen_array(np.zeros(self.width))

    @cached_property
    def _matrix(self) -> sp.csr_array:
        return sp.csr_array((np.ones(self.in_index.size), (self.out_index, self.in_index)), shape=(self.width, self.fan_in))

    def matrix(self) -> sp.csr_array:
        return self._matrix

    def apply(self, h: np.ndarray) -> np.ndarray:
        h = np.asarray(h, dtype=np.float64)
        out = np.zeros((h.shape[0], self.width))
        out[:, self.out_index] = h[:, self.in_index]
        return out

    def apply_transpose(self, lam: np.ndarray) -> np.ndarray:
        lam = np.asarray(lam)
        out = np.zeros((*lam.shape[:-1], self.fan_in), dtype=lam.dtype)
        out[..., self.in_index] = lam[..., self.out_index]
        return out

    apply_abs = apply

    def apply_abs_transpose(self, m: np.ndarray) -> np.ndarray:
        return self.apply_transpose(m)

    def rows(self, neurons) -> np.ndarray:
        return self._matrix[np.atleast_1d(np.asarray(neurons, dtype=np.int64))].toarray()

    def keep_inputs(self, keep: np.ndarray) -> "Embed":
        """Drop the inputs where ``keep`` is false (their entries of the map go)."""
        keep = np.asarray(keep, dtype=bool)
        new_index = np.cumsum(keep) - 1
        pairs = keep[self.in_index]
        return Embed(int(keep.sum()), self.width, new_index[self.in_index[pairs]], self.out_index[pairs], self.shape)

    def keep_outputs(self, keep: np.ndarray) -> "Embed":
        """Drop the outputs where ``keep`` is false."""
        keep = np.asarray(keep, dtype=bool)
        new_index = np.cumsum(keep) - 1
        pairs = keep[self.out_index]
        return Embed(self.fan_in, int(keep.sum()), self.in_index[pairs], new_index[self.out_index[pairs]], self.shape)


@dataclass(frozen=True, eq=False)
class Skip:
    """``op(h_source)`` added to the pre-activation of layer ``target`` (positions in ``Network.layers``;
    ``source = -1`` is the network input). ``op`` has no bias (``op.b == 0``)."""

    target: int
    source: int
    op: object


@dataclass(frozen=True, eq=False)
class Shift:
    """``g = E h + b`` as a layer's main op: an identity shortcut (possibly thinned, :class:`Embed`) plus a bias.

    What a residual block ``y = relu(x + B(x))`` becomes when its branch is constant on the domain (its
    inner layer never fires, so ``B(x)`` is the last op's bias): the block's inner layer goes and ``y``
    reads ``x`` through the shortcut (:func:`exactcomp.rewrite.channels.collapse_dead_layer`).
    """

    embed: Embed
    bias: np.ndarray
    layer_id: int
    neuron_ids: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "bias", frozen_array(self.bias))
        object.__setattr__(self, "neuron_ids", frozen_array(self.neuron_ids, np.int64))
        if self.bias.shape != (self.embed.width,) or self.neuron_ids.shape != self.bias.shape:
            raise ValueError("Shift needs one bias and one neuron id per output")

    width = property(lambda self: self.embed.width)
    fan_in = property(lambda self: self.embed.fan_in)
    b = property(lambda self: self.bias)
    is_constant = property(lambda self: self.embed.is_constant)
    parameter_count = property(lambda self: self.bias.size)

    def apply(self, h):
        return self.embed.apply(h) + self.bias

    def apply_transpose(self, lam):
        return self.embed.apply_transpose(lam)

    def apply_abs(self, r):
        return self.embed.apply_abs(r)

    def apply_abs_transpose(self, m):
        return self.embed.apply_abs_transpose(m)

    def rows(self, neurons):
        return self.embed.rows(neurons)

    def matrix(self):
        return self.embed.matrix()

    def keep_outputs(self, keep) -> "Shift":
        keep = np.asarray(keep, dtype=bool)
        return Shift(self.embed.keep_outputs(keep), self.bias[keep], self.layer_id, self.neuron_ids[keep])

    def keep_inputs(self, keep) -> "Shift":
        return Shift(self.embed.keep_inputs(keep), self.bias, self.layer_id, self.neuron_ids)
