"""Rewriter rules against brute-force forward passes of the original weights."""

from __future__ import annotations

import numpy as np
import pytest

from exactcomp.analysis import Analysis, LayerAnalysis, Status, analyze
from exactcomp.domain import Box
from exactcomp.ir.network import Dense, Network, TensorInfo
from exactcomp.io.onnx_export import to_onnx
from exactcomp.rewrite.rules import (
    compress_network, fold_active_neurons, fold_constant_neurons, independent_rows, merge_linear_layer, remove_neurons,
)

from .conftest import brute_forward, random_network, run_onnx


def make_net(Ws, bs):
    layers = [Dense(W, b, k + 1, np.arange(len(b))) for k, (W, b) in enumerate(zip(Ws, bs))]
    out = TensorInfo("y", (len(bs[-1]),), "float32")
    return Network(tuple(layers), TensorInfo("x", (Ws[0].shape[1],), "float32"), out, (out,))


def fake_analysis(net, box, statuses):
    layers = []
    for layer, status in zip(net.hidden, statuses):
        n = layer.width
        layers.append(LayerAnalysis(layer.layer_id, np.asarray(status, np.int8), np.full(n, "", object),
                                    np.zeros(n), np.zeros(n), np.full(n, -1), np.full(n, -1)))
    return Analysis(net, box, tuple(layers), np.empty((0, net.input_size)))


def samples(box, n=5000, seed=0):
    rng = np.random.default_rng(seed)
    corners = np.where(rng.integers(0, 2, size=(256, box.size)).astype(bool), box.upper, box.lower)
    return np.vstack([rng.uniform(box.lower, box.upper, size=(n, box.size)), corners])


def test_remove_inactive_neurons_exact():
    rng = np.random.default_rng(0)
    Ws = [rng.normal(size=(6, 3)), rng.normal(size=(2, 6))]
    bs = [rng.normal(size=6), rng.normal(size=2)]
    bs[0][[1, 4]] = -100.0  # dead on the unit box
    net = make_net(Ws, bs)
    box = Box(-np.ones(3), np.ones(3))
    mask = np.zeros(6, bool)
    mask[[1, 4]] = True
    small = remove_neurons(net, 0, mask)
    assert small.widths == [4, 2]
    assert list(small.layers[0].neuron_ids) == [0, 2, 3, 5]
    X = samples(box)
    np.testing.assert_allclose(small.forward(X), brute_forward(Ws, bs, X), atol=1e-12)


def test_fold_active_rank_deficient_layer():
    rng = np.random.default_rng(1)
    B = rng.normal(size=(3, 4))
    C = rng.normal(size=(4, 3))
    W1 = np.vstack([B, C @ B, rng.normal(size=(2, 4))])  # rows 3..6 depend on rows 0..2
    b1 = np.concatenate([np.full(7, 50.0), rng.normal(size=2)])  # 7 active rows, 2 free ones
    W2, b2 = rng.normal(size=(3, 9)), rng.normal(size=3)
    net = make_net([W1, W2], [b1, b2])
    box = Box(-np.ones(4), np.ones(4))
    active = np.zeros(9, bool)
    active[:7] = True
    small = fold_active_neurons(net, 0, active)
    assert small.widths == [5, 3]  # rank 3 of the 7 active rows, plus 2 others
    X = samples(box)
    np.testing.assert_allclose(small.forward(X), brute_forward([W1, W2], [b1, b2], X), rtol=1e-9, atol=1e-9)


def test_independent_rows_rejects_near_dependence():
    A = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1e-3]])
    basis, dep, C = independent_rows(A)
    assert len(basis) == 2 and len(dep) == 1
    np.testing.assert_allclose(C @ A[basis], A[dep], atol=1e-12)


def test_constant_neurons_fold():
    rng = np.random.default_rng(2)
    W1 = rng.normal(size=(4, 3))
    W1[[0, 2]] = 0.0
    b1 = np.array([2.0, 0.1, -1.0, 0.3])
    W2, b2 = rng.normal(size=(2, 4)), rng.normal(size=2)
    net = make_net([W1, W2], [b1, b2])
    small = fold_constant_neurons(net, 0)
    assert small.widths == [2, 2]
    X = samples(Box(-np.ones(3), np.ones(3)))
    np.testing.assert_allclose(small.forward(X), brute_forward([W1, W2], [b1, b2], X), atol=1e-12)


def test_merge_all_active_layer_when_smaller():
    rng = np.random.default_rng(3)
    Ws = [rng.normal(size=(10, 3)), rng.normal(size=(6, 10)), rng.normal(size=(2, 6))]
    bs = [np.full(10, 100.0), rng.normal(size=6), rng.normal(size=2)]
    net = make_net(Ws, bs)
    merged = merge_linear_layer(net, 0)
    assert merged.widths == [6, 2] and merged.parameter_count < net.parameter_count
    X = samples(Box(-np.ones(3), np.ones(3)))
    np.testing.assert_allclose(merged.forward(X), brute_forward(Ws, bs, X), rtol=1e-10, atol=1e-9)
    # a merge that would grow the model is refused
    wide = make_net([rng.normal(size=(2, 50)), rng.normal(size=(50, 2)), rng.normal(size=(1, 50))],
                    [np.full(2, 100.0), rng.normal(size=50), rng.normal(size=1)])
    assert merge_linear_layer(wide, 0).widths == wide.widths


def test_constant_network_collapses_and_exports():
    rng = np.random.default_rng(4)
    Ws = [rng.normal(size=(5, 3)) * 0.1, rng.normal(size=(4, 5)), rng.normal(size=(2, 4))]
    bs = [np.full(5, -10.0), rng.normal(size=4), rng.normal(size=2)]
    net = make_net(Ws, bs)
    box = Box(-np.ones(3), np.ones(3))
    result = analyze(net, box)
    assert np.all(result.layers[0].status == Status.INACTIVE)
    small = compress_network(net, result)
    assert len(small.layers) == 1 and small.layers[0].is_constant and small.parameter_count == 2
    X = samples(box, 200)
    expected = brute_forward(Ws, bs, X)
    np.testing.assert_allclose(small.forward(X), expected, atol=1e-12)
    np.testing.assert_allclose(run_onnx(to_onnx(small), X)[0], expected, rtol=1e-6, atol=1e-6)


def test_verify_command_accepts_constant_model(tmp_path):
    """The CI check works when the compressed model no longer reads its input."""
    import json

    import onnx

    from exactcomp.cli.main import main

    from .conftest import onnx_mlp

    rng = np.random.default_rng(4)
    Ws = [rng.normal(size=(5, 3)) * 0.1, rng.normal(size=(2, 5))]
    bs = [np.full(5, -10.0), rng.normal(size=2)]
    onnx.save(onnx_mlp(Ws, bs), str(tmp_path / "m.onnx"))
    (tmp_path / "box.json").write_text(json.dumps({"lower": -1, "upper": 1}))
    args = ["--domain", str(tmp_path / "box.json")]
    assert main(["compress", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "c.onnx"), "-q", *args]) == 0
    assert main(["verify", str(tmp_path / "m.onnx"), str(tmp_path / "c.onnx"), *args]) == 0


def test_unknown_and_unstable_neurons_are_kept():
    net = random_network([3, 5, 4, 2], seed=5)
    box = Box(-np.ones(3), np.ones(3))
    statuses = [[Status.UNKNOWN] * 5, [Status.UNSTABLE] * 4]
    assert compress_network(net, fake_analysis(net, box, statuses)).widths == net.widths


@pytest.mark.parametrize("seed", range(8))
def test_compress_random_networks_exact(seed):
    net = random_network([4, 12, 12, 10, 3], seed=seed, bias_shift=[-1.5, 1.5][seed % 2], scale=0.5)
    box = Box(np.zeros(4), np.ones(4))
    result = analyze(net, box)
    small = compress_network(net, result)
    assert small.parameter_count <= net.parameter_count
    X = samples(box, seed=seed)
    Ws, bs = [l.W for l in net.layers], [l.b for l in net.layers]
    np.testing.assert_allclose(small.forward(X), brute_forward(Ws, bs, X), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(run_onnx(to_onnx(small), X)[0], brute_forward(Ws, bs, X), rtol=1e-4, atol=1e-4)


def test_compressing_a_compressed_network_again_is_exact():
    """An analysis of a compressed network follows its (fewer) positions while its neurons keep their
    original ids: the rewrite must map one to the other (it used to index statuses by original id)."""
    net = random_network([4, 30, 30, 20, 3], seed=5, bias_shift=-0.8)
    box = Box(np.zeros(4), np.ones(4))
    once = compress_network(net, analyze(net, box))
    assert any(layer.width < 30 for layer in once.hidden[:2])      # neurons went, ids now have gaps
    twice = compress_network(once, analyze(once, box))
    x = box.sample(5000, np.random.default_rng(0))
    np.testing.assert_allclose(twice.forward(x), net.forward(x), atol=1e-9)
