"""The baselines of ``exactcomp stabilize --sweep`` (exactcomp.finetune.baselines), checked independently:
incoming weight norms against the torch modules' own weights (Linear rows, Conv output channels, a batch norm's
scale folded in, by hand and as the exporter folds it), the fresh initialisation's ranges against PyTorch's
1/sqrt(fan_in), and L1 from scratch by the accuracy of the written model in onnxruntime."""

from __future__ import annotations

import io
import time
import warnings

import numpy as np
import onnx
import pytest
import torch

from exactcomp.errors import UnsupportedOpError
from exactcomp.finetune.baselines import incoming_norms, magnitude_scores, reinitialized, train_l1_from_scratch
from exactcomp.finetune.graph import TorchGraph, with_weights

from .conftest import onnx_mlp, random_weights, run_onnx


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks: one torch thread (a second one only waits on busy shared cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _export(module, shape, fold: bool = True) -> onnx.ModelProto:
    """The legacy exporter, dynamic batch axis; ``fold=False`` keeps BatchNormalization nodes."""
    module.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(*shape),), buffer, dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, do_constant_folding=fold)
    return onnx.load_from_string(buffer.getvalue())


def _random_bn(channels: int, seed: int) -> torch.nn.BatchNorm2d:
    gen = torch.Generator().manual_seed(seed)
    bn = torch.nn.BatchNorm2d(channels)
    with torch.no_grad():
        bn.weight.copy_(torch.randn(channels, generator=gen))   # some negative scales
        bn.bias.copy_(torch.randn(channels, generator=gen))
        bn.running_mean.copy_(0.3 * torch.randn(channels, generator=gen))
        bn.running_var.copy_(0.5 + torch.rand(channels, generator=gen))
    return bn


class _ConvNet(torch.nn.Module):
    """Conv → BatchNorm → MaxPool → ReLU; grouped Conv → ×0.5 → ReLU; Linear → ReLU; Linear."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.bn = torch.nn.Conv2d(1, 4, 3, padding=1), _random_bn(4, 1)
        self.conv2 = torch.nn.Conv2d(4, 6, 3, padding=1, groups=2)
        self.fc1, self.fc2 = torch.nn.Linear(6 * 4 * 4, 5), torch.nn.Linear(5, 3)

    def forward(self, x):
        x = torch.relu(torch.nn.functional.max_pool2d(self.bn(self.conv1(x)), 2))
        x = torch.relu(self.conv2(x) * 0.5)
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


class _Residual(torch.nn.Module):
    """A stem convolution, then ``relu(conv2(relu(conv1(h))) + h)``: the last ReLU has no single producer."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem, self.conv1, self.conv2 = (torch.nn.Conv2d(c, 3, 3, padding=1) for c in (1, 3, 3))
        self.fc = torch.nn.Linear(3 * 8 * 8, 2)

    def block(self, x):
        h = torch.relu(self.stem(x))
        return torch.relu(self.conv2(torch.relu(self.conv1(h))) + h)

    def forward(self, x):
        return self.fc(torch.flatten(self.block(x), 1))


def _channel_norms(w: torch.Tensor) -> np.ndarray:
    return w.detach().double().reshape(w.shape[0], -1).norm(dim=1).numpy()


@pytest.mark.parametrize("style", ["gemm", "matmul", "gemm_nobias", "gemm_trans"])
def test_incoming_norms_of_mlps_are_the_row_norms_of_their_layers(style):
    Ws, bs = random_weights([5, 7, 6, 3], seed=2)
    norms = incoming_norms(TorchGraph(onnx_mlp(Ws, bs, style=style)))
    assert len(norms) == 2
    for got, W in zip(norms.values(), Ws[:-1]):
        np.testing.assert_allclose(got, np.linalg.norm(W, axis=1), rtol=1e-6)


@pytest.mark.parametrize("fold", [False, True])
def test_incoming_norms_of_a_cnn_fold_batch_norm_and_constant_factors(fold):
    net = _ConvNet()
    model = _export(net, (1, 1, 8, 8), fold=fold)
    assert ("BatchNormalization" in {n.op_type for n in model.graph.node}) is not fold   # both paths exercised
    bn = net.bn
    bn_factor = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).abs().detach().double().numpy()
    expected = [bn_factor * _channel_norms(net.conv1.weight), 0.5 * _channel_norms(net.conv2.weight),
                _channel_norms(net.fc1.weight)]
    norms = incoming_norms(TorchGraph(model))
    assert len(norms) == 3
    for got, want in zip(norms.values(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5)


def test_a_residual_relu_needs_data_and_then_scores_its_mean_activation():
    net = _Residual()
    model = _export(net, (1, 1, 8, 8))
    graph = TorchGraph(model)
    last = graph.relu_names[-1]
    with pytest.raises(UnsupportedOpError, match=last):
        incoming_norms(graph)
    X = np.random.default_rng(0).uniform(0, 1, size=(40, 1, 8, 8)).astype(np.float32)
    scores = magnitude_scores(graph, X)
    with torch.no_grad():
        acts = net.block(torch.from_numpy(X)).double()
    np.testing.assert_allclose(scores[last], acts.abs().mean(dim=(0, 2, 3)).numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(scores[graph.relu_names[0]], _channel_norms(net.stem.weight), rtol=1e-6)
    np.testing.assert_allclose(scores[graph.relu_names[1]], _channel_norms(net.conv1.weight), rtol=1e-6)


def test_magnitude_scores_give_up_the_smallest_unit_first():
    Ws, bs = random_weights([6, 8, 3], seed=4)
    Ws[0][5] *= 1e-3
    graph = TorchGraph(onnx_mlp(Ws, bs, style="matmul"))
    scores = magnitude_scores(graph)
    assert list(scores) == graph.relu_names and int(np.argmin(scores[graph.relu_names[0]])) == 5


def _effective(graph: TorchGraph, style: str, i: int):
    """Layer ``i`` of an onnx_mlp as torch's Linear holds it: weight (out, in) and bias."""
    W, b = graph.parameter(f"W{i}").detach().numpy(), graph.parameter(f"b{i}").detach().numpy()
    return {"gemm": (W, b), "gemm_nobias": (W, b), "matmul": (W.T, b), "gemm_trans": (2 * W.T, 4 * b)}[style]


def _assert_default_range(values: np.ndarray, fan_in: int) -> None:
    bound = 1 / np.sqrt(fan_in)
    assert np.abs(values).max() <= bound * (1 + 1e-12) and np.abs(values).max() > 0.5 * bound
    if values.size >= 100:   # uniform(±bound): standard deviation bound/sqrt(3)
        assert values.std() == pytest.approx(bound / np.sqrt(3), rel=0.15)


@pytest.mark.parametrize("style", ["gemm", "matmul", "gemm_nobias", "gemm_trans"])
def test_reinitialized_mlps_have_pytorchs_default_ranges(style):
    Ws, bs = random_weights([40, 30, 20], seed=0, scale=3.0, bias_shift=5.0)
    graph = TorchGraph(onnx_mlp(Ws, bs, style=style))
    reinitialized(graph, seed=1)
    for i, (W, b) in enumerate(zip(Ws, bs)):
        new_W, new_b = _effective(graph, style, i)
        assert new_W.shape == W.shape and not np.allclose(new_W, W)
        _assert_default_range(new_W, W.shape[1])
        _assert_default_range(new_b, W.shape[1])


class _Wide(torch.nn.Module):
    """A non-trainable shift (a float initializer), Conv → BatchNorm → ReLU, Linear → ReLU, Linear."""

    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.full((1, 1, 8, 8), 0.3))
        self.conv, self.bn = torch.nn.Conv2d(1, 16, 3, padding=1), _random_bn(16, 2)
        self.fc, self.out = torch.nn.Linear(16 * 8 * 8, 64), torch.nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x - self.shift)))
        return self.out(torch.relu(self.fc(torch.flatten(x, 1))))


def test_reinitialized_cnn_fan_ins_batch_norm_identity_and_constants_kept():
    model = _export(_Wide(), (1, 1, 8, 8), fold=False)
    graph = TorchGraph(model)
    before = graph.initializer_values()
    reinitialized(graph, seed=3)
    after = graph.initializer_values()
    np.testing.assert_array_equal(after["shift"], before["shift"])
    fan_ins = {"conv.weight": 9, "conv.bias": 9, "fc.weight": 1024, "fc.bias": 1024, "out.weight": 64, "out.bias": 64}
    for name, fan_in in fan_ins.items():
        assert not np.allclose(after[name], before[name])
        _assert_default_range(after[name], fan_in)
    for name, value in {"bn.weight": 1.0, "bn.bias": 0.0, "bn.running_mean": 0.0, "bn.running_var": 1.0}.items():
        np.testing.assert_array_equal(after[name], np.full(16, value))
    again = TorchGraph(model)
    reinitialized(again, seed=3)
    assert all(np.array_equal(v, after[k]) for k, v in again.initializer_values().items())
    reinitialized(again, seed=4)
    assert not np.array_equal(again.initializer_values()["fc.weight"], after["fc.weight"])


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32), y.astype(np.int64)


def _accuracy(model: onnx.ModelProto, X: np.ndarray, y: np.ndarray) -> float:
    return float((run_onnx(model, X)[0].argmax(1) == y).mean())


def test_l1_from_scratch_learns_and_a_larger_l1_gives_smaller_weights(digits):
    X, y = digits
    Ws, bs = random_weights([64, 24, 10], seed=0, scale=0.01)   # a poor model: training starts afresh anyway
    model = onnx_mlp(Ws, bs, style="matmul")
    runs, sums = {}, {}
    for l1 in (0.0, 3e-3):
        entries = []
        runs[l1] = train_l1_from_scratch(model, X[:800], y[:800], l1=l1, epochs=15, lr=1e-2, progress=entries.append)
        assert [e["epoch"] for e in entries] == list(range(1, 16)) and entries[-1]["loss"] < entries[0]["loss"]
        sums[l1] = sum(np.abs(runs[l1][f"W{i}"]).sum() for i in range(2))
        assert sums[l1] == pytest.approx(entries[-1]["l1_norm"], rel=1e-9)
    assert _accuracy(with_weights(model, runs[0.0]), X[1400:], y[1400:]) > 0.85
    assert _accuracy(with_weights(model, runs[3e-3]), X[1400:], y[1400:]) > 0.75
    assert sums[3e-3] < 0.7 * sums[0.0]


def test_l1_from_scratch_trains_a_cnn_with_batch_norm_in_inference_form(digits):
    X, y = digits
    images = X.reshape(-1, 1, 8, 8)
    model = _export(_Wide(), (1, 1, 8, 8), fold=False)
    values = train_l1_from_scratch(model, images[:800], y[:800], l1=1e-4, epochs=4, lr=3e-3)
    assert _accuracy(with_weights(model, values), images[1400:], y[1400:]) > 0.7
    np.testing.assert_array_equal(values["bn.running_mean"], 0.0)
    np.testing.assert_array_equal(values["bn.running_var"], 1.0)
    assert not np.allclose(values["bn.weight"], 1.0)   # γ is trained
    np.testing.assert_array_equal(values["shift"], np.float32(0.3))


def test_l1_from_scratch_past_its_deadline_returns_the_fresh_initialisation(digits):
    X, y = digits
    Ws, bs = random_weights([64, 12, 10], seed=1)
    model = onnx_mlp(Ws, bs)
    calls = []
    values = train_l1_from_scratch(model, X[:100], y[:100], l1=1e-3, epochs=3, seed=7,
                                   deadline=time.perf_counter(), progress=calls.append)
    fresh = TorchGraph(model)
    reinitialized(fresh, seed=7)
    assert not calls and all(np.array_equal(v, values[k]) for k, v in fresh.initializer_values().items())


def test_ablation_scores_are_the_logit_change_of_masking_each_unit():
    """One hidden layer: masking unit ``u`` moves the logits by exactly ``W2[:, u] · relu(g_u(x))``, so its score
    is ``Σ_x ‖W2[:, u]‖² relu(g_u(x))²`` (numpy, from the weights); a unit masked already scores 0."""
    import torch

    from exactcomp.finetune.scores import ablation_scores

    rng = np.random.default_rng(4)
    Ws, bs = [rng.normal(size=(7, 5)), rng.normal(size=(3, 7))], [rng.normal(size=7), rng.normal(size=3)]
    graph = TorchGraph(onnx_mlp(Ws, bs, dtype=np.float64))
    X = rng.random((40, 5))
    name = graph.relu_names[0]
    mask = torch.ones(7, dtype=torch.float64)
    mask[2] = 0.0
    graph.masks = {name: mask}
    scores = ablation_scores(graph, torch.as_tensor(X), batch=16)[name]
    expected = (np.maximum(X @ Ws[0].T + bs[0], 0) ** 2).sum(axis=0) * (Ws[1] ** 2).sum(axis=0)
    expected[2] = 0.0
    np.testing.assert_allclose(scores, expected, rtol=1e-9)
    assert torch.equal(graph.masks[name], mask)            # the caller's masks are left as they were
