"""Max pooling: one op for import, rewriting and export; ReLU comparison layers for the analysis.

ONNX ``MaxPool`` takes, per channel, the maximum of each window of a ``(C, H, W)`` input. Since

    max(u, v) = v + relu(u - v)                              (exactly, for all reals u, v)

a window's maximum is a *tournament*: level 1 compares disjoint pairs of the window's entries (one
ReLU neuron ``relu(u - v)`` per pair; an odd entry waits), level 2 compares pairs of level-1 winners
``v + relu(u - v)``, and so on; after ``T = ceil(log2 n)`` levels one value per window is left, the
last comparison neuron plus the *carried* second arguments of the comparisons it won through.

:class:`MaxPoolLayer` is the pooling as one layer of the *raised* network (what import, rewriting and
export see; its ReLU is the identity, its inputs being ReLU outputs ``>= 0``).
:mod:`exactcomp.ir.lowering` turns it into ``T`` layers of comparison neurons (:class:`PoolLevel`,
sparse ``±1`` maps) joined by skip connections: the comparisons' second arguments reach later levels,
and the carried values reach every reader of the pooling through :class:`PoolCarry` (``X(S h)``: a
0/1 selection ``S`` then the reader's own op ``X``). Every analysis (bounds, LP/MILP, branch and bound,
witnesses) then applies unchanged and exactly: the MILP of ``relu(u - v)`` is the usual big-M encoding
of a max, a branch on a comparison neuron fixes which argument wins, and a comparison proven stable
fixes a winner on the whole domain.

The lowering needs every window to take the same number of levels (all windows without padding do;
with padding, border windows are smaller): then the last level has exactly one neuron per window,
in the pooled tensor's order, so every reader keeps its own op on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from exactcomp.ir.conv import conv_output_size
from exactcomp.ir.network import frozen_array


@dataclass(frozen=True, eq=False)
class MaxPool:
    """The geometry of a 2-D max pooling of a flattened ``(C, H, W)`` input (ONNX ``MaxPool``, -inf padding)."""

    in_shape: tuple[int, int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)

    def __post_init__(self):
        for name in ("in_shape", "kernel", "stride", "pads", "dilation"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if min(self.out_shape) < 1:
            raise ValueError(f"pooling window {self.kernel} does not fit the input {self.in_shape}")
        sizes = np.array([w.size for w in self.windows])
        if sizes.min() < 2:
            raise ValueError("a max-pooling window with a single entry is a selection, not a comparison")
        depths = np.ceil(np.log2(sizes)).astype(int)
        if depths.min() != depths.max():
            raise ValueError(f"max-pooling windows of {sizes.min()} to {sizes.max()} entries (padding) need "
                             "tournaments of different depths; not supported")

    @property
    def out_shape(self) -> tuple[int, int, int]:
        top, left, bottom, right = self.pads
        return (self.in_shape[0],
                conv_output_size(self.in_shape[1], self.kernel[0], self.stride[0], self.dilation[0], top, bottom),
                conv_output_size(self.in_shape[2], self.kernel[1], self.stride[1], self.dilation[1], left, right))

    @property
    def width(self) -> int:
        return int(np.prod(self.out_shape))

    @property
    def fan_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def positions(self) -> int:
        """Output positions per channel."""
        return self.out_shape[1] * self.out_shape[2]

    @cached_property
    def windows(self) -> list[np.ndarray]:
        """Per output position of one channel (row-major), the flat in-channel indices of its taps inside the image."""
        _, H, W = self.in_shape
        _, h_out, w_out = self.out_shape
        top, left = self.pads[0], self.pads[1]
        ys = np.arange(h_out)[:, None] * self.stride[0] - top + np.arange(self.kernel[0])[None, :] * self.dilation[0]
        xs = np.arange(w_out)[:, None] * self.stride[1] - left + np.arange(self.kernel[1])[None, :] * self.dilation[1]
        out = []
        for y in ys:
            y = y[(y >= 0) & (y < H)]
            for x in xs:
                x = x[(x >= 0) & (x < W)]
                out.append((y[:, None] * W + x[None, :]).ravel())
        return out

    @property
    def depth(self) -> int:
        return int(np.ceil(np.log2(self.windows[0].size)))

    @cached_property
    def _taps(self) -> np.ndarray:
        """``(positions, n_max)`` in-channel indices, ``-1`` where a border window has fewer taps."""
        n = max(w.size for w in self.windows)
        taps = np.full((len(self.windows), n), -1, dtype=np.int64)
        for i, w in enumerate(self.windows):
            taps[i, :w.size] = w
        return taps

    def apply(self, h: np.ndarray) -> np.ndarray:
        """The pooled values of a batch ``(batch, C·H·W)``: ``(batch, C·H'·W')``."""
        h = np.asarray(h, dtype=np.float64)
        c, H, W = self.in_shape
        padded = np.concatenate([h.reshape(len(h), c, H * W), np.full((len(h), c, 1), -np.inf)], axis=2)
        taps = np.where(self._taps < 0, H * W, self._taps)
        return padded[:, :, taps].max(axis=3).reshape(len(h), -1)

    def keep_channels(self, keep: np.ndarray) -> "MaxPool":
        return MaxPool((int(np.sum(keep)), *self.in_shape[1:]), self.kernel, self.stride, self.pads, self.dilation)


@dataclass(frozen=True, eq=False)
class MaxPoolLayer:
    """A max pooling as a layer of the raised network: ``g = pool(h)``, then the (identity) ReLU.

    ``level_ids`` / ``level_neuron_ids`` name the comparison layers of its lowering (kept so that
    lowering again after a rewrite gives the same layer ids and the surviving neuron ids).
    """

    pool: MaxPool
    level_ids: tuple[int, ...]
    level_neuron_ids: tuple | None = None

    def __post_init__(self):
        object.__setattr__(self, "level_ids", tuple(int(i) for i in self.level_ids))
        if len(self.level_ids) != self.pool.depth:
            raise ValueError(f"a max pooling of depth {self.pool.depth} needs {self.pool.depth} level ids")

    layer_id = property(lambda self: self.level_ids[0])
    width = property(lambda self: self.pool.width)
    fan_in = property(lambda self: self.pool.fan_in)
    is_constant = False
    parameter_count = 0

    @cached_property
    def b(self) -> np.ndarray:
        return frozen_array(np.zeros(self.width))

    @cached_property
    def neuron_ids(self) -> np.ndarray:
        return frozen_array(np.arange(self.width), np.int64)

    def apply(self, h: np.ndarray) -> np.ndarray:
        return self.pool.apply(h)

    def keep_channels(self, keep: np.ndarray) -> "MaxPoolLayer":
        """The pooling of the channels where ``keep`` is true (it acts on each channel alone)."""
        keep = np.asarray(keep, dtype=bool)
        ids = None if self.level_neuron_ids is None else tuple(
            np.asarray(ids).reshape(keep.size, -1)[keep].ravel() for ids in self.level_neuron_ids)
        return MaxPoolLayer(self.pool.keep_channels(keep), self.level_ids, ids)


class _SparseOp:
    """The linear-operator interface over a ``scipy.sparse`` matrix ``M`` (no bias, no stored parameters)."""

    parameter_count = 0

    def __init__(self, M):
        self._M = sp.csr_array(M)
        self._MT = sp.csr_array(self._M.T)

    width = property(lambda self: self._M.shape[0])
    fan_in = property(lambda self: self._M.shape[1])
    is_constant = property(lambda self: self._M.nnz == 0)

    @cached_property
    def b(self) -> np.ndarray:
        return frozen_array(np.zeros(self.width))

    def matrix(self):
        return self._M

    @staticmethod
    def _rows_times(M, x: np.ndarray) -> np.ndarray:
        """``x M^T`` for rows ``x`` of any leading shape."""
        x = np.asarray(x, dtype=np.float64)
        flat = x.reshape(-1, x.shape[-1])
        return np.asarray(M @ flat.T).T.reshape(*x.shape[:-1], M.shape[0])

    def apply(self, h):
        return self._rows_times(self._M, h)

    def apply_transpose(self, lam):
        return self._rows_times(self._MT, lam)

    def apply_abs(self, r):
        return self._rows_times(abs(self._M), r)

    def apply_abs_transpose(self, m):
        return self._rows_times(abs(self._MT), m)

    def rows(self, neurons) -> np.ndarray:
        return self._M[np.atleast_1d(np.asarray(neurons, dtype=np.int64))].toarray()


class PoolLevel(_SparseOp):
    """Comparison layer ``level`` (1-based) of a lowered max pooling: ``g = M h`` with ``±1`` entries,
    one row ``u - v`` per comparison (main op or skip op into the level; ``pool`` is the raised layer).
    ``auxiliary``: its neurons are not the model's; provers do not target them (a stable one fixes a winner)."""

    auxiliary = True

    def __init__(self, M, layer_id: int, neuron_ids, pool: MaxPoolLayer, level: int):
        super().__init__(M)
        self.layer_id, self.pool, self.level = int(layer_id), pool, int(level)
        self.neuron_ids = frozen_array(neuron_ids, np.int64)
        if self.neuron_ids.shape != (self.width,):
            raise ValueError("neuron_ids must have one entry per comparison")


class PoolCarry(_SparseOp):
    """``X(S h) - X(0)``: the values a max pooling carries (selection ``S``), read by the op ``inner`` (``X``)
    of a layer that reads the pooling. A skip op: no bias, no parameters of its own (``X``'s are counted
    where ``X`` reads the last comparison level)."""

    def __init__(self, select, inner):
        self.select, self.inner = sp.csr_array(select), inner
        if inner.fan_in != self.select.shape[0]:
            raise ValueError(f"op reads {inner.fan_in} entries, the selection gives {self.select.shape[0]}")
        self._selectT = sp.csr_array(self.select.T)

    width = property(lambda self: self.inner.width)
    fan_in = property(lambda self: self.select.shape[1])
    is_constant = property(lambda self: self.select.nnz == 0 or self.inner.is_constant)

    @cached_property
    def _M(self):
        return sp.csr_array(self.inner.matrix() @ self.select)

    def apply(self, h):
        return self.inner.apply(self._rows_times(self.select, h)) - self.inner.b

    def apply_transpose(self, lam):
        return self._rows_times(self._selectT, self.inner.apply_transpose(lam))

    def apply_abs(self, r):                 # |X S| r <= |X| (S r): S is a 0/1 selection
        return self.inner.apply_abs(self._rows_times(self.select, r))

    def apply_abs_transpose(self, m):
        return self._rows_times(self._selectT, self.inner.apply_abs_transpose(m))

    def rows(self, neurons) -> np.ndarray:
        return self._rows_times(self._selectT, self.inner.rows(neurons))
