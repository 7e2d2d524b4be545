"""A 2-D convolution layer of the IR, kept structurally (kernel, stride, padding, dilation, groups).

On the flattened input ``h`` (channel-major ``(C_in, H, W)``) the layer computes, for output
channel ``o`` at position ``(y, x)`` (``(C_out, H_out, W_out)``, flattened channel-major)::

    g[o, y, x] = bias[o] + Σ_{c ∈ group(o), i, j} K[o, c, i, j] · h_pad[c_g, s_y y + d_y i, s_x x + d_x j]

where ``h_pad`` is ``h`` with ``pads = (top, left, bottom, right)`` zeros around each channel and
``c_g`` runs over the ``C_in / groups`` input channels of ``o``'s group (ONNX ``Conv`` semantics).
With ``channels_last`` the flat input is ordered ``(H, W, C_in)`` instead (a channels-last model whose
first op transposes its input, as TensorFlow exports write); the output is always channel-major.
The map is affine, ``g = M h + b`` with a sparse ``M`` (``C_in/groups · k_h · k_w`` non-zeros per
row, at most); :meth:`Conv.matrix` builds it once, as a ``scipy.sparse`` matrix, never dense. Bounds,
witnesses and formulations use the layer through the same linear-operator interface as
:class:`~exactcomp.ir.network.Dense` (``apply``, ``apply_transpose``, ``apply_abs``, ``rows``, ``matrix``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from exactcomp.ir.network import frozen_array


def conv_output_size(size: int, kernel: int, stride: int, dilation: int, pad_before: int, pad_after: int) -> int:
    """``floor((size + pads - dilation (kernel - 1) - 1) / stride) + 1`` (ONNX Conv, no auto_pad)."""
    return (size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1


@dataclass(frozen=True, eq=False)
class Conv:
    """One convolution ``g = conv(h) + bias`` on a flattened ``(C_in, H, W)`` input (see module doc).

    ``neuron_ids`` are the original flat indices (channel-major) of the output neurons, so that a
    layer whose dead channels were removed still maps back to the imported model.
    """

    kernel: np.ndarray                    # (C_out, C_in / groups, k_h, k_w)
    bias: np.ndarray                      # (C_out,)
    in_shape: tuple[int, int, int]        # (C_in, H, W)
    layer_id: int
    neuron_ids: np.ndarray
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    channels_last: bool = False

    def __post_init__(self):
        object.__setattr__(self, "kernel", frozen_array(self.kernel))
        object.__setattr__(self, "bias", frozen_array(self.bias))
        object.__setattr__(self, "neuron_ids", frozen_array(self.neuron_ids, np.int64))
        for name in ("in_shape", "stride", "pads", "dilation"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        c_out, c_per_group, kh, kw = self.kernel.shape
        if len(self.in_shape) != 3 or self.bias.shape != (c_out,):
            raise ValueError(f"Conv shapes do not match: kernel {self.kernel.shape}, bias {self.bias.shape}, "
                             f"input {self.in_shape}")
        if self.groups < 1 or self.in_shape[0] != c_per_group * self.groups or c_out % self.groups:
            raise ValueError(f"Conv groups={self.groups} do not fit kernel {self.kernel.shape} and input {self.in_shape}")
        if min(self.out_shape) < 1:
            raise ValueError(f"Conv output shape {self.out_shape} is empty")
        if self.neuron_ids.shape != (self.width,):
            raise ValueError("neuron_ids must have one entry per output neuron")

    # --- shapes ------------------------------------------------------------------------
    @property
    def out_shape(self) -> tuple[int, int, int]:
        c_out, _, kh, kw = self.kernel.shape
        top, left, bottom, right = self.pads
        return (c_out,
                conv_output_size(self.in_shape[1], kh, self.stride[0], self.dilation[0], top, bottom),
                conv_output_size(self.in_shape[2], kw, self.stride[1], self.dilation[1], left, right))

    @property
    def value_shape(self) -> tuple[int, ...]:
        """The per-sample shape of the ONNX tensor the layer outputs (``out_shape`` for a 2-D convolution)."""
        return self.out_shape

    @property
    def channels(self) -> int:
        return self.kernel.shape[0]

    @property
    def positions(self) -> int:
        """Output positions per channel, ``H_out · W_out``."""
        return self.out_shape[1] * self.out_shape[2]

    @property
    def width(self) -> int:
        return self.channels * self.positions

    @property
    def fan_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def is_constant(self) -> bool:
        return not np.any(self.kernel)

    @property
    def parameter_count(self) -> int:
        """Kernel and bias entries (a constant layer: its bias only)."""
        return self.bias.size if self.is_constant else self.kernel.size + self.bias.size

    @cached_property
    def b(self) -> np.ndarray:
        """The bias per output neuron (``bias[o]`` repeated over the positions)."""
        return frozen_array(np.repeat(self.bias, self.positions))

    # --- the sparse matrix ---------------------------------------------------------------
    @cached_property
    def _index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row, column and kernel-entry index of every non-zero of ``M`` (padding taps dropped)."""
        c_out, cpg, kh, kw = self.kernel.shape
        _, h_out, w_out = self.out_shape
        c_in, H, W = self.in_shape
        top, left = self.pads[0], self.pads[1]
        o, c, i, j, y, x = np.meshgrid(np.arange(c_out), np.arange(cpg), np.arange(kh), np.arange(kw),
                                       np.arange(h_out), np.arange(w_out), indexing="ij")
        iy = self.stride[0] * y + self.dilation[0] * i - top
        ix = self.stride[1] * x + self.dilation[1] * j - left
        inside = (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
        group = o // (c_out // self.groups)
        channel = group * cpg + c
        row = (o * h_out + y) * w_out + x
        col = ((iy * W + ix) * c_in + channel) if self.channels_last else ((channel * H + iy) * W + ix)
        entry = ((o * cpg + c) * kh + i) * kw + j
        return row[inside], col[inside], entry[inside]

    def matrix(self) -> sp.csr_array:
        """``M`` with ``g = M h + b`` (sparse, CSR)."""
        return self._matrix

    @cached_property
    def _matrix(self) -> sp.csr_array:
        row, col, entry = self._index
        return sp.csr_array((self.kernel.ravel()[entry], (row, col)), shape=(self.width, self.fan_in))

    @cached_property
    def _abs_matrix(self) -> sp.csr_array:
        return abs(self._matrix)

    # --- the linear-operator interface (as Dense) ------------------------------------------
    def apply(self, h: np.ndarray) -> np.ndarray:
        """``g = M h + b`` for each row ``h`` of a batch ``(batch, fan_in)``."""
        return np.asarray(self._matrix @ np.asarray(h, dtype=np.float64).T).T + self.b

    def apply_transpose(self, lam: np.ndarray) -> np.ndarray:
        """``λ M`` per row: a linear form on ``g`` pulled back to the layer's input."""
        return np.asarray(self._matrix.T @ np.asarray(lam).T).T

    def apply_abs(self, r: np.ndarray) -> np.ndarray:
        """``|M| r`` per row (interval arithmetic)."""
        return np.asarray(self._abs_matrix @ np.asarray(r).T).T

    def apply_abs_transpose(self, m: np.ndarray) -> np.ndarray:
        """``m |M|`` per row."""
        return np.asarray(self._abs_matrix.T @ np.asarray(m).T).T

    def rows(self, neurons) -> np.ndarray:
        """Dense rows of ``M`` for some output neurons (their linear forms on the input)."""
        return self._matrix[np.atleast_1d(np.asarray(neurons, dtype=np.int64))].toarray()

    # --- structure-preserving edits (rewrite rules) ------------------------------------------
    def keep_output_channels(self, keep: np.ndarray) -> "Conv":
        """The same layer computing only the channels where ``keep`` is true (``groups`` must be 1)."""
        keep = np.asarray(keep, dtype=bool)
        ids = self.neuron_ids.reshape(self.channels, self.positions)[keep].ravel()
        return replace(self, kernel=self.kernel[keep], bias=self.bias[keep], neuron_ids=ids)

    def keep_input_channels(self, keep: np.ndarray) -> "Conv":
        """The same layer reading only the input channels where ``keep`` is true (``groups`` must be 1)."""
        keep = np.asarray(keep, dtype=bool)
        return replace(self, kernel=self.kernel[:, keep], in_shape=(int(keep.sum()), *self.in_shape[1:]))
