"""Readers that select entries: a max pooling whose winners are fixed becomes a selection, a dense reader of a
convolution reads only the entries that are not constant on the domain, and a convolution channel that is
constant on the domain (not only a zero kernel) folds into its reader. Checked against brute force (argmax of
a dominant pattern, corners of the free inputs, finite differences), float64 forward passes, onnxruntime, and
the torch engine against the float64 split bound."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from exactcomp.analysis import Status, analyze
from exactcomp.domain import Box
from exactcomp.ir.conv import Conv
from exactcomp.ir.lowering import fixed_winners, lower_max_pools, raise_max_pools
from exactcomp.ir.maxpool import MaxPoolLayer, PoolLevel
from exactcomp.ir.network import Dense, Network, TensorInfo
from exactcomp.ir.select import Selected
from exactcomp.io.onnx_export import to_onnx
from exactcomp.io.onnx_import import import_model
from exactcomp.rewrite.rules import compress_network

from .conftest import assert_engine_matches_split_bound, run_onnx
from .test_maxpool import _random_pool, _raised_network


def _pool_network(pool, rng):
    """identity (inputs >= 0, so h = x) -> max pool -> dense -> dense: the comparison levels of ``pool`` on ``x``."""
    n = pool.fan_in
    first = Dense(np.eye(n), np.zeros(n), 1, np.arange(n))
    mp = MaxPoolLayer(pool, tuple(range(2, 2 + pool.depth)))
    nid = 2 + pool.depth
    reader = Dense(rng.normal(size=(4, pool.width)), rng.normal(size=4), nid, np.arange(4))
    out = Dense(rng.normal(size=(2, 4)), rng.normal(size=2), nid + 1, np.arange(2))
    return lower_max_pools(Network((first, mp, reader, out), TensorInfo("x", pool.in_shape, "float64"),
                                   TensorInfo("y", (2,), "float64"), (TensorInfo("y", (2,), "float64"),),
                                   compute_dtype="float64"))


def _sampled_level_signs(net, pool, x):
    pre = net.forward(x, return_preactivations=True)[1]
    levels = pre[1:1 + pool.depth]
    return [(g >= 0).all(axis=0) for g in levels], [(g <= 0).all(axis=0) for g in levels]


def test_fixed_winners_are_the_argmax_of_a_dominant_pattern_and_sound_when_partial():
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(60):
        pool = _random_pool(rng, (2, int(rng.integers(3, 7)), int(rng.integers(3, 7))))
        if pool is None:
            continue
        net = _pool_network(pool, rng)
        # distinct values plus noise below half the smallest gap: every comparison has one sign on all samples
        base = rng.permutation(pool.fan_in).astype(float)
        x = base + rng.uniform(-0.4, 0.4, size=(200, pool.fan_in))
        winners = fixed_winners(pool, *_sampled_level_signs(net, pool, x))
        c, area = pool.in_shape[0], pool.in_shape[1] * pool.in_shape[2]
        expected = [ch * area + taps[np.argmax(base[ch * area + taps])] for ch in range(c) for taps in pool.windows]
        np.testing.assert_array_equal(winners, expected)
        # wide noise: some winners open; the fixed ones are the maximum on every sample
        x = rng.uniform(0, 1, size=(300, pool.fan_in)) + base * 0.02
        winners = fixed_winners(pool, *_sampled_level_signs(net, pool, x))
        fixed = winners >= 0
        np.testing.assert_array_equal(pool.apply(x)[:, fixed], x[:, winners[fixed]])
        checked += 1
    assert checked > 20


def _box_around(net, x0, eps):
    return Box(np.clip(x0 - eps, 0, 1), np.clip(x0 + eps, 0, 1))


@pytest.mark.parametrize("reader,residual", [("conv", False), ("dense", False), ("conv", True)])
def test_max_pooling_with_fixed_winners_becomes_a_selection(reader, residual):
    rng = np.random.default_rng(4)
    raised = _raised_network(rng, channels=3, shape=(6, 6), reader=reader, residual=residual, dtype="float32")
    net = lower_max_pools(raised)
    x0 = rng.uniform(0.2, 0.8, size=net.input_size)
    box = _box_around(net, x0, 1e-4)                    # a tiny box: every comparison keeps its sign
    small = compress_network(net, analyze(net, box))
    assert not any(isinstance(x, (PoolLevel, MaxPoolLayer)) for x in small.layers)
    assert any(isinstance(x, Selected) for x in [*small.layers, *(s.op for s in small.skips)])
    x = box.sample(3000, rng)
    np.testing.assert_allclose(small.forward(x), net.forward(x), rtol=1e-12, atol=1e-10)
    model = to_onnx(small)
    ops = [n.op_type for n in model.graph.node]
    assert "MaxPool" not in ops and "Gather" in ops
    np.testing.assert_allclose(run_onnx(model, x)[0].reshape(len(x), -1), net.forward(x), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(import_model(model).forward(x), small.forward(x), rtol=1e-6, atol=1e-6)
    # over the unit box the winners are open: the pooling stays, and the function is the same
    wide = Box(np.zeros(net.input_size), np.ones(net.input_size))
    kept = compress_network(net, analyze(net, wide))
    assert any(isinstance(x, MaxPoolLayer) for x in raise_max_pools(kept).layers)
    x = wide.sample(3000, rng)
    np.testing.assert_allclose(kept.forward(x), net.forward(x), rtol=1e-12, atol=1e-9)


def _patch_cnn(rng, dtype="float64"):
    """conv 1x8x8 -> 3x6x6 (no padding, positive biases: no channel is constant) -> dense 6 -> dense 2."""
    conv = Conv(rng.normal(size=(3, 1, 3, 3)), rng.uniform(0.1, 0.5, size=3), (1, 8, 8), 1, np.arange(108))
    hidden = Dense(rng.normal(size=(6, 108)), rng.normal(size=6), 2, np.arange(6))
    out = Dense(rng.normal(size=(2, 6)), rng.normal(size=2), 3, np.arange(2))
    return Network((conv, hidden, out), TensorInfo("x", (1, 8, 8), dtype), TensorInfo("y", (2,), dtype),
                   (TensorInfo("y", (2,), dtype),), compute_dtype=dtype)


def _patch_box(rng, free, size=64):
    fixed = rng.uniform(0, 1, size=size)
    lower, upper = fixed.copy(), fixed.copy()
    lower[free], upper[free] = 0.0, 1.0
    return Box(lower, upper)


def _constant_entries_oracle(net, box, free):
    """Entries of the convolution's output constant on the box, by brute force: unchanged when any free
    input moves (finite differences), or never positive at any corner of the free inputs (a maximum of an
    affine map over a box is at a corner)."""
    conv = net.layers[0]
    base = box.lower.copy()
    moved = np.zeros(conv.width, dtype=bool)
    for i in free:
        x = base.copy()
        x[i] = 1.0
        moved |= conv.apply(x[None])[0] != conv.apply(base[None])[0]
    corners = np.repeat(base[None], 2 ** len(free), axis=0)
    corners[:, free] = np.array(list(itertools.product([0.0, 1.0], repeat=len(free))))
    never_positive = (conv.apply(corners) <= 0).all(axis=0)
    return ~moved | never_positive


def test_dense_reader_of_a_convolution_reads_only_the_free_entries():
    for seed in range(4):
        rng = np.random.default_rng(seed)
        net = _patch_cnn(rng)
        free = np.array([r * 8 + c for r in (3, 4, 5) for c in (3, 4, 5)])
        box = _patch_box(rng, free)
        result = analyze(net, box)
        small = compress_network(net, result)
        reader = small.layers[1]
        assert isinstance(reader, Selected) and small.layers[0].channels == 3
        expected = np.flatnonzero(~_constant_entries_oracle(net, box, free))
        np.testing.assert_array_equal(reader.index, expected)
        assert reader.inner.W.shape[1] == expected.size and small.parameter_count < net.parameter_count
        x = box.sample(3000, rng)
        np.testing.assert_allclose(small.forward(x), net.forward(x), rtol=1e-12, atol=1e-10)
        # the selected layer through every analysis: torch engine = float64 split bound; compressing again is exact
        assert_engine_matches_split_bound(small, box, [(1, 0, 1.0), (1, 3, -1.0)], seed=seed)
        again = compress_network(small, analyze(small, box))
        np.testing.assert_allclose(again.forward(x), net.forward(x), rtol=1e-12, atol=1e-10)
        assert isinstance(again.layers[1], Selected) and again.parameter_count <= small.parameter_count


def test_selected_reader_exports_imports_and_matches_onnxruntime():
    rng = np.random.default_rng(7)
    net = _patch_cnn(rng, dtype="float32")
    free = np.array([0, 1, 8, 9, 27, 28, 35, 36])
    box = _patch_box(rng, free)
    small = compress_network(net, analyze(net, box))
    assert isinstance(small.layers[1], Selected)
    model = to_onnx(small)
    x = box.sample(2000, rng)
    np.testing.assert_allclose(run_onnx(model, x)[0].reshape(len(x), -1), net.forward(x), rtol=1e-4, atol=1e-4)
    back = import_model(model)                          # Gather -> Gemm reads back as the same selection
    assert isinstance(back.layers[1], Selected) and back.parameter_count == small.parameter_count
    np.testing.assert_allclose(back.forward(x), small.forward(x), rtol=1e-6, atol=1e-6)


def test_channel_constant_on_the_box_folds_into_a_dense_reader_not_a_padded_convolution():
    """Channel 1's kernel reads only the top-left tap: on a box fixing every input but the last column, its
    positions either read only fixed inputs (constant, different values) or are proven inactive: the channel
    is constant, folded into a dense reader; a padded convolution reader sees a non-uniform term: kept."""
    rng = np.random.default_rng(5)
    kernel = rng.normal(size=(3, 1, 3, 3))
    kernel[1] = 0.0
    kernel[1, 0, 0, 0] = 1.0
    conv = Conv(kernel, np.array([0.3, 0.2, 0.4]), (1, 6, 6), 1, np.arange(3 * 16))
    free = np.arange(5, 36, 6)                         # the last column: never read by channel 1's tap (0, 0)
    box = _patch_box(rng, free, 36)
    for reader in ("dense", "padded_conv"):
        if reader == "dense":
            nxt = Dense(rng.normal(size=(4, 48)), rng.normal(size=4), 2, np.arange(4))
        else:
            nxt = Conv(rng.normal(size=(2, 3, 3, 3)), rng.normal(size=2), (3, 4, 4), 2, np.arange(32), pads=(1, 1, 1, 1))
        out = Dense(rng.normal(size=(2, nxt.width)), rng.normal(size=2), 3, np.arange(2))
        net = Network((conv, nxt, out), TensorInfo("x", (1, 6, 6), "float64"), TensorInfo("y", (2,), "float64"),
                      (TensorInfo("y", (2,), "float64"),), compute_dtype="float64")
        result = analyze(net, box)
        small = compress_network(net, result)
        x = box.sample(2000, rng)
        np.testing.assert_allclose(small.forward(x), net.forward(x), rtol=1e-12, atol=1e-10)
        g = net.forward(x, return_preactivations=True)[1][0].reshape(len(x), 3, 16)
        assert np.ptp(np.maximum(g[:, 1], 0), axis=0).max() == 0 and np.ptp(g[:, 1, 0]) == 0   # constant, by sampling
        assert small.layers[0].channels == (2 if reader == "dense" else 3)
        assert (result.layer(1).status.reshape(3, 16)[1] != Status.UNKNOWN).all()


def test_dense_reader_of_a_max_pooling_reads_only_its_free_entries():
    """conv -> max pool 2x2 -> dense: a pooled entry whose window's taps are all constant on the box is constant;
    the dense reader drops exactly those columns (oracle: finite differences and corners, per tap)."""
    from exactcomp.ir.maxpool import MaxPool

    for seed in range(3):
        rng = np.random.default_rng(seed)
        conv = Conv(rng.normal(size=(3, 1, 3, 3)), rng.uniform(0.1, 0.5, size=3), (1, 8, 8), 1, np.arange(108))
        pool = MaxPool((3, 6, 6), (2, 2), (2, 2))
        mp = MaxPoolLayer(pool, (2, 3))
        reader = Dense(rng.normal(size=(5, pool.width)), rng.normal(size=5), 4, np.arange(5))
        out = Dense(rng.normal(size=(2, 5)), rng.normal(size=2), 5, np.arange(2))
        raised = Network((conv, mp, reader, out), TensorInfo("x", (1, 8, 8), "float64"), TensorInfo("y", (2,), "float64"),
                         (TensorInfo("y", (2,), "float64"),), compute_dtype="float64")
        net = lower_max_pools(raised)
        free = np.array([r * 8 + c for r in (5, 6, 7) for c in (5, 6, 7)])
        box = _patch_box(rng, free)
        small = compress_network(net, analyze(net, box))
        constant_taps = _constant_entries_oracle(raised, box, free)
        expected = np.flatnonzero(pool.apply((~constant_taps[None]).astype(float))[0] > 0)   # a tap not constant
        selected = raise_max_pools(small).layers[2]
        assert isinstance(selected, Selected) and selected.fan_in == pool.width
        np.testing.assert_array_equal(selected.index, expected)
        x = box.sample(3000, rng)
        np.testing.assert_allclose(small.forward(x), net.forward(x), rtol=1e-12, atol=1e-10)
        back = import_model(to_onnx(small))            # MaxPool -> Gather -> Gemm reads back as written
        assert isinstance(raise_max_pools(back).layers[2], Selected) and back.parameter_count == small.parameter_count
        np.testing.assert_allclose(back.forward(x), small.forward(x), rtol=1e-12, atol=1e-10)
