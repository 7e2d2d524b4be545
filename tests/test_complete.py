"""The complete strategies (auto, network, per-neuron) against an exact oracle and each other."""

from __future__ import annotations

import numpy as np
import pytest

from exactcomp.analysis import AnalysisOptions, Status, analyze
from exactcomp.domain import Box

from .conftest import random_network
from .oracles import CASES, MILP_ONLY, WEAK_SCREEN, check_against_oracle, exact_ranges

@pytest.mark.parametrize("sizes,seed,shift", CASES)
@pytest.mark.parametrize("strategy", ["auto", "network", "per-neuron"])
@pytest.mark.parametrize("screen", ["weak", "default"])
def test_strategies_match_exact_oracle(sizes, seed, shift, strategy, screen):
    net = random_network(sizes, seed=seed, bias_shift=shift)
    box = Box(-np.ones(sizes[0]), np.linspace(0.5, 1.5, sizes[0]))
    lo, hi = exact_ranges(net, box)
    options = AnalysisOptions(strategy=strategy, **(WEAK_SCREEN if screen == "weak" else {}))
    result = analyze(net, box, options)
    check_against_oracle(result, lo, hi)
    # unstable claims carry witnesses inside the box with the claimed signs (float64 forward pass)
    _, pre = net.forward(result.witnesses, return_preactivations=True) if len(result.witnesses) else (None, None)
    assert box.contains(result.witnesses).all()
    for k, layer in enumerate(result.layers):
        for j in np.flatnonzero(layer.status == Status.UNSTABLE):
            assert pre[k][layer.witness_pos[j], j] > 0 and pre[k][layer.witness_neg[j], j] < 0


def test_network_and_per_neuron_agree_on_a_wider_net():
    net = random_network([4, 12, 10, 6, 2], seed=3, bias_shift=-0.8, scale=0.7)
    box = Box(np.zeros(4), np.ones(4))
    results = {s: analyze(net, box, AnalysisOptions(strategy=s, lp_tightening=s != "network", **WEAK_SCREEN))
               for s in ("network", "per-neuron", "auto")}
    for a, b in zip(results["network"].layers, results["per-neuron"].layers):
        np.testing.assert_array_equal(a.status, b.status)
    for a, b in zip(results["auto"].layers, results["per-neuron"].layers):
        np.testing.assert_array_equal(a.status, b.status)
    assert results["network"].stats["milp_rounds"] >= 2   # a witness round, then the proof round
    assert sum(layer.methods().get("milp", 0) for layer in results["network"].layers) >= 3
    # no stable claim is contradicted by dense sampling
    X = box.sample(200_000, np.random.default_rng(1))
    _, pre = net.forward(X, return_preactivations=True)
    for layer, g in zip(results["network"].layers, pre):
        assert np.all(g[:, layer.status == Status.INACTIVE] <= 0)
        assert np.all(g[:, layer.status == Status.ACTIVE] >= 0)


def test_methods_name_how_each_neuron_was_decided():
    net = random_network([3, 6, 6, 1], seed=4, bias_shift=-0.5)
    box = Box(-np.ones(3), np.ones(3))
    result = analyze(net, box, AnalysisOptions(**WEAK_SCREEN))
    proofs = {"interval", "symbolic", "lp", "milp", "alpha", "bab", "input_split"}
    allowed = {Status.ACTIVE: proofs, Status.INACTIVE: proofs,
               Status.UNSTABLE: {"witness"}}
    for layer in result.layers:
        for status, method in zip(layer.status, layer.method):
            assert method in allowed[Status(int(status))]


def test_time_limit_leaves_unknowns_that_are_kept():
    """A zero time budget for the MILP phases: undecided neurons are unknown (time_limit) and kept."""
    from exactcomp.rewrite.rules import compress_network

    net = random_network([3, 8, 8, 1], seed=5, bias_shift=-0.3)
    box = Box(-np.ones(3), np.ones(3))
    result = analyze(net, box, AnalysisOptions(time_limit=1e-9, **WEAK_SCREEN))
    reasons = {}
    for layer in result.layers:
        for reason, count in layer.unknown_reasons().items():
            reasons[reason] = reasons.get(reason, 0) + count
    assert set(reasons) <= {"time_limit"}
    assert reasons, "expected undecided neurons with a zero time budget"
    small = compress_network(net, result)
    X = box.sample(5000, np.random.default_rng(0))
    np.testing.assert_allclose(small.forward(X), net.forward(X), atol=1e-9)


def test_margin_keeps_neurons_near_zero():
    """g = relu(x) + relu(-x) - 1 - τ/2 on [-1, 1] has maximum -τ/2: neither proven stable (the proof
    needs max g <= -τ) nor unstable, so it is unknown (near_zero) and kept."""
    from exactcomp.ir.network import Dense, Network, TensorInfo

    tau = 1e-3
    layers = (Dense(np.array([[1.0], [-1.0]]), np.zeros(2), 1, np.arange(2)),
              Dense(np.ones((1, 2)), np.array([-1.0 - tau / 2]), 2, np.arange(1)),
              Dense(np.ones((1, 1)), np.zeros(1), 3, np.arange(1)))
    info = TensorInfo("y", (1,), "float32")
    net = Network(layers, TensorInfo("x", (1,), "float32"), info, (info,))
    for strategy in ("auto", "network", "per-neuron"):
        result = analyze(net, Box(-np.ones(1), np.ones(1)), AnalysisOptions(margin=tau, symbolic=False, strategy=strategy))
        second = result.layers[1]
        assert second.status[0] == Status.UNKNOWN and second.method[0] == "near_zero", strategy
        assert np.all(result.layers[0].status == Status.UNSTABLE)


@pytest.mark.parametrize("seed,shift", [(3, -0.8), (6, -0.5), (14, -0.5)])
def test_concurrent_per_neuron_checks_match_serial_ones(seed, shift):
    """``jobs`` > 1 solves the per-neuron MILPs of a layer in threads: same decisions as one by one."""
    net = random_network([4, 12, 10, 6, 2], seed=seed, bias_shift=shift, scale=0.7)
    box = Box(np.zeros(4), np.ones(4))
    serial, threaded = (analyze(net, box, AnalysisOptions(jobs=jobs, provers=MILP_ONLY, **WEAK_SCREEN))
                        for jobs in (1, 3))
    assert threaded.stats["per_neuron_milps"] >= 4
    for a, b in zip(serial.layers, threaded.layers):
        np.testing.assert_array_equal(a.status, b.status)
    _, pre = net.forward(box.sample(100_000, np.random.default_rng(seed)), return_preactivations=True)
    for layer, g in zip(threaded.layers, pre):
        assert np.all(g[:, layer.status == Status.INACTIVE] <= 0)
        assert np.all(g[:, layer.status == Status.ACTIVE] >= 0)


@pytest.mark.parametrize("seed,shift", [(3, -0.8), (14, -0.5)])
def test_ideal_cut_formulation_decides_like_plain_bigm(seed, shift):
    net = random_network([4, 12, 10, 6, 2], seed=seed, bias_shift=shift, scale=0.7)
    box = Box(np.zeros(4), np.ones(4))
    plain, ideal = (analyze(net, box, AnalysisOptions(formulation=f, provers=MILP_ONLY, **WEAK_SCREEN))
                    for f in ("bigm", "bigm-ideal"))
    assert ideal.stats["per_neuron_milps"] >= 3
    for a, b in zip(plain.layers, ideal.layers):
        np.testing.assert_array_equal(a.status, b.status)


def test_unknown_formulation_is_a_clear_error():
    from exactcomp.errors import ExactcompError

    net = random_network([2, 3, 1], seed=0)
    with pytest.raises(ExactcompError, match="unknown formulation 'nope'"):
        analyze(net, Box(-np.ones(2), np.ones(2)), AnalysisOptions(formulation="nope"))
