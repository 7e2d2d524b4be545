"""Big-M strengthened with the ideal single-neuron cuts of Anderson, Huchette, Ma, Tjandraatmadja and
Vielma, "Strong mixed-integer programming formulations for trained neural networks" (Math. Prog. 2020).

For a neuron ``h = max(0, w·x + b)`` whose inputs lie in the box ``L <= x <= U`` (the column bounds
of the previous layer's variables in the big-M model), with ``z`` its binary, let
``L̆_i = L_i, Ŭ_i = U_i`` where ``w_i >= 0`` and ``L̆_i = U_i, Ŭ_i = L_i`` where ``w_i < 0``. For every
subset ``I`` of the inputs::

    h <= Σ_{i∈I} w_i (x_i - L̆_i (1 - z)) + (b + Σ_{i∉I} w_i Ŭ_i) z

i.e. the row ``h - Σ_I w_i x_i - (b + Σ_I w_i L̆_i + Σ_{∉I} w_i Ŭ_i) z <= -Σ_I w_i L̆_i``. Together
with ``h >= 0, h >= w·x + b`` these describe the convex hull of the neuron's graph over the box
(``I`` = all inputs gives big-M's ``h <= g - L(1 - z)``, ``I = ∅`` gives ``h <= U z`` with the interval
``U``). There are exponentially many; the most violated one at a point ``(x*, h*, z*)`` takes
``i ∈ I`` exactly when ``w_i (x*_i - L̆_i (1 - z*)) < w_i Ŭ_i z*``, so separation is one vectorised
pass per layer.

:class:`IdealCuts` (registry name ``bigm-ideal``) adds them in rounds at the root: solve the LP
relaxation with the model's objective, add every cut violated by more than ``tol``, repeat. The cuts
are valid for the exact big-M model (``z = 1 ⇒ h = g``, ``z = 0 ⇒ h = 0``); they are not used with
the margin-relaxed rows of the network-wide model. Each cut's right-hand side is loosened by
``1e-9 (1 + |rhs|)`` so rounding in its coefficients cannot cut off a feasible point.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from exactcomp.formulations.bigm import build_bigm


def separate_ideal_cuts(milp, net, values: np.ndarray, tol: float = 1e-6):
    """The most violated ideal cut of every binary neuron at ``values`` with violation > ``tol``.

    Returns ``(A, upper)``: a CSR matrix of cut rows over ``milp``'s variables and their right-hand
    sides (rows ``A v <= upper``).
    """
    rows, uppers = [], []
    prev = milp.blocks["x"]
    i = 1
    while f"h{i}" in milp.blocks:
        neurons, z_idx = milp.blocks[f"zn{i}"], milp.blocks[f"z{i}"]
        h_idx = milp.blocks[f"h{i}"][neurons]
        if neurons.size:
            layer = net.layers[i - 1]
            # the affine map's whole input: the previous layer, plus the sources of skip connections into it
            skips = net.skips_into(i - 1)
            inputs = np.concatenate([prev, *(milp.blocks["x"] if s.source < 0 else milp.blocks[f"h{s.source + 1}"]
                                             for s in skips)])
            W = np.hstack([layer.rows(neurons), *(s.op.rows(neurons) for s in skips)])
            b = layer.b[neurons]
            lo, hi = milp.col_lower[inputs], milp.col_upper[inputs]
            L_breve, U_breve = np.where(W >= 0, lo, hi), np.where(W >= 0, hi, lo)
            z, x, h = values[z_idx], values[inputs], values[h_idx]
            inside = W * (x[None, :] - L_breve * (1 - z)[:, None])
            outside = W * U_breve * z[:, None]
            in_I = (inside < outside) & (W != 0)
            bound = np.where(in_I, inside, outside).sum(axis=1) + b * z
            violated = np.flatnonzero(h - bound > tol)
            if violated.size:
                rows.append(_cut_rows(milp.num_vars, inputs, h_idx, z_idx, W, b, L_breve, U_breve, in_I, violated,
                                      uppers))
        prev = milp.blocks[f"h{i}"]
        i += 1
    if not rows:
        return sp.csr_matrix((0, milp.num_vars)), np.zeros(0)
    return sp.vstack(rows, format="csr"), np.concatenate(uppers)


def _cut_rows(width, prev, h_idx, z_idx, W, b, L_breve, U_breve, in_I, violated, uppers):
    W_I = np.where(in_I, W, 0.0)[violated]
    const_I = (W_I * L_breve[violated]).sum(axis=1)
    z_coef = -(b[violated] + const_I + (np.where(in_I, 0.0, W) * U_breve)[violated].sum(axis=1))
    n = violated.size
    x_part = sp.coo_matrix(-W_I)
    data = np.concatenate([np.ones(n), z_coef, x_part.data])
    r = np.concatenate([np.arange(n), np.arange(n), x_part.row])
    c = np.concatenate([h_idx[violated], z_idx[violated], prev[x_part.col]])
    upper = -const_I
    uppers.append(upper + 1e-9 * (1 + np.abs(upper)))
    return sp.csr_matrix((data, (r, c)), shape=(n, width))


@dataclass(frozen=True)
class BigM:
    """The plain big-M formulation (:func:`~exactcomp.formulations.bigm.build_bigm`), no extra cuts."""

    name: str = "bigm"

    def build(self, *args, **kwargs):
        return build_bigm(*args, **kwargs)

    def strengthen(self, milp, net, backend, time_limit=None):
        return milp


@dataclass(frozen=True)
class IdealCuts(BigM):
    """Big-M plus rounds of ideal single-neuron cuts separated at the LP optimum of the model's objective."""

    name: str = "bigm-ideal"
    rounds: int = 10
    tol: float = 1e-6

    def strengthen(self, milp, net, backend, time_limit=None):
        """``milp`` with the cuts added (stops early when the LP is infeasible, no cut is violated, or
        ``time_limit`` seconds have passed)."""
        deadline = None if time_limit is None else time.perf_counter() + time_limit
        for _ in range(self.rounds):
            left = None if deadline is None else deadline - time.perf_counter()
            if left is not None and left <= 0:
                return milp
            result = backend.session(milp, relax=True).solve(time_limit=left)
            if result.x is None:
                return milp
            cuts, upper = separate_ideal_cuts(milp, net, result.x, self.tol)
            if not cuts.shape[0]:
                return milp
            milp = replace(milp, A=sp.vstack([milp.A, cuts], format="csr"),
                           row_lower=np.concatenate([milp.row_lower, np.full(upper.size, -np.inf)]),
                           row_upper=np.concatenate([milp.row_upper, upper]))
        return milp
