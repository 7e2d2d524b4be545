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
