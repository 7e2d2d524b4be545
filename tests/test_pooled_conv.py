"""A convolution after an average pooling (a down-sampling stage) stays an AveragePool and a Conv: import against
onnxruntime, bounds by sampling, dead channels on both sides of the pooling against forward passes and
onnxruntime, and the torch engine against the float64 split bound."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from exactcomp.analysis import AnalysisOptions, analyze
from exactcomp.bounds.crown import compute_bounds
from exactcomp.cli.main import main
from exactcomp.domain import Box
from exactcomp.io.onnx_export import to_onnx
from exactcomp.io.onnx_import import import_model
from exactcomp.ir.conv import Conv
from exactcomp.ir.pool import Pooled, conv_of
from exactcomp.rewrite.rules import compress_network

from .conftest import assert_engine_matches_split_bound, export_torch, run_onnx

torch = pytest.importorskip("torch")
RNG = np.random.default_rng(21)


class _DownsampleCNN(torch.nn.Module):
    """conv -> relu -> 2x2 average pooling -> conv [-> batch norm] -> relu -> dense -> relu -> dense, with one dead
    channel before the pooling and one dead output channel of the pooled convolution."""

    def __init__(self, batch_norm: bool):
        super().__init__()
        self.c1 = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.pool = torch.nn.AvgPool2d(2)
        self.c2 = torch.nn.Conv2d(4, 6, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(6) if batch_norm else torch.nn.Identity()
        self.fc = torch.nn.Linear(6 * 16, 5)
        self.out = torch.nn.Linear(5, 2)
        with torch.no_grad():
            self.c1.bias[1] = -50.0
            self.c2.bias[2] = -50.0
            if batch_norm:
                self.bn.running_mean.uniform_(-0.2, 0.2)
                self.bn.running_var.uniform_(0.5, 2.0)
                self.bn.weight.uniform_(0.5, 1.5)

    def forward(self, x):
        h = self.pool(torch.relu(self.c1(x)))
        h = torch.relu(self.bn(self.c2(h)))
        return self.out(torch.relu(self.fc(h.flatten(1))))


def _ort(model, X):
    """onnxruntime on the rows of ``X`` (one at a time when the model fixes the batch axis to 1, as dynamo does)."""
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    if batch.HasField("dim_value") and batch.dim_value == 1:
        return np.concatenate([run_onnx(model, X[i:i + 1])[0] for i in range(len(X))])
    return run_onnx(model, X)[0]


@pytest.mark.parametrize("batch_norm,dynamo", [(False, False), (True, False), (False, True)])
def test_convolution_after_average_pooling_stays_two_structured_ops(tmp_path, capsys, batch_norm, dynamo):
    torch.manual_seed(8)
    path = export_torch(_DownsampleCNN(batch_norm), tmp_path / "down.onnx", dynamo=dynamo, shape=(1, 1, 8, 8))
    model = onnx.load(str(path))
    net = import_model(path)
    assert [type(x).__name__ for x in net.layers] == ["Conv", "Pooled", "Dense", "Dense"]
    assert isinstance(net.layers[1].inner, Conv) and net.layers[1].pool.out_shape == (4, 4, 4)
    if not batch_norm:
        assert net.parameter_count == net.metadata["stored_parameters"]
    X = RNG.uniform(0, 1, size=(6, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(net.forward(X.reshape(6, -1)), _ort(model, X), rtol=1e-5, atol=1e-5)
    box = Box(np.zeros(64), np.ones(64))
    _, pre = net.forward(box.sample(20_000, RNG), return_preactivations=True)
    for b, g in zip(compute_bounds(net, box), pre):
        assert np.all(g >= b.lower - 1e-12) and np.all(g <= b.upper + 1e-12)
    small = compress_network(net, analyze(net, box, AnalysisOptions(time_limit=20)))
    Xs = box.sample(5_000, RNG)
    dead_before = (pre[0].reshape(-1, 4, 64) <= 0).all(axis=(0, 2))
    dead_after = (net.forward(Xs, return_preactivations=True)[1][1].reshape(-1, 6, 16) <= 0).all(axis=(0, 2))
    assert dead_before[1] and dead_after[2]           # sampling agrees the forced channels never fire
    for conv, dead, forced in ((small.layers[0], dead_before, 1), (conv_of(small.layers[1]), dead_after, 2)):
        kept = np.unique(conv.neuron_ids // conv.positions)
        assert forced not in kept and set(np.flatnonzero(~dead)) <= set(kept)   # removed: only channels never firing
    assert isinstance(small.layers[1], Pooled) and small.layers[1].pool.in_shape[0] == small.layers[0].channels
    np.testing.assert_allclose(small.forward(Xs), net.forward(Xs), rtol=1e-9, atol=1e-9)
    exported = to_onnx(small)
    ops = [n.op_type for n in exported.graph.node]
    assert ops.count("Conv") == 2 and "AveragePool" in ops
    np.testing.assert_allclose(_ort(exported, Xs[:300].astype(np.float32).reshape(-1, 1, 8, 8)).reshape(300, -1),
                               net.forward(Xs[:300]), rtol=1e-4, atol=1e-4)
    assert_engine_matches_split_bound(net, box, [(1, 5, 1.0), (2, 0, -1.0)], seed=2)
    assert main(["inspect", str(path)]) == 0
    assert "average pool 2x2 stride 2x2 (4x8x8 -> 4x4x4), conv 4x4x4 -> 6x4x4" in capsys.readouterr().out


def test_dense_after_average_pooling_reads_only_the_pooled_entries_that_vary():
    """conv -> 2x2 average pooling -> dense: a pooled entry whose taps are all constant on the box (oracle: finite
    differences and corners, per tap) is folded into the bias; the dense layer gathers the others. Forward passes,
    onnxruntime, and read back as written (AveragePool -> Flatten -> Gather -> Gemm)."""
    from exactcomp.ir.network import Dense, Network, TensorInfo
    from exactcomp.ir.pool import AveragePool
    from exactcomp.ir.select import Selected

    from .test_selection import _constant_entries_oracle, _patch_box

    for seed in range(3):
        rng = np.random.default_rng(seed)
        conv = Conv(rng.normal(size=(3, 1, 3, 3)), rng.uniform(0.1, 0.5, size=3), (1, 8, 8), 1, np.arange(108))
        pool = AveragePool((3, 6, 6), (2, 2), (2, 2))
        pooled = Pooled(pool, Dense(rng.normal(size=(5, pool.width)), rng.normal(size=5), 2, np.arange(5)))
        out = Dense(rng.normal(size=(2, 5)), rng.normal(size=2), 3, np.arange(2))
        net = Network((conv, pooled, out), TensorInfo("x", (1, 8, 8), "float32"), TensorInfo("y", (2,), "float32"),
                      (TensorInfo("y", (2,), "float32"),), compute_dtype="float32")
        free = np.array([r * 8 + c for r in (5, 6, 7) for c in (5, 6, 7)])
        box = _patch_box(rng, free)
        small = compress_network(net, analyze(net, box))
        constant_taps = _constant_entries_oracle(net, box, free)
        expected = np.flatnonzero(pool.apply((~constant_taps[None]).astype(float))[0] > 0)   # a tap not constant
        reader = small.layers[1]
        assert isinstance(reader, Pooled) and isinstance(reader.inner, Selected)
        np.testing.assert_array_equal(reader.inner.index, expected)
        x = box.sample(3000, rng)
        np.testing.assert_allclose(small.forward(x), net.forward(x), rtol=1e-12, atol=1e-10)
        model = to_onnx(small)
        ops = [n.op_type for n in model.graph.node]
        assert "AveragePool" in ops and "Gather" in ops
        np.testing.assert_allclose(run_onnx(model, x)[0].reshape(len(x), -1), net.forward(x), rtol=1e-4, atol=1e-4)
        back = import_model(model)
        assert isinstance(back.layers[1], Pooled) and isinstance(back.layers[1].inner, Selected)
        assert back.parameter_count == small.parameter_count
        np.testing.assert_allclose(back.forward(x), small.forward(x), rtol=1e-5, atol=1e-5)
        assert_engine_matches_split_bound(small, box, [(1, 0, 1.0), (2, 1, -1.0)], seed=seed)
