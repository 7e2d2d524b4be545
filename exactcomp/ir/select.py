"""A selection then an op: ``g = X(S h)``, with ``S`` the 0/1 matrix of ``(S h)_k = h[index[k]]`` (a ``Gather``).

What a reader becomes when it needs only some entries of its input, or a fixed entry per slot:

* a max pooling whose every window has a provably fixed winner on the domain is the selection of the
  winners, ``pool(h) = S h`` (:func:`exactcomp.rewrite.selection.select_fixed_winners`): the pooling's
  reader ``X`` (dense, convolution or pooled dense) reads ``S h`` instead;
* a dense reader of a convolution whose output has constant entries on the domain (stably inactive, or
  reading only constants) folds them into its bias and reads only the others
  (:func:`exactcomp.rewrite.selection.select_free_entries`).

The op keeps ``X``'s parameters; the indices are structure, not parameters (as ``Network.input_indices``).
Through the linear-operator interface: ``A = X S`` (``matrix``), ``λ A = (λ X) S`` scatters ``λ X`` to the
selected entries (adding where an entry is selected twice: overlapping pooling windows can share a winner),
and ``|X S| ≤ |X| S`` entrywise (equality without repeated indices), so ``apply_abs`` through the factors is sound.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from exactcomp.ir.network import Dense, WrapsInner, frozen_array


@dataclass(frozen=True, eq=False)
class Selected(WrapsInner):
    """``g = X(h[index])`` on an input of ``fan_in`` entries (see module doc); ``inner`` is ``X``."""

    index: np.ndarray
    inner: object
    fan_in: int

    def __post_init__(self):
        object.__setattr__(self, "index", frozen_array(self.index, np.int64))
        object.__setattr__(self, "fan_in", int(self.fan_in))
        if self.index.shape != (self.inner.fan_in,):
            raise ValueError(f"the op reads {self.inner.fan_in} entries, the selection gives {self.index.size}")
        if self.index.size and (self.index.min() < 0 or self.index.max() >= self.fan_in):
            raise ValueError(f"selection indices must lie in [0, {self.fan_in})")

    @cached_property
    def select(self) -> sp.csr_array:
        """``S`` (``index.size x fan_in``)."""
        return sp.csr_array((np.ones(self.index.size), (np.arange(self.index.size), self.index)),
                            shape=(self.index.size, self.fan_in))

    def _scatter(self, rows: np.ndarray) -> np.ndarray:
        """``rows S``: each row's entries added at their selected positions."""
        rows = np.asarray(rows, dtype=np.float64)
        out = np.zeros((*rows.shape[:-1], self.fan_in))
        np.add.at(out, (..., self.index), rows)
        return out

    def apply(self, h):
        return self.inner.apply(np.asarray(h, dtype=np.float64)[..., self.index])

    def apply_transpose(self, lam):
        return self._scatter(self.inner.apply_transpose(lam))

    def apply_abs(self, r):
        return self.inner.apply_abs(np.asarray(r)[..., self.index])

    def apply_abs_transpose(self, m):
        return self._scatter(self.inner.apply_abs_transpose(m))

    def rows(self, neurons) -> np.ndarray:
        return self._scatter(self.inner.rows(neurons))

    def matrix(self):
        return sp.csr_array(sp.csr_array(self.inner.matrix()) @ self.select)

    def keep_outputs(self, keep: np.ndarray) -> "Selected":
        """Only the outputs where ``keep`` is true (a dense or pooled inner op)."""
        keep = np.asarray(keep, dtype=bool)
        inner = self.inner
        kept = inner.keep_outputs(keep) if hasattr(inner, "keep_outputs") else Dense(
            inner.W[keep], inner.b[keep], inner.layer_id, inner.neuron_ids[keep])
        return Selected(self.index, kept, self.fan_in)

    def keep_inputs(self, keep: np.ndarray) -> "Selected | None":
        """The op on the input entries where ``keep`` is true, the others being zero: a dense inner op drops the
        columns that read a removed entry; None for another inner op (its input's shape is fixed)."""
        keep = np.asarray(keep, dtype=bool)
        read = keep[self.index]
        if read.all():
            new_position = np.cumsum(keep) - 1
            return Selected(new_position[self.index], self.inner, int(keep.sum()))
        if not isinstance(self.inner, Dense):
            return None
        inner = Dense(self.inner.W[:, read], self.inner.b, self.inner.layer_id, self.inner.neuron_ids)
        return Selected((np.cumsum(keep) - 1)[self.index[read]], inner, int(keep.sum()))
