"""Average pooling kept as an op: a dense layer or a convolution that reads a pooled image, ``g = X (P h) + b``.

``P`` averages each channel of the ``(C, H, W)`` input over windows (ONNX ``AveragePool``; ``GlobalAveragePool``
is the window of the whole image): a depthwise convolution with an all-ones kernel, each output divided by
the window size, or with ``count_include_pad = False`` by the number of taps inside the image. Folding
``P`` into ``W`` would be exact but ``H·W / (H'·W')`` times larger (a global pooling before the classifier of
a ResNet: 64 times on an 8x8 map), so :class:`Pooled` keeps both and is used through the same
linear-operator interface as :class:`~exactcomp.ir.network.Dense`. Since ``P >= 0``,
``|W P| <= |W| P`` entrywise, so ``apply_abs`` through the two factors is a sound (slightly wider)
interval bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from exactcomp.ir.conv import Conv, conv_output_size
from exactcomp.ir.network import Dense, WrapsInner


@dataclass(frozen=True, eq=False)
class AveragePool:
    """Average pooling of a flattened ``(C, H, W)`` input (see module doc)."""

    in_shape: tuple[int, int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    count_include_pad: bool = False

    def __post_init__(self):
        for name in ("in_shape", "kernel", "stride", "pads"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if min(self.out_shape) < 1:
            raise ValueError(f"pooling window {self.kernel} does not fit the input {self.in_shape}")

    @property
    def out_shape(self) -> tuple[int, int, int]:
        top, left, bottom, right = self.pads
        return (self.in_shape[0],
                conv_output_size(self.in_shape[1], self.kernel[0], self.stride[0], 1, top, bottom),
                conv_output_size(self.in_shape[2], self.kernel[1], self.stride[1], 1, left, right))

    @property
    def width(self) -> int:
        return int(np.prod(self.out_shape))

    @cached_property
    def window(self) -> Conv:
        """The depthwise all-ones convolution summing each window."""
        c = self.in_shape[0]
        return Conv(np.ones((c, 1, *self.kernel)), np.zeros(c), self.in_shape, 0, np.arange(self.width), self.stride,
                    self.pads, (1, 1), groups=c)

    @cached_property
    def scale(self) -> np.ndarray:
        """``1 / count`` per output: the window size, or the taps inside the image."""
        if self.count_include_pad:
            return np.full(self.width, 1.0 / np.prod(self.kernel))
        return 1.0 / np.asarray(self.window.matrix().sum(axis=1)).ravel()

    @cached_property
    def matrix(self) -> sp.csr_array:
        return sp.csr_array(sp.diags_array(self.scale) @ self.window.matrix())

    def apply(self, h: np.ndarray) -> np.ndarray:
        return np.asarray(self.matrix @ np.asarray(h, dtype=np.float64).T).T

    def apply_transpose(self, lam: np.ndarray) -> np.ndarray:
        return np.asarray(self.matrix.T @ np.asarray(lam).T).T

    def keep_channels(self, keep: np.ndarray) -> "AveragePool":
        return AveragePool((int(np.sum(keep)), *self.in_shape[1:]), self.kernel, self.stride, self.pads,
                           self.count_include_pad)


@dataclass(frozen=True, eq=False)
class Pooled(WrapsInner):
    """``g = X (P h) + b``: :class:`AveragePool` ``P`` then the dense layer or convolution ``inner`` (``X``; see
    module doc). A convolution after an average pooling (a down-sampling stage) stays two structured ops; a dense
    layer may read only some pooled entries (a :class:`~exactcomp.ir.select.Selected` dense layer)."""

    pool: AveragePool
    inner: object

    def __post_init__(self):
        if self.inner.fan_in != self.pool.width:
            raise ValueError(f"dense layer reads {self.inner.fan_in} entries, the pooling gives {self.pool.width}")

    @property
    def fan_in(self) -> int:
        return int(np.prod(self.pool.in_shape))

    def apply(self, h: np.ndarray) -> np.ndarray:
        return self.inner.apply(self.pool.apply(h))

    def apply_transpose(self, lam: np.ndarray) -> np.ndarray:
        return self.pool.apply_transpose(self.inner.apply_transpose(lam))

    def apply_abs(self, r: np.ndarray) -> np.ndarray:
        return self.inner.apply_abs(self.pool.apply(r))          # |W P| r <= |W| (P r): P >= 0

    def apply_abs_transpose(self, m: np.ndarray) -> np.ndarray:
        return self.pool.apply_transpose(self.inner.apply_abs_transpose(m))

    def rows(self, neurons) -> np.ndarray:
        return self.pool.apply_transpose(self.inner.rows(neurons))

    def matrix(self):
        return sp.csr_array(self.inner.matrix() @ self.pool.matrix)

    @property
    def is_conv(self) -> bool:
        return isinstance(self.inner, Conv)

    def keep_outputs(self, keep: np.ndarray) -> "Pooled":
        """Only the outputs where ``keep`` is true (a dense inner layer, possibly after a selection)."""
        inner = self.inner
        if hasattr(inner, "keep_outputs"):
            return Pooled(self.pool, inner.keep_outputs(keep))
        return Pooled(self.pool, Dense(inner.W[keep], inner.b[keep], inner.layer_id, inner.neuron_ids[keep]))

    def keep_output_channels(self, keep: np.ndarray) -> "Pooled":
        """Only the output channels where ``keep`` is true (a convolution inner layer)."""
        return Pooled(self.pool, self.inner.keep_output_channels(keep))

    def keep_input_channels(self, keep: np.ndarray) -> "Pooled":
        keep = np.asarray(keep, dtype=bool)
        inner = self.inner
        if isinstance(inner, Conv):
            return Pooled(self.pool.keep_channels(keep), inner.keep_input_channels(keep))
        positions = self.pool.out_shape[1] * self.pool.out_shape[2]
        columns = np.repeat(keep, positions)
        if hasattr(inner, "keep_inputs"):      # a selection of the pooled entries, then dense
            return Pooled(self.pool.keep_channels(keep), inner.keep_inputs(columns))
        return Pooled(self.pool.keep_channels(keep), Dense(inner.W[:, columns], inner.b, inner.layer_id, inner.neuron_ids))


def conv_of(layer) -> Conv | None:
    """The convolution of a layer that has output channels: a :class:`Conv`, or the one after an average pooling."""
    if isinstance(layer, Conv):
        return layer
    return layer.inner if isinstance(layer, Pooled) and isinstance(layer.inner, Conv) else None
