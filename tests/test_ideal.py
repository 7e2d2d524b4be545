"""The ideal single-neuron cuts (formulation ``bigm-ideal``): valid at every true network point,
never above-the-optimum violations, and a tighter LP bound than plain big-M."""

from __future__ import annotations

import numpy as np

from exactcomp.domain import Box
from exactcomp.formulations import get_formulation, separate_ideal_cuts
from exactcomp.formulations.bigm import build_bigm, complete_solution, preactivation_objective
from exactcomp.solvers import SolveStatus, get_solver

from .conftest import random_network


def _model(seed):
    net = random_network([3, 8, 6, 1], seed=seed, bias_shift=-0.2)
    box = Box(-np.ones(3), np.ones(3))
    from exactcomp.bounds.crown import compute_bounds

    bounds = [(b.lower, b.upper) for b in compute_bounds(net, box)]
    milp = build_bigm(net, box, bounds, depth=2)
    c, off = preactivation_objective(milp, net, 2, 0)
    return net, box, milp.with_objective(c, off)


def test_cuts_hold_at_every_true_network_point():
    rng = np.random.default_rng(0)
    for seed in range(4):
        net, box, milp = _model(seed)
        relaxed = get_solver("highs").session(milp, relax=True).solve()
        cuts, upper = separate_ideal_cuts(milp, net, relaxed.x)
        points = np.vstack([complete_solution(milp, net, x) for x in box.sample(2000, rng)])
        assert np.all(cuts @ points.T <= upper[:, None] + 1e-9)


def test_cuts_tighten_the_lp_bound_but_not_below_the_optimum():
    tightened = 0
    for seed in range(4):
        net, box, milp = _model(seed)
        highs = get_solver("highs")
        optimum = highs.solve(milp)
        assert optimum.status == SolveStatus.OPTIMAL
        plain = highs.session(milp, relax=True).solve().objective
        strong = get_formulation("bigm-ideal").strengthen(milp, net, highs)
        bound = highs.session(strong, relax=True).solve().objective
        assert optimum.objective - 1e-7 <= bound <= plain + 1e-9
        assert abs(highs.solve(strong).objective - optimum.objective) < 1e-6   # same MILP optimum
        tightened += bound < plain - 1e-6
    assert tightened >= 2
