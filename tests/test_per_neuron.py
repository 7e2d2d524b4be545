"""Per-neuron MILP analysis against an exact oracle: enumerate activation patterns, one LP each."""

from __future__ import annotations

import numpy as np
import pytest

from exactcomp.analysis import Status, analyze
from exactcomp.domain import Box
from exactcomp.formulations.bigm import build_bigm
from exactcomp.provers.per_neuron import per_neuron_analysis

from .conftest import random_network
from .oracles import exact_ranges


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
