"""Independent computations the tests compare exactcomp against, shared by several test modules.

* :func:`exact_ranges`: exact min/max of every hidden pre-activation, by enumerating activation patterns (on each
  one the network is affine) and one LP per region (scipy), for tiny networks;
* :func:`check_against_oracle`: an analysis's statuses against those ranges, outside the margin band;
* :func:`knapsack` and :func:`brute_force`: small MILPs with optima known by enumeration;
* ``WEAK_SCREEN``, ``MILP_ONLY``, ``CASES``: screening options, a schedule and tiny networks the oracle tests share.
"""

from __future__ import annotations

import itertools

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from exactcomp.analysis import DEFAULT_MARGIN, Status
from exactcomp.formulations.milp import MILP


def exact_ranges(net, box):
    """Exact min/max of every hidden pre-activation: on each activation pattern the network is affine
    (every path, skip connections included, written out with dense matrices); maximise/minimise over
    each non-empty region with scipy's LP."""
    widths = [layer.width for layer in net.hidden]
    lo, hi = [np.full(w, np.inf) for w in widths], [np.full(w, -np.inf) for w in widths]
    n = box.size
    for pattern in itertools.product([0, 1], repeat=sum(widths)):
        maps = {-1: (np.eye(n), np.zeros(n))}   # h_j = M x + c on this region
        rows, rhs, exprs, start = [], [], [], 0
        for i, layer in enumerate(net.hidden):
            M, c = maps[i - 1]
            W = layer.matrix().toarray()
            G, g0 = W @ M, W @ c + layer.b
            for skip in net.skips_into(i):
                S = skip.op.matrix().toarray()
                Ms, cs = maps[skip.source]
                G, g0 = G + S @ Ms, g0 + S @ cs
            s = np.array(pattern[start:start + layer.width])
            start += layer.width
            sign = np.where(s == 1, -1.0, 1.0)
            rows.append(sign[:, None] * G)
            rhs.append(np.where(s == 1, g0, -g0))
            exprs.append((G, g0))
            maps[i] = (G * s[:, None], g0 * s)
        A, b = np.vstack(rows), np.concatenate(rhs)
        bounds = list(zip(box.lower, box.upper))
        if linprog(np.zeros(n), A_ub=A, b_ub=b, bounds=bounds, method="highs").status != 0:
            continue
        for k, (G, g0) in enumerate(exprs):
            for j in range(G.shape[0]):
                for direction in (1.0, -1.0):
                    r = linprog(-direction * G[j], A_ub=A, b_ub=b, bounds=bounds, method="highs")
                    if r.status == 0:
                        value = G[j] @ r.x + g0[j]
                        lo[k][j], hi[k][j] = min(lo[k][j], value), max(hi[k][j], value)
    return lo, hi


#: No witness search beyond the symbolic-bound corners, so the LP and MILP phases must do the work.
WEAK_SCREEN = dict(random_points=0, gradient_restarts=0, gradient_steps=0)
#: The MILP route alone (no branch and bound), for tests of the MILP machinery.
MILP_ONLY = ("bounds", "witnesses", "milp")

CASES = [([2, 4, 4, 1], 0, -0.4), ([2, 5, 3, 1], 1, -0.6), ([3, 3, 3, 3, 1], 2, -0.5), ([2, 4, 4, 1], 3, 0.3)]


def check_against_oracle(result, lo, hi, margin=DEFAULT_MARGIN):
    """Every neuron whose exact range ``[lo, hi]`` keeps clear of the margin band is decided, as the range says."""
    for layer, l, h in zip(result.layers, lo, hi):
        clear = (np.abs(h) > 2 * margin) & (np.abs(l) > 2 * margin)  # outside the margin band
        assert np.all((layer.status == Status.INACTIVE)[clear] == (h <= 0)[clear])
        assert np.all((layer.status == Status.ACTIVE)[clear] == (l >= 0)[clear])
        assert np.all((layer.status == Status.UNSTABLE)[clear] == ((h > 0) & (l < 0))[clear])
        assert not np.any(layer.status[clear] == Status.UNKNOWN)


def knapsack(seed: int, n: int = 8) -> MILP:
    """A two-constraint 0/1 knapsack (maximise): small enough for :func:`brute_force`."""
    rng = np.random.default_rng(seed)
    weights, values = rng.integers(1, 10, size=(2, n)), rng.integers(1, 10, size=n).astype(float)
    return MILP(c=values, A=sp.csr_matrix(weights.astype(float)), row_lower=np.full(2, -np.inf),
                row_upper=np.array([15.0, 18.0]), col_lower=np.zeros(n), col_upper=np.ones(n),
                integrality=np.ones(n, bool))


def brute_force(milp: MILP) -> float:
    """The optimum of a 0/1 maximisation MILP with ``A x <= row_upper``, by enumerating every point."""
    best = -np.inf
    A = milp.A.toarray()
    for bits in itertools.product([0.0, 1.0], repeat=milp.num_vars):
        x = np.array(bits)
        if np.all(A @ x <= milp.row_upper + 1e-9):
            best = max(best, milp.c @ x)
    return best
