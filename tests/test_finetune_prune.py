"""Given-up units written as structurally dead (exactcomp.finetune.prune), checked independently: onnxruntime
gives the same outputs on points of the box, the units' incoming weights read back from the written ONNX are
zero, and exactcomp's own analysis removes them; a residual sum is left as trained."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

import exactcomp
from exactcomp.finetune.graph import TorchGraph, with_weights
from exactcomp.finetune.prune import make_dead, make_dead_checked

from .conftest import onnx_mlp, random_weights, run_onnx

DEAD = [1, 4]


def _export(module, shape, fold: bool) -> onnx.ModelProto:
    module.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(*shape),), buffer, dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, do_constant_folding=fold)
    return onnx.load_from_string(buffer.getvalue())


class _PoolNet(torch.nn.Module):
    """Conv → BatchNorm → MaxPool → ReLU → Flatten → Linear, channels DEAD pushed far below zero."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.bn = torch.nn.Conv2d(1, 6, 3), torch.nn.BatchNorm2d(6)
        self.fc = torch.nn.Linear(6 * 3 * 3, 3)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.2, 0.2)
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.bias[DEAD] = -100.0

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(torch.nn.functional.max_pool2d(self.bn(self.conv(x)), 2)), 1))


def _dead_masks(graph, widths: dict) -> dict:
    masks = {name: torch.ones(w, dtype=torch.float64) for name, w in widths.items()}
    for mask in list(masks.values())[:1]:
        mask[DEAD] = 0.0
    return masks


def _same_outputs(model, new, shape):
    X = np.random.default_rng(1).uniform(0, 1, size=(500, *shape)).astype(np.float32)
    np.testing.assert_array_equal(run_onnx(model, X)[0], run_onnx(new, X)[0])


@pytest.mark.parametrize("style", ["gemm", "gemm_trans", "matmul"])
def test_dense_units_dead_over_the_box_become_zero_rows_and_compress_removes_them(style, tmp_path):
    Ws, bs = random_weights([6, 8, 5, 3], seed=3)
    for u in DEAD:
        bs[0][u] = -np.abs(Ws[0][u]).sum() - 1.0   # dead over [0, 1]^6
    model = onnx_mlp(Ws, bs, style=style)
    graph = TorchGraph(model)
    masks = _dead_masks(graph, {graph.relu_names[0]: 8, graph.relu_names[1]: 5})
    assert make_dead(graph, masks) == len(DEAD)
    new = with_weights(model, graph.initializer_values())
    _same_outputs(model, new, (6,))
    inits = [numpy_helper.to_array(i) for i in new.graph.initializer]
    first = next(a for a in inits if a.ndim == 2 and 8 in a.shape and 6 in a.shape)
    rows = first[DEAD] if first.shape[0] == 8 else first[:, DEAD].T
    assert not rows.any()
    path = tmp_path / "m.onnx"
    onnx.save(new, str(path))
    result = exactcomp.compress(str(path), {"lower": 0.0, "upper": 1.0}, time_limit=20)
    assert result.compressed.widths[0] <= 8 - len(DEAD)


@pytest.mark.parametrize("fold", [False, True])
def test_channels_before_a_max_pooling_through_batch_norm_or_the_conv_bias(fold, tmp_path):
    net = _PoolNet()
    model = _export(net, (1, 1, 8, 8), fold=fold)
    assert ("BatchNormalization" in {n.op_type for n in model.graph.node}) is not fold
    graph = TorchGraph(model)
    masks = _dead_masks(graph, {graph.relu_names[0]: 6})
    X = torch.as_tensor(np.random.default_rng(2).uniform(0, 1, size=(64, 1, 8, 8)))
    assert make_dead_checked(graph, masks, X) is None
    new = with_weights(model, graph.initializer_values())
    _same_outputs(model, new, (1, 8, 8))
    path = tmp_path / "p.onnx"
    onnx.save(new, str(path))
    result = exactcomp.compress(str(path), {"lower": 0.0, "upper": 1.0}, time_limit=20)
    assert result.analysis.totals()["unknown"] == 0
    per_channel = 9 + 1 + 3 * 3 * 3   # its kernel, its bias, its 9 pooled positions read by 3 outputs
    assert result.parameters_before == 6 * 10 + 6 * 9 * 3 + 3
    assert result.parameters_after <= result.parameters_before - len(DEAD) * per_channel


class _Residual(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.a, self.b = torch.nn.Linear(5, 5), torch.nn.Linear(5, 5)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return torch.relu(self.b(h) + h)


def test_a_relu_after_a_residual_sum_is_left_as_trained():
    model = _export(_Residual(), (1, 5), fold=True)
    graph = TorchGraph(model)
    masks = {graph.relu_names[0]: torch.ones(5, dtype=torch.float64),
             graph.relu_names[1]: torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0], dtype=torch.float64)}
    before = graph.initializer_values()
    assert make_dead(graph, masks) == 0
    after = graph.initializer_values()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_units_that_are_not_dead_on_the_rows_are_restored_with_a_warning():
    Ws, bs = random_weights([6, 8, 3], seed=4, bias_shift=2.0)   # units alive on the rows
    model = onnx_mlp(Ws, bs)
    graph = TorchGraph(model)
    masks = _dead_masks(graph, {graph.relu_names[0]: 8})
    before = graph.initializer_values()
    warning = make_dead_checked(graph, masks, torch.rand(50, 6, dtype=torch.float64))
    assert warning is not None and "kept them as trained" in warning
    after = graph.initializer_values()
    assert all(np.array_equal(before[k], after[k]) for k in before)
