"""Per-neuron MILP analysis against an exact oracle: enumerate activation patterns, one LP each."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import linprog

from exactcomp.analysis import Status, analyze
from exactcomp.domain import Box
from exactcomp.formulations.bigm import build_bigm
from exactcomp.provers.per_neuron import per_neuron_analysis

from .conftest import random_network


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


@pytest.mark.parametrize("seed", range(5))
def test_per_neuron_matches_exact_oracle(seed):
    net = random_network([2, 4, 4, 1], seed=seed, bias_shift=-0.4)
    box = Box(np.array([-1.0, 0.0]), np.array([1.0, 1.5]))
    lo, hi = exact_ranges(net, box)
    result = per_neuron_analysis(net, box)
    for layer, l, h in zip(result.layers, lo, hi):
        truly_inactive = h <= -1e-5
        truly_active = l >= 1e-5
        truly_unstable = (h > 1e-5) & (l < -1e-5)
        assert np.all((layer.status == Status.INACTIVE) == truly_inactive)
        assert np.all((layer.status == Status.ACTIVE) == truly_active)
        assert np.all((layer.status == Status.UNSTABLE) == truly_unstable)
        assert np.all(layer.lower <= l + 1e-6) and np.all(layer.upper >= h - 1e-6)
    # the bounds-and-witness analysis never contradicts the exact answer
    quick = analyze(net, box)
    for layer, exact in zip(quick.layers, result.layers):
        decided = layer.status != Status.UNKNOWN
        assert np.all(layer.status[decided] == exact.status[decided])


def test_bigm_encodes_the_network():
    """Fixing the input of the big-M model forces every h to the forward-pass value."""
    from exactcomp.solvers import get_solver

    net = random_network([3, 5, 4, 2], seed=3)
    box = Box(-np.ones(3), np.ones(3))
    from exactcomp.bounds.crown import compute_bounds

    bounds = [(b.lower, b.upper) for b in compute_bounds(net, box)]
    milp = build_bigm(net, box, bounds, depth=2)
    x = np.array([0.3, -0.2, 0.9])
    _, pre = net.forward(x[None], return_preactivations=True)
    lo, hi = milp.col_lower.copy(), milp.col_upper.copy()
    lo[milp.blocks["x"]] = hi[milp.blocks["x"]] = x
    from dataclasses import replace

    for k in (1, 2):
        for sign in (1.0, -1.0):
            c = np.zeros(milp.num_vars)
            c[milp.blocks[f"h{k}"]] = sign
            r = get_solver("highs").solve(replace(milp, col_lower=lo, col_upper=hi, c=c))
            np.testing.assert_allclose(r.x[milp.blocks[f"h{k}"]], np.maximum(pre[k - 1][0], 0), atol=1e-6)
