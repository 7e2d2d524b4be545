"""Convolutional networks: the Conv op against torch, import/export against onnxruntime, the analysis
against an exact activation-pattern oracle, and dead-channel removal against brute-force forward passes."""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
import pytest

from exactcomp.cli.main import main
from exactcomp.analysis import AnalysisOptions, analyze
from exactcomp.bounds.crown import compute_bounds
from exactcomp.ir.conv import Conv, conv_output_size
from exactcomp.domain import Box
from exactcomp.errors import UnsupportedOpError
from exactcomp.ir.network import Dense, Network, TensorInfo
from exactcomp.io.onnx_export import to_onnx
from exactcomp.io.onnx_import import import_model
from exactcomp.rewrite.rules import compress_network, remove_dead_channels

from .conftest import assert_engine_matches_split_bound, export_torch, run_onnx
from .oracles import check_against_oracle
from .oracles import exact_ranges

torch = pytest.importorskip("torch")
F = torch.nn.functional
RNG = np.random.default_rng(7)


def _random_conv(rng, in_shape=None, groups=None):
    groups = groups or int(rng.choice([1, 2]))
    cpg = int(rng.integers(1, 3))
    c_out = groups * int(rng.integers(1, 3))
    kh, kw = (int(v) for v in rng.integers(1, 4, 2))
    stride, dilation = tuple(int(v) for v in rng.integers(1, 3, 2)), tuple(int(v) for v in rng.integers(1, 3, 2))
    pads = tuple(int(v) for v in rng.integers(0, 3, 4))
    H, W = in_shape[1:] if in_shape else (int(v) for v in rng.integers(5, 9, 2))
    h = conv_output_size(H, kh, stride[0], dilation[0], pads[0], pads[2])
    w = conv_output_size(W, kw, stride[1], dilation[1], pads[1], pads[3])
    if min(h, w) < 1:
        return None
    return Conv(rng.normal(size=(c_out, cpg, kh, kw)), rng.normal(size=c_out), (cpg * groups, H, W), 1,
                np.arange(c_out * h * w), stride, pads, dilation, groups, channels_last=bool(rng.integers(2)))


def _torch_conv(layer: Conv, x: np.ndarray) -> np.ndarray:
    top, left, bottom, right = layer.pads
    c, H, W = layer.in_shape
    xt = torch.tensor(x)
    xt = xt.reshape(len(x), H, W, c).permute(0, 3, 1, 2) if layer.channels_last else xt.reshape(len(x), c, H, W)
    xt = F.pad(xt, (left, right, top, bottom))
    out = F.conv2d(xt, torch.tensor(layer.kernel), torch.tensor(layer.bias), stride=layer.stride,
                   dilation=layer.dilation, groups=layer.groups)
    return out.reshape(len(x), -1).numpy()


def test_conv_operator_matches_torch_conv2d():
    from exactcomp.bab.torch_operators import TorchConv

    checked = 0
    for _ in range(60):
        layer = _random_conv(RNG)
        if layer is None:
            continue
        x = RNG.normal(size=(3, layer.fan_in))
        np.testing.assert_allclose(layer.apply(x), _torch_conv(layer, x), rtol=1e-12, atol=1e-12)
        M = layer.matrix().toarray()
        lam = RNG.normal(size=(4, layer.width))
        np.testing.assert_allclose(layer.apply_transpose(lam), lam @ M, atol=1e-12)
        np.testing.assert_allclose(TorchConv(layer, "cpu").apply_transpose(torch.tensor(lam)).numpy(), lam @ M, atol=1e-12)
        np.testing.assert_allclose(layer.apply_abs(np.abs(x)), np.abs(x) @ np.abs(M).T, atol=1e-12)
        np.testing.assert_allclose(layer.rows([0, layer.width - 1]), M[[0, -1]])
        checked += 1
    assert checked > 30


# ---------------------------------------------------------------- import / export
class _SmallCNN(torch.nn.Module):
    def __init__(self, norm: bool = False, padding: int = 1):
        super().__init__()
        self.norm = norm
        self.c1 = torch.nn.Conv2d(1, 3, 3, stride=2, padding=padding)
        self.bn = torch.nn.BatchNorm2d(3)
        self.c2 = torch.nn.Conv2d(3, 4, 3, padding=1, groups=1)
        self.fc = torch.nn.Linear(4 * 4 * 4 if padding else 4 * 3 * 3, 6)
        self.out = torch.nn.Linear(6, 3)
        self.bn.running_mean.normal_()
        self.bn.running_var.uniform_(0.5, 2.0)
        self.bn.weight.data.normal_()

    def forward(self, x):
        if self.norm:
            x = (x - 0.13) / 0.31
        x = torch.relu(self.bn(self.c1(x)))
        x = torch.relu(self.c2(x))
        return self.out(torch.relu(self.fc(x.flatten(1))))


@pytest.mark.parametrize("dynamo", [False, True])
@pytest.mark.parametrize("norm,padding,kinds", [(False, 1, ["Conv", "Conv", "Dense", "Dense"]),
                                                (True, 0, ["Conv", "Conv", "Dense", "Dense"]),
                                                (True, 1, ["Dense", "Conv", "Dense", "Dense"])])
def test_torch_cnn_imports_as_convolutions_and_exports_with_conv_nodes(tmp_path, dynamo, norm, padding, kinds):
    """Normalisation before a padded convolution is not a convolution of the input (padding zeros are
    not shifted): that layer becomes dense, still exact."""
    torch.manual_seed(1)
    module = _SmallCNN(norm, padding)
    path = export_torch(module, tmp_path / "cnn.onnx", dynamo)
    net = import_model(path)
    assert [type(layer).__name__ for layer in net.layers] == kinds
    X = RNG.uniform(0, 1, size=(6, 1, 8, 8)).astype(np.float32)
    model = onnx.load(str(path))
    reference = np.vstack([run_onnx(model, X[i:i + 1])[0] for i in range(len(X))])  # dynamo: batch fixed to 1
    np.testing.assert_allclose(net.forward(X.reshape(6, -1)), reference, rtol=1e-5, atol=1e-5)
    exported = to_onnx(net)
    assert sum(n.op_type == "Conv" for n in exported.graph.node) == kinds.count("Conv")
    outputs = np.vstack([run_onnx(exported, X[i:i + 1])[0] for i in range(len(X))])
    np.testing.assert_allclose(outputs, reference, rtol=1e-5, atol=1e-5)


def test_three_dimensional_convolution_is_a_clear_error(tmp_path):
    module = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 2), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(54, 2))
    path = tmp_path / "c3.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.zeros(1, 1, 4, 4, 4),), str(path), dynamo=False)
    with pytest.raises(UnsupportedOpError, match="only 2-D convolutions"):
        import_model(path)


# ---------------------------------------------------------------- analysis and rewriting
def _tiny_cnn(seed: int, shift: float) -> Network:
    """1x3x3 input -> conv 2 ch 2x2 (8 neurons) -> conv 1 ch 2x2 (1 neuron) -> dense 1: 9 ReLUs."""
    rng = np.random.default_rng(seed)
    c1 = Conv(rng.normal(size=(2, 1, 2, 2)), rng.normal(size=2) + shift, (1, 3, 3), 1, np.arange(8))
    c2 = Conv(rng.normal(size=(1, 2, 2, 2)), rng.normal(size=1) + shift, (2, 2, 2), 2, np.arange(1))
    out = Dense(rng.normal(size=(1, 1)), rng.normal(size=1), 3, np.arange(1))
    info = TensorInfo("x", (1, 3, 3), "float64")
    return Network((c1, c2, out), info, TensorInfo("y", (1,), "float64"), (TensorInfo("y", (1,), "float64"),), "float64")


def _densified(net: Network) -> Network:
    """The same network with every layer a dense matrix (an independent path for the oracle)."""
    return net.with_layers([Dense(layer.matrix().toarray(), layer.b, layer.layer_id, layer.neuron_ids)
                            for layer in net.layers])


@pytest.mark.parametrize("seed,shift", [(0, -0.3), (1, 0.0), (2, -0.8)])
def test_cnn_statuses_match_the_exact_oracle(seed, shift):
    net = _tiny_cnn(seed, shift)
    box = Box(np.zeros(9), np.ones(9))
    lo, hi = exact_ranges(_densified(net), box)
    result = analyze(net, box, AnalysisOptions())
    check_against_oracle(result, lo, hi)


def test_cnn_bounds_are_sound_by_sampling():
    rng = np.random.default_rng(3)
    c1 = _random_conv(rng, (2, 7, 7), groups=1)
    c2 = Conv(rng.normal(size=(3, c1.channels, 2, 2)), rng.normal(size=3), c1.out_shape, 2,
              np.arange(3 * (c1.out_shape[1] - 1) * (c1.out_shape[2] - 1)))
    out = Dense(rng.normal(size=(2, c2.width)), rng.normal(size=2), 3, np.arange(2))
    info = TensorInfo("x", (2, 7, 7), "float64")
    net = Network((c1, c2, out), info, TensorInfo("y", (2,), "float64"), (TensorInfo("y", (2,), "float64"),), "float64")
    box = Box(-np.ones(98), np.ones(98))
    bounds = compute_bounds(net, box)
    _, pre = net.forward(box.sample(20_000, rng), return_preactivations=True)
    for b, g in zip(bounds, pre):
        assert np.all(g >= b.lower[None] - 1e-12) and np.all(g <= b.upper[None] + 1e-12)


def _dead_channel_net(consumer: str) -> Network:
    rng = np.random.default_rng(5)
    bias = np.array([0.2, -50.0, 0.1, -60.0])                    # channels 1 and 3 can never fire on [0,1]
    c1 = Conv(rng.normal(size=(4, 1, 3, 3)), bias, (1, 6, 6), 1, np.arange(4 * 16))
    if consumer == "conv":
        nxt = Conv(rng.normal(size=(2, 4, 2, 2)), rng.normal(size=2), (4, 4, 4), 2, np.arange(2 * 9))
    else:
        nxt = Dense(rng.normal(size=(5, 64)), rng.normal(size=5), 2, np.arange(5))
    out = Dense(rng.normal(size=(1, nxt.width)), rng.normal(size=1), 3, np.arange(1))
    info = TensorInfo("x", (1, 6, 6), "float32")
    return Network((c1, nxt, out), info, TensorInfo("y", (1,), "float32"), (TensorInfo("y", (1,), "float32"),))


@pytest.mark.parametrize("consumer", ["conv", "dense"])
def test_dead_channels_are_removed_and_the_function_is_unchanged(consumer):
    net = _dead_channel_net(consumer)
    box = Box(np.zeros(36), np.ones(36))
    result = analyze(net, box, AnalysisOptions())
    small = compress_network(net, result)
    assert isinstance(small.layers[0], Conv) and small.layers[0].channels == 2
    assert small.parameter_count < net.parameter_count
    X = box.sample(5_000, np.random.default_rng(0))
    np.testing.assert_allclose(small.forward(X), net.forward(X), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(run_onnx(to_onnx(small), X.astype(np.float32).reshape(-1, 1, 6, 6))[0],
                               net.forward(X), rtol=1e-4, atol=1e-4)


def test_every_channel_dead_gives_the_constant_network():
    net = _dead_channel_net("conv")
    everything = np.ones(net.layers[0].width, dtype=bool)
    small = remove_dead_channels(net, 0, everything)
    assert len(small.layers) == 1 and small.layers[0].is_constant
    X = np.zeros((1, 36))
    h = np.zeros((1, net.layers[0].width))                       # every channel outputs 0
    expected = net.layers[2].apply(np.maximum(net.layers[1].apply(h), 0))
    np.testing.assert_allclose(small.forward(X), expected)


def test_compress_cli_on_a_cnn_writes_conv_nodes_and_verifies(tmp_path):
    net = _dead_channel_net("dense")
    model_path = tmp_path / "cnn.onnx"
    onnx.save(to_onnx(net), str(model_path))
    box_path = tmp_path / "box.json"
    box_path.write_text('{"lower": 0.0, "upper": 1.0}')
    out, report = tmp_path / "small.onnx", tmp_path / "report.json"
    assert main(["compress", str(model_path), "--domain", str(box_path), "-o", str(out), "--report", str(report),
                 "-q"]) == 0
    data = json.loads(report.read_text())
    assert data["verification"]["passed"] is True
    conv = data["layers"][0]
    assert conv["kind"] == "conv" and conv["shape"] == [4, 4, 4] and data["layers"][1]["kind"] == "dense"
    assert conv["channels"]["count"] == 4 and conv["channels"]["kept"] == 2
    assert conv["channels"]["per_channel"]["stably_inactive"][1] == conv["channels"]["per_channel"]["stably_inactive"][3] == 16
    assert main(["verify", str(model_path), str(out), "--domain", str(box_path)]) == 0
    small = onnx.load(str(out))
    conv = next(n for n in small.graph.node if n.op_type == "Conv")
    kernel = next(t for t in small.graph.initializer if t.name == conv.input[1])
    assert list(kernel.dims) == [2, 1, 3, 3]


def test_shipped_mnist_cnn_compresses_as_the_readme_says(tmp_path):
    root = __import__("pathlib").Path(__file__).resolve().parent.parent / "models"
    out, report = tmp_path / "small_cnn.onnx", tmp_path / "report.json"
    assert main(["compress", str(root / "mnist_cnn_8x16.onnx"), "--domain", str(root / "mnist_cnn_8x16.box.json"),
                 "-o", str(out), "--report", str(report), "-q"]) == 0
    data = json.loads(report.read_text())
    assert data["verification"]["passed"] is True and data["totals"]["unknown"] == 0
    convs = [e for e in data["layers"] if e["kind"] == "conv"]
    assert len(convs) == 2 and all(e["channels"]["kept"] < e["channels"]["count"] for e in convs)
    relus = [n.name or n.output[0] for n in onnx.load(str(root / "mnist_cnn_8x16.onnx")).graph.node if n.op_type == "Relu"]
    assert [e["node"] for e in data["layers"]] == relus     # each layer names the Relu node that ends it
    kernels = {t.name: list(t.dims) for t in onnx.load(str(out)).graph.initializer}
    conv_nodes = [n for n in onnx.load(str(out)).graph.node if n.op_type == "Conv"]
    assert [kernels[n.input[1]][0] for n in conv_nodes] == [e["channels"]["kept"] for e in convs]


class _PoolCNN(torch.nn.Module):
    """Padding, average pooling (with and without counting the padding) and global average pooling."""

    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(1, 3, 3)
        self.pad = torch.nn.ZeroPad2d((1, 0, 2, 1))
        self.pool = torch.nn.AvgPool2d(2, stride=2, padding=1, count_include_pad=False)
        self.c2 = torch.nn.Conv2d(3, 4, 2)
        self.pool2 = torch.nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=True)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        x = self.pool(self.pad(torch.relu(self.c1(x))))
        x = torch.relu(self.c2(x))
        x = torch.nn.functional.adaptive_avg_pool2d(self.pool2(x), 1)
        return self.fc(x.flatten(1))


def test_padding_and_average_pooling_import_exactly(tmp_path):
    torch.manual_seed(3)
    path = export_torch(_PoolCNN(), tmp_path / "pool.onnx", dynamo=False)
    model = onnx.load(str(path))
    assert {"Pad", "AveragePool", "GlobalAveragePool"} <= {n.op_type for n in model.graph.node}
    net = import_model(path)
    X = RNG.uniform(0, 1, size=(7, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(net.forward(X.reshape(7, -1)), run_onnx(model, X)[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(run_onnx(to_onnx(net), X)[0], run_onnx(model, X)[0], rtol=1e-5, atol=1e-5)
    # pooling is folded into the next layer (dense): the count of what the file stores is kept for the report
    tensors = [*model.graph.initializer, *(a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute)]
    stored = sum(int(np.prod(t.dims)) for t in tensors if t.data_type == onnx.TensorProto.FLOAT)
    assert net.metadata["stored_parameters"] == stored


def test_channels_last_input_transposed_to_a_convolution_stays_a_convolution():
    """As TensorFlow exports write: an NHWC input, ``Transpose(perm=[0, 3, 1, 2])``, then ``Conv``."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(11)
    kernel = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    dense = rng.normal(size=(4 * 3 * 3, 2)).astype(np.float32)
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("Mul", ["t", "scale"], ["s"]),
             helper.make_node("Conv", ["s", "k", "b"], ["c"], strides=[2, 2]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Transpose", ["r"], ["rt"], perm=[0, 2, 3, 1]),
             helper.make_node("Reshape", ["rt", "shape"], ["f"]),
             helper.make_node("MatMul", ["f", "w"], ["y"])]
    inits = [numpy_helper.from_array(kernel, "k"), numpy_helper.from_array(rng.normal(size=4).astype(np.float32), "b"),
             numpy_helper.from_array(np.array([2.0, 0.5, 1.0], np.float32).reshape(1, 3, 1, 1), "scale"),
             numpy_helper.from_array(np.array([-1, 36], np.int64), "shape"), numpy_helper.from_array(dense, "w")]
    graph = helper.make_graph(nodes, "nhwc", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 7, 7, 3])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 2])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    net = import_model(model)
    first = net.layers[0]
    assert isinstance(first, Conv) and first.channels_last and first.in_shape == (3, 7, 7)
    X = RNG.uniform(-1, 1, size=(5, 7, 7, 3)).astype(np.float32)
    reference = run_onnx(model, X)[0]
    np.testing.assert_allclose(net.forward(X.reshape(5, -1)), reference, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(run_onnx(to_onnx(net), X)[0], reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attrs,message", [({"strides": [0, 1]}, "strides"), ({"pads": [1, 1, -1, 0]}, "pads"),
                                           ({"dilations": [1, 0]}, "dilations"), ({"kernel_shape": [2, 2]}, "kernel_shape")])
def test_hostile_convolution_attributes_are_one_line_errors(attrs, message):
    from onnx import helper, numpy_helper

    from exactcomp.errors import ModelError

    kernel = numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "k")
    nodes = [helper.make_node("Conv", ["x", "k"], ["c"], **attrs), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Flatten", ["r"], ["y"])]
    graph = helper.make_graph(nodes, "bad", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 1, 6, 6])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], initializer=[kernel])
    with pytest.raises(ModelError, match=message):
        import_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


class _PooledHead(torch.nn.Module):
    """conv -> relu -> average pooling -> dense, and a global-average-pooling classifier."""

    def __init__(self, global_pool: bool, include_pad: bool):
        super().__init__()
        self.c1 = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.pool = torch.nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=include_pad)
        self.global_pool = global_pool
        self.fc = torch.nn.Linear(4 if global_pool else 4 * 16, 5)
        self.out = torch.nn.Linear(5, 2)
        with torch.no_grad():
            self.c1.bias[1] = -50.0          # a dead channel: the pooled layer loses its input channel

    def forward(self, x):
        h = torch.relu(self.c1(x))
        h = torch.nn.functional.adaptive_avg_pool2d(h, 1) if self.global_pool else self.pool(h)
        return self.out(torch.relu(self.fc(h.flatten(1))))


@pytest.mark.parametrize("global_pool,include_pad", [(False, False), (False, True), (True, False)])
def test_average_pooling_before_a_dense_layer_stays_pooling(tmp_path, global_pool, include_pad):
    torch.manual_seed(5)
    path = export_torch(_PooledHead(global_pool, include_pad), tmp_path / "pooled.onnx", dynamo=False)
    model = onnx.load(str(path))
    net = import_model(path)
    assert [type(layer).__name__ for layer in net.layers] == ["Conv", "Pooled", "Dense"]
    assert net.parameter_count == net.metadata["stored_parameters"]      # nothing folded into a bigger matrix
    X = RNG.uniform(0, 1, size=(6, 1, 8, 8)).astype(np.float32)
    reference = run_onnx(model, X)[0]
    np.testing.assert_allclose(net.forward(X.reshape(6, -1)), reference, rtol=1e-5, atol=1e-5)
    box = Box(np.zeros(64), np.ones(64))
    _, pre = net.forward(box.sample(20_000, RNG), return_preactivations=True)
    for b, g in zip(compute_bounds(net, box), pre):
        assert np.all(g >= b.lower - 1e-12) and np.all(g <= b.upper + 1e-12)
    result = analyze(net, box, AnalysisOptions(time_limit=20))
    small = compress_network(net, result)
    assert small.layers[0].channels == 3 and small.layers[1].pool.in_shape[0] == 3
    Xs = box.sample(5_000, RNG)
    np.testing.assert_allclose(small.forward(Xs), net.forward(Xs), rtol=1e-9, atol=1e-9)
    exported = to_onnx(small)
    assert "AveragePool" in {n.op_type for n in exported.graph.node}
    np.testing.assert_allclose(run_onnx(exported, Xs.astype(np.float32).reshape(-1, 1, 8, 8))[0], net.forward(Xs),
                               rtol=1e-4, atol=1e-4)


def test_torch_engine_through_a_pooled_layer_equals_the_float64_bound(tmp_path):
    torch.manual_seed(6)
    net = import_model(export_torch(_PooledHead(False, False), tmp_path / "p.onnx", dynamo=False))
    assert_engine_matches_split_bound(net, Box(np.zeros(64), np.ones(64)), [(2, 0, 1), (2, 1, -1)], seed=1)


@pytest.mark.parametrize("reader", ["dense", "conv", "padded_conv"])
def test_constant_channels_fold_into_the_next_layer_where_exact(reader):
    """Channels with a zero kernel are the constant relu(bias): folded into a dense or unpadded convolution
    reader's bias and removed; kept before a padded convolution (border windows see fewer taps)."""
    rng = np.random.default_rng(2)
    C, H, W = 4, 6, 6
    kernel = rng.normal(size=(C, 1, 3, 3))
    kernel[[1, 3]] = 0.0
    bias = rng.normal(size=C)
    bias[[1, 3]] = [0.7, 1.3]
    conv = Conv(kernel, bias, (1, H, W), 1, np.arange(C * H * W), pads=(1, 1, 1, 1))
    if reader == "dense":
        nxt = Dense(rng.normal(size=(5, conv.width)), rng.normal(size=5), 2, np.arange(5))
    else:
        pads = (1, 1, 1, 1) if reader == "padded_conv" else (0, 0, 0, 0)
        size = H if reader == "padded_conv" else H - 2
        nxt = Conv(rng.normal(size=(3, C, 3, 3)), rng.normal(size=3), (C, H, W), 2, np.arange(3 * size * size), pads=pads)
    out = Dense(rng.normal(size=(2, nxt.width)), rng.normal(size=2), 3, np.arange(2))
    net = Network((conv, nxt, out), TensorInfo("x", (1, H, W), "float64"), TensorInfo("y", (2,), "float64"),
                  (TensorInfo("y", (2,), "float64"),), compute_dtype="float64")
    box = Box(np.zeros(net.input_size), np.ones(net.input_size))
    small = compress_network(net, analyze(net, box))
    x = box.sample(2000, rng)
    np.testing.assert_allclose(small.forward(x), net.forward(x), atol=1e-9)
    dead = (net.forward(x, return_preactivations=True)[1][0].reshape(-1, C, H * W) <= 0).all(axis=(0, 2))
    assert not dead[[1, 3]].any()
    expected = C - dead.sum() - (0 if reader == "padded_conv" else 2)
    assert small.layers[0].channels == expected
