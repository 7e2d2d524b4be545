"""The ONNX graph as a trainable torch function (exactcomp.finetune.graph), checked against onnxruntime:
the same outputs as the original model, and after new weights are written back, the same outputs as the
torch function with those weights; the written model differs from the original only in initializer data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from exactcomp.errors import UnsupportedOpError
from exactcomp.finetune.graph import TorchGraph, with_weights

from .conftest import export_torch, onnx_mlp, random_weights, run_onnx

MODELS = Path(__file__).resolve().parent.parent / "models"


def _inputs(model: onnx.ModelProto, n: int, high: float, seed: int = 0) -> np.ndarray:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.dim_value else n for d in dims]
    shape[0] = n if not dims[0].dim_value else dims[0].dim_value
    return np.random.default_rng(seed).uniform(0, high, size=shape).astype(np.float32)


def _assert_close(torch_outputs, onnx_outputs, dtype=np.float32):
    for t, o in zip(torch_outputs, onnx_outputs):
        t = t.detach().numpy()
        if o.dtype.kind in "iu":
            np.testing.assert_array_equal(t, o)
        else:
            scale = max(1.0, float(np.abs(o).max()))
            tol = 2e-5 if dtype == np.float32 else 1e-12
            assert np.abs(t - o).max() <= tol * scale, np.abs(t - o).max()


def _same_graph_but_weights(a: onnx.ModelProto, b: onnx.ModelProto) -> None:
    assert [n.SerializeToString() for n in a.graph.node] == [n.SerializeToString() for n in b.graph.node]
    assert a.graph.input == b.graph.input and a.graph.output == b.graph.output
    assert list(a.opset_import) == list(b.opset_import) and a.ir_version == b.ir_version
    assert [(i.name, i.data_type, list(i.dims)) for i in a.graph.initializer] == \
           [(i.name, i.data_type, list(i.dims)) for i in b.graph.initializer]


def _perturbed(graph: TorchGraph, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    return {name: v + 0.05 * rng.normal(size=v.shape) for name, v in graph.initializer_values().items()}


def _check_model(model: onnx.ModelProto, high: float = 1.0) -> None:
    graph = TorchGraph(model)
    X = _inputs(model, 16, high)
    _assert_close(graph(torch.from_numpy(X)), run_onnx(model, X))
    new_values = _perturbed(graph)
    new_model = with_weights(model, new_values)
    _same_graph_but_weights(model, new_model)
    retrained = TorchGraph(new_model)
    _assert_close(retrained(torch.from_numpy(X)), run_onnx(new_model, X))
    with torch.no_grad():   # the written weights are the ones given (up to the model's float type)
        for name, value in new_values.items():
            np.testing.assert_allclose(retrained.parameter(name).numpy(), value, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["digits_64x32x32", "mnist_784x100x100", "mnist_cnn_8x16", "mnist_cnn_maxpool",
                                  "mnist_resnet_tiny"])
def test_shipped_models(name):
    _check_model(onnx.load(str(MODELS / f"{name}.onnx")), high=16.0 if name.startswith("digits") else 1.0)


@pytest.mark.parametrize("style", ["gemm", "matmul", "gemm_nobias", "gemm_trans"])
def test_hand_written_mlps_with_a_softmax_argmax_head(style):
    Ws, bs = random_weights([5, 7, 6, 3], seed=2)
    _check_model(onnx_mlp(Ws, bs, style=style, head="softmax"))


class _Net(torch.nn.Module):
    """Batch norm, reflect padding, a padded average pooling without the padding counted, max pooling."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1, stride=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.bn.running_mean.uniform_(-0.2, 0.2)
        self.bn.running_var.uniform_(0.5, 2.0)
        self.conv2 = torch.nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect", groups=2)
        self.avg = torch.nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.pool = torch.nn.MaxPool2d(2)
        self.fc = torch.nn.Linear(4 * 2 * 2, 3)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        x = torch.relu(self.conv2(x))
        x = self.pool(self.avg(x))
        return self.fc(torch.flatten(x, 1))


@pytest.mark.parametrize("dynamo", [False, True])
def test_torch_exports(tmp_path, dynamo):
    path = export_torch(_Net(), tmp_path / "net.onnx", dynamo=dynamo)
    _check_model(onnx.load(str(path)))


def test_gradients_reach_the_weights():
    model = onnx.load(str(MODELS / "mnist_cnn_8x16.onnx"))
    graph = TorchGraph(model)
    X = torch.from_numpy(_inputs(model, 8, 1.0))
    graph(X)[0].sum().backward()
    grads = [p.grad for p in graph.parameters()]
    assert all(g is not None for g in grads) and all(float(g.abs().sum()) > 0 for g in grads)


def test_an_unsupported_op_names_its_node():
    Ws, bs = random_weights([3, 4, 2], seed=0)
    model = onnx_mlp(Ws, bs)
    model.graph.node[1].op_type = "Tanh"   # the first Relu
    with pytest.raises(UnsupportedOpError, match="op Tanh"):
        TorchGraph(model)


def _relu_inputs(graph: TorchGraph, X: torch.Tensor) -> dict:
    """Every Relu node's input at the points X, evaluated node by node here (not by the graph's forward)."""
    from exactcomp.finetune import ops as ops_module

    values = dict(graph._constants)
    values.update((name, graph.weights[key]) for name, key in graph._keys.items())
    values[graph.input_name] = X
    seen = {}
    for node, attrs in zip(graph.nodes, graph.attributes):
        args = [values[i] if i else None for i in node.input]
        if node.op_type == "Relu":
            seen[node.name or node.output[0]] = args[0].detach().clone()
        out = ops_module.OPS[node.op_type](args, attrs)
        for name, value in zip(node.output, out if isinstance(out, tuple) else (out,)):
            values[name] = value
    return seen


@pytest.mark.parametrize("name", ["digits_64x32x32", "mnist_cnn_8x16", "mnist_cnn_maxpool", "mnist_resnet_tiny"])
def test_interval_bounds_hold_the_sampled_pre_activations(name):
    from exactcomp.finetune.bounds import relu_bounds

    model = onnx.load(str(MODELS / f"{name}.onnx"))
    graph = TorchGraph(model)
    high = 16.0 if name.startswith("digits") else 1.0
    X = torch.from_numpy(_inputs(model, 64, high).astype(np.float64))
    lo, hi = torch.full_like(X[:1], 0.1 * high), torch.full_like(X[:1], 0.4 * high)
    X = lo + (hi - lo) * torch.rand(X.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    X[:2] = torch.cat([lo, hi])   # two corners
    with torch.no_grad():
        bounds = relu_bounds(graph, lo, hi)
        seen = _relu_inputs(graph, X)
    assert set(bounds) == set(seen) and bounds
    for key, values in seen.items():
        b = bounds[key]
        assert torch.all(b.lower <= values + 1e-9) and torch.all(values <= b.upper + 1e-9), key


@pytest.mark.parametrize("name", ["mnist_784x100x100", "mnist_cnn_8x16"])
def test_interval_bounds_equal_exactcomps_interval_arithmetic(name):
    """For networks without shortcuts the graph's interval bounds are those of exactcomp's own engine
    (which widens them by a relative 1e-10 for rounding)."""
    import exactcomp
    from exactcomp.bounds.crown import compute_bounds
    from exactcomp.finetune.bounds import relu_bounds

    model = onnx.load(str(MODELS / f"{name}.onnx"))
    net = exactcomp.load(MODELS / f"{name}.onnx")
    box = exactcomp.Box(np.full(784, 0.2), np.full(784, 0.6))
    reference = compute_bounds(net, box, symbolic=False)
    with torch.no_grad():
        ours = list(relu_bounds(TorchGraph(model), torch.full((1, *net.input.shape), 0.2, dtype=torch.float64),
                                torch.full((1, *net.input.shape), 0.6, dtype=torch.float64)).values())
    assert len(ours) == len(reference)
    for b, ref in zip(ours, reference):
        np.testing.assert_allclose(b.lower.reshape(-1).numpy(), ref.interval_lower, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(b.upper.reshape(-1).numpy(), ref.interval_upper, rtol=1e-6, atol=1e-6)


def test_interval_bounds_are_differentiable_in_the_weights():
    from exactcomp.finetune.bounds import relu_bounds

    model = onnx.load(str(MODELS / "mnist_784x100x100.onnx"))
    graph = TorchGraph(model)
    bounds = relu_bounds(graph, torch.zeros(1, 1, 28, 28, dtype=torch.float64), torch.ones(1, 1, 28, 28, dtype=torch.float64))
    sum(torch.relu(b.upper).sum() for b in bounds.values()).backward()
    assert all(p.grad is not None for p in list(graph.parameters())[:4])


def test_masks_zero_units_and_activations_are_kept():
    model = onnx.load(str(MODELS / "mnist_cnn_8x16.onnx"))
    graph = TorchGraph(model)
    X = torch.from_numpy(_inputs(model, 4, 1.0).astype(np.float64))
    first = graph.relu_names[0]
    mask = torch.ones(8, dtype=torch.float64)
    mask[[1, 5]] = 0
    graph.masks, graph.keep_activations = {first: mask}, True
    with torch.no_grad():
        graph(X)
    acts = graph.activations
    assert len(acts) == len(graph.relu_names) and float(acts[0][:, [1, 5]].abs().sum()) == 0
    assert float(acts[0][:, [0, 2]].abs().sum()) > 0
