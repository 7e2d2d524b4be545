"""The region walk (LP over activation regions) against independent oracles: exact per-region
maxima by dense sampling, exact global ranges over every activation pattern, float64 forward passes."""

from __future__ import annotations

import numpy as np
import pytest

from exactcomp.analysis import AnalysisOptions, analyze
from exactcomp.domain import Box
from exactcomp.witnesses.region_walk import region_lp, region_walk

from .conftest import random_network
from .oracles import CASES, WEAK_SCREEN, check_against_oracle
from .oracles import exact_ranges


def _patterns(net, X, k):
    _, pre = net.forward(X, return_preactivations=True)
    return np.hstack([pre[j] > 0 for j in range(k)]), pre


@pytest.mark.parametrize("seed", range(6))
def test_region_lp_is_the_maximum_over_its_region(seed):
    """No sampled point of the region beats the LP optimum, and its optimum is a real point whose
    value the forward pass confirms (up to rounding) and that lies in the box."""
    net = random_network([2, 5, 4, 3, 1], seed=seed, bias_shift=-0.2)
    box = Box(-np.ones(2), np.ones(2))
    X = box.sample(50_000, np.random.default_rng(seed))
    k = 2
    patterns, pre = _patterns(net, X, k)
    start = int(np.argmax(pre[k][:, 0]))
    same = (patterns == patterns[start]).all(axis=1)
    phases = [pre[j][start] > 0 for j in range(k)]
    for sign in (1.0, -1.0):
        x, value = region_lp(net, box, (k, 0, sign), phases)
        assert x is not None and np.all(x >= box.lower) and np.all(x <= box.upper)
        assert value >= (sign * pre[k][same, 0]).max() - 1e-9


@pytest.mark.parametrize("seed", range(6))
def test_the_walk_never_loses_ground_and_stays_below_the_exact_maximum(seed):
    net = random_network([2, 4, 4, 2, 1], seed=20 + seed, bias_shift=-0.3)
    box = Box(-np.ones(2), np.linspace(0.5, 1.5, 2))
    lo, hi = exact_ranges(net, box)
    rng = np.random.default_rng(seed)
    for k in (1, 2):
        for t in range(net.hidden[k].width):
            for sign in (1.0, -1.0):
                start = box.sample(1, rng)[0]
                _, pre0 = net.forward(start[None], return_preactivations=True)
                x, value = region_walk(net, box, (k, t, sign), start)
                _, pre = net.forward(x[None], return_preactivations=True)
                assert value == pytest.approx(sign * pre[k][0, t], abs=0)   # the forward pass, not the LP
                assert value >= sign * pre0[k][0, t]
                exact = hi[k][t] if sign > 0 else -lo[k][t]
                assert value <= exact + 1e-9


def test_a_first_layer_walk_is_the_exact_maximum():
    net = random_network([3, 4, 1], seed=5)
    box = Box(-np.ones(3), np.ones(3))
    lo, hi = exact_ranges(net, box)
    for t in range(4):
        _, value = region_walk(net, box, (0, t, 1.0), np.zeros(3))
        assert value == pytest.approx(hi[0][t], abs=1e-9)


@pytest.mark.parametrize("sizes,seed,shift", CASES)
def test_a_schedule_with_the_walk_matches_the_exact_oracle(sizes, seed, shift):
    net = random_network(sizes, seed=seed, bias_shift=shift)
    box = Box(-np.ones(sizes[0]), np.linspace(0.5, 1.5, sizes[0]))
    lo, hi = exact_ranges(net, box)
    result = analyze(net, box, AnalysisOptions(provers=("bounds", "witnesses", "region-walk", "bab"), **WEAK_SCREEN))
    check_against_oracle(result, lo, hi)
    assert result.stats.get("region_walks", 0) > 0 or all(
        not (layer.status == 0).any() for layer in result.layers)
