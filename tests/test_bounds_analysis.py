"""Bounds are sound (never contradicted by dense sampling); stability claims and witnesses hold."""

from __future__ import annotations

import numpy as np
import pytest

from exactcomp.analysis import AnalysisOptions, Status, analyze
from exactcomp.bounds.crown import compute_bounds, interval_bounds
from exactcomp.domain import Box

from .conftest import brute_forward, random_network


def dense_preactivations(net, box, count=200_000, seed=9):
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.uniform(box.lower, box.upper, size=(count, box.size)),
                   np.where(rng.integers(0, 2, size=(4096, box.size)).astype(bool), box.upper, box.lower)])
    Ws = [l.W for l in net.layers]
    bs = [l.b for l in net.layers]
    pre, h = [], X
    for W, b in zip(Ws[:-1], bs[:-1]):  # independent re-implementation
        g = h @ W.T + b
        pre.append(g)
        h = np.maximum(g, 0)
    return pre


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("sizes", [[2, 6, 6, 2], [3, 10, 8, 8, 3]])
def test_bounds_contain_sampled_values(sizes, seed):
    net = random_network(sizes, seed=seed, bias_shift=-0.3)
    box = Box(np.full(sizes[0], -1.0), np.linspace(0.5, 2.0, sizes[0]))
    bounds = compute_bounds(net, box)
    for b, g in zip(bounds, dense_preactivations(net, box)):
        assert np.all(g.min(axis=0) >= b.lower)
        assert np.all(g.max(axis=0) <= b.upper)
        assert np.all(b.lower >= b.interval_lower - 1e-9) and np.all(b.upper <= b.interval_upper + 1e-9)


def test_symbolic_tighter_than_interval_somewhere():
    net = random_network([3, 12, 12, 12, 2], seed=3)
    box = Box(-np.ones(3), np.ones(3))
    bounds = compute_bounds(net, box)
    deep = bounds[-1]
    assert np.any(deep.upper < deep.interval_upper - 1e-6)
    interval = interval_bounds(net, box)
    np.testing.assert_allclose(interval[0][1], bounds[0].interval_upper)


@pytest.mark.parametrize("seed", range(6))
def test_stability_claims_never_contradicted(seed):
    net = random_network([2, 8, 8, 8, 2], seed=seed, bias_shift=-0.5)
    box = Box(np.array([-1.0, 0.0]), np.array([1.0, 2.0]))
    result = analyze(net, box, AnalysisOptions(random_points=256, gradient_steps=20))
    pre = dense_preactivations(net, box, count=100_000)
    for layer, g in zip(result.layers, pre):
        inactive = layer.status == Status.INACTIVE
        active = layer.status == Status.ACTIVE
        assert np.all(g[:, inactive] <= 0)
        assert np.all(g[:, active] >= 0)


@pytest.mark.parametrize("seed", range(4))
def test_unstable_neurons_carry_witnesses_in_box(seed):
    net = random_network([3, 10, 10, 2], seed=seed)
    box = Box(-np.ones(3), np.ones(3))
    result = analyze(net, box)
    W = result.witnesses
    assert np.all(box.contains(W))
    for k, layer in enumerate(result.layers):
        idx = np.flatnonzero(layer.status == Status.UNSTABLE)
        assert np.all(layer.witness_pos[idx] >= 0) and np.all(layer.witness_neg[idx] >= 0)
        for i in idx:
            g_pos = _preact(net, W[layer.witness_pos[i]], k)[i]
            g_neg = _preact(net, W[layer.witness_neg[i]], k)[i]
            assert g_pos > 0 > g_neg
        undecided = layer.status == Status.UNKNOWN
        assert np.all(layer.method[undecided] == "")


def _preact(net, x, k):
    h = x
    for layer in net.layers[:k]:
        h = np.maximum(layer.W @ h + layer.b, 0)
    return net.layers[k].W @ h + net.layers[k].b


def test_complete_on_tiny_network_by_sampling_oracle():
    """On a 1-input net the exact pre-activation ranges are found by a fine grid."""
    net = random_network([1, 6, 6, 1], seed=11)
    box = Box(np.array([-2.0]), np.array([2.0]))
    result = analyze(net, box)
    X = np.linspace(-2, 2, 400_001)[:, None]
    Ws, bs = [l.W for l in net.layers], [l.b for l in net.layers]
    h = X
    for k, layer in enumerate(result.layers):
        g = h @ Ws[k].T + bs[k]
        truly_unstable = (g.max(0) > 1e-9) & (g.min(0) < -1e-9)
        assert np.all((layer.status == Status.UNSTABLE) == truly_unstable)
        h = np.maximum(g, 0)
    np.testing.assert_allclose(net.forward(X[:5]), brute_forward(Ws, bs, X[:5]))
