"""Skip connections (residual networks): the analysis against an exact activation-pattern oracle that
follows every path, bounds by sampling, import/export of torch ResNet blocks against onnxruntime, and
compression checked by brute-force forward passes."""

from __future__ import annotations

import time
import json
import warnings

import numpy as np
import onnx
import pytest

import exactcomp
from exactcomp.analysis import AnalysisOptions, Status, analyze
from exactcomp.bounds.crown import compute_bounds
from exactcomp.cli.main import main
from exactcomp.ir.conv import Conv
from exactcomp.domain import Box
from exactcomp.ir.network import Dense, Network, TensorInfo
from exactcomp.io.onnx_export import to_onnx
from exactcomp.io.onnx_import import import_model
from exactcomp.rewrite.rules import compress_network
from exactcomp.ir.skip import Embed, Skip

from .conftest import assert_engine_matches_split_bound, export_torch, run_onnx
from .oracles import MILP_ONLY, WEAK_SCREEN, check_against_oracle
from .oracles import exact_ranges

RNG = np.random.default_rng(5)


def _dense(rng, fan_in, width, layer_id, shift=-0.3, bias=True):
    b = rng.normal(size=width) + shift if bias else np.zeros(width)
    return Dense(rng.normal(size=(width, fan_in)), b, layer_id, np.arange(width))


def _skip_net(seed: int, shift: float) -> Network:
    """3 inputs -> 3 -> 3 -> 2 -> 1 with an identity shortcut (layer 1 -> layer 3's input... of width 3
    into layer 2), a dense skip from the input into layer 2 and one from layer 1 into the output."""
    rng = np.random.default_rng(seed)
    layers = (_dense(rng, 3, 3, 1, shift), _dense(rng, 3, 3, 2, shift), _dense(rng, 3, 2, 3, shift),
              _dense(rng, 2, 1, 4, 0.0))
    skips = (Skip(2, 0, Dense(rng.normal(size=(2, 3)), np.zeros(2), 0, np.arange(2))),
             Skip(1, -1, _dense(rng, 3, 3, 0, bias=False)),
             Skip(3, 0, _dense(rng, 3, 1, 0, bias=False)))
    info = TensorInfo("x", (3,), "float64")
    out = TensorInfo("y", (1,), "float64")
    return Network(layers, info, out, (out,), "float64", skips=skips)


def _residual_net(seed: int, shift: float) -> Network:
    """2 inputs -> 3 -> 3 -> 3 -> 1 with the identity shortcut from layer 1 into layer 3."""
    rng = np.random.default_rng(seed)
    layers = (_dense(rng, 2, 3, 1, shift), _dense(rng, 3, 3, 2, shift), _dense(rng, 3, 3, 3, shift),
              _dense(rng, 3, 1, 4, 0.0))
    info, out = TensorInfo("x", (2,), "float64"), TensorInfo("y", (1,), "float64")
    return Network(layers, info, out, (out,), "float64", skips=(Skip(2, 0, Embed.identity(3)),))


@pytest.mark.parametrize("build,seed,shift", [(_skip_net, 0, -0.3), (_skip_net, 1, 0.2), (_residual_net, 2, -0.5),
                                              (_residual_net, 3, 0.0)])
@pytest.mark.parametrize("schedule", ["default", "milp-only"])
def test_skip_network_statuses_match_the_exact_oracle(build, seed, shift, schedule):
    net = build(seed, shift)
    box = Box(-np.ones(net.input_size), np.linspace(0.5, 1.5, net.input_size))
    lo, hi = exact_ranges(net, box)
    options = AnalysisOptions(**WEAK_SCREEN, **({"provers": MILP_ONLY} if schedule == "milp-only" else {}))
    check_against_oracle(analyze(net, box, options), lo, hi)


def test_forward_and_bounds_follow_every_path():
    net = _skip_net(4, 0.0)
    box = Box(-np.ones(3), np.ones(3))
    X = box.sample(50_000, RNG)
    L = net.layers
    h1 = np.maximum(L[0].apply(X), 0)
    g2 = L[1].apply(h1) + net.skips[0].op.apply(X)           # skips are sorted by (target, source)
    h2 = np.maximum(g2, 0)
    g3 = L[2].apply(h2) + net.skips[1].op.apply(h1)
    y = L[3].apply(np.maximum(g3, 0)) + net.skips[2].op.apply(h1)
    out, pre = net.forward(X, return_preactivations=True)
    np.testing.assert_allclose(out, y, atol=1e-12)
    np.testing.assert_allclose(pre[2], g3, atol=1e-12)
    for b, g in zip(compute_bounds(net, box), pre):
        assert np.all(g >= b.lower - 1e-12) and np.all(g <= b.upper + 1e-12)


# ---------------------------------------------------------------- torch ResNet blocks
torch = pytest.importorskip("torch")


class _Block(torch.nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.c1 = torch.nn.Conv2d(c_in, c_out, 3, stride, 1)
        self.bn1 = torch.nn.BatchNorm2d(c_out)
        self.c2 = torch.nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.bn2 = torch.nn.BatchNorm2d(c_out)
        self.short = torch.nn.Identity() if stride == 1 and c_in == c_out else torch.nn.Conv2d(c_in, c_out, 1, stride)

    def forward(self, x):
        return torch.relu(self.bn2(self.c2(torch.relu(self.bn1(self.c1(x))))) + self.short(x))


class _ResNet(torch.nn.Module):
    def __init__(self, dead_bias: float = 0.0):
        super().__init__()
        self.stem = torch.nn.Conv2d(1, 4, 3, 1, 1)
        self.b1, self.b2 = _Block(4, 4, 1), _Block(4, 8, 2)
        self.fc = torch.nn.Linear(8 * 4 * 4, 3)
        for m in self.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
        with torch.no_grad():
            self.b1.c1.bias[:2] -= dead_bias      # two channels of the first block's inner layer die

    def forward(self, x):
        return self.fc(self.b2(self.b1(torch.relu(self.stem(x)))).flatten(1))


@pytest.mark.parametrize("dynamo", [False, True])
def test_torch_resnet_imports_with_skips_and_exports_with_add_nodes(tmp_path, dynamo):
    torch.manual_seed(0)
    path = export_torch(_ResNet(), tmp_path / "resnet.onnx", dynamo)
    net = import_model(path)
    assert [type(layer).__name__ for layer in net.layers] == ["Conv"] * 5 + ["Dense"]
    assert [(s.target, s.source, type(s.op).__name__) for s in net.skips] == [(2, 0, "Embed"), (4, 2, "Conv")]
    model = onnx.load(str(path))
    X = RNG.uniform(0, 1, size=(4, 1, 8, 8)).astype(np.float32)
    reference = np.vstack([run_onnx(model, X[i:i + 1])[0] for i in range(len(X))])
    np.testing.assert_allclose(net.forward(X.reshape(4, -1)), reference, rtol=1e-5, atol=1e-5)
    exported = to_onnx(net)
    assert sum(n.op_type == "Add" for n in exported.graph.node) == 2
    outputs = np.vstack([run_onnx(exported, X[i:i + 1])[0] for i in range(len(X))])
    np.testing.assert_allclose(outputs, reference, rtol=1e-5, atol=1e-5)


def test_resnet_with_dead_channels_compresses_and_verifies(tmp_path):
    torch.manual_seed(2)
    path = export_torch(_ResNet(dead_bias=100.0), tmp_path / "resnet.onnx", dynamo=False)
    box = tmp_path / "box.json"
    box.write_text('{"lower": 0.0, "upper": 1.0}')
    out, report = tmp_path / "small.onnx", tmp_path / "report.json"
    assert main(["compress", str(path), "--domain", str(box), "-o", str(out), "--report", str(report), "-q",
                 "--time-limit", "5"]) == 0
    data = json.loads(report.read_text())
    assert data["verification"]["passed"] is True
    inner = data["layers"][1]                       # the first block's inner convolution
    assert inner["channels"]["kept"] <= 2
    net, small = import_model(path), import_model(out)
    X = np.random.default_rng(0).uniform(0, 1, size=(2000, 64))
    np.testing.assert_allclose(small.forward(X), net.forward(X), rtol=1e-4, atol=1e-4)
    assert sum(n.op_type == "Add" for n in onnx.load(str(out)).graph.node) == 2


def test_thinned_identity_shortcut_is_exact():
    """Neurons removed on both sides of an identity shortcut: the Embed keeps only surviving pairs."""
    net = _residual_net(7, -0.2)
    box = Box(-np.ones(2), np.ones(2))
    result = analyze(net, box, AnalysisOptions())
    small = compress_network(net, result)
    X = box.sample(20_000, RNG)
    np.testing.assert_allclose(small.forward(X), net.forward(X), atol=1e-12)
    np.testing.assert_allclose(run_onnx(to_onnx(small), X.astype(np.float64))[0], net.forward(X), rtol=1e-6,
                               atol=1e-6)


def test_conv_skip_into_a_convolution_bounds_are_sound():
    rng = np.random.default_rng(9)
    c1 = Conv(rng.normal(size=(3, 1, 3, 3)), rng.normal(size=3), (1, 6, 6), 1, np.arange(3 * 36), pads=(1, 1, 1, 1))
    c2 = Conv(rng.normal(size=(3, 3, 3, 3)), rng.normal(size=3), (3, 6, 6), 2, np.arange(3 * 36), pads=(1, 1, 1, 1))
    c3 = Conv(rng.normal(size=(2, 3, 3, 3)), rng.normal(size=2), (3, 6, 6), 3, np.arange(2 * 9), stride=(2, 2),
              pads=(1, 1, 1, 1))
    short = Conv(rng.normal(size=(2, 3, 1, 1)), np.zeros(2), (3, 6, 6), 0, np.arange(2 * 9), stride=(2, 2))
    out = Dense(rng.normal(size=(2, 18)), rng.normal(size=2), 4, np.arange(2))
    info, y = TensorInfo("x", (1, 6, 6), "float64"), TensorInfo("y", (2,), "float64")
    net = Network((c1, c2, c3, out), info, y, (y,), "float64", skips=(Skip(2, 0, short),))
    box = Box(np.zeros(36), np.ones(36))
    _, pre = net.forward(box.sample(20_000, RNG), return_preactivations=True)
    for b, g in zip(compute_bounds(net, box), pre):
        assert np.all(g >= b.lower - 1e-12) and np.all(g <= b.upper + 1e-12)
    result = analyze(net, box, AnalysisOptions(time_limit=30))
    for layer, g in zip(result.layers, pre):       # no stable claim contradicted by the samples
        assert np.all(g[:, layer.status == Status.INACTIVE] <= 0)
        assert np.all(g[:, layer.status == Status.ACTIVE] >= 0)


@pytest.mark.parametrize("build,seed,shift", [(_skip_net, 5, -0.2), (_residual_net, 6, -0.4), (_skip_net, 8, 0.1)])
def test_branch_and_bound_through_skips_agrees_with_the_oracle(build, seed, shift):
    from exactcomp.bab.engine import branch_and_bound, check_certificate

    net = build(seed, shift)
    box = Box(-np.ones(net.input_size), np.ones(net.input_size))
    lo, hi = exact_ranges(net, box)
    bounds = [(b.lower, b.upper) for b in compute_bounds(net, box)]
    tau, decided = 1e-4, 0
    for k in range(1, len(net.hidden)):
        for t in range(net.layers[k].width):
            for sign, extreme in ((1, hi[k][t]), (-1, -lo[k][t])):     # extreme = max of σ g
                result = branch_and_bound(net, box, bounds, (k, t, sign), tau, deadline=time.perf_counter() + 10)
                if result.status == "proven":
                    assert extreme <= -tau + 1e-9 and check_certificate(net, box, result.certificate)
                    decided += 1
                elif result.status == "witness":
                    assert extreme > 0
                    decided += 1
    assert decided > 0


@pytest.mark.parametrize("build,seed", [(_skip_net, 0), (_skip_net, 3), (_residual_net, 1), (_residual_net, 4)])
def test_split_bounds_through_skips_hold_on_sampled_subdomains(build, seed):
    """β-CROWN bounds of random subdomains (random phases, α, β) never below a sampled value inside them."""
    from exactcomp.bab.split_bounds import phases_of, split_bound

    net = build(seed, 0.0)
    box = Box(-np.ones(net.input_size), np.ones(net.input_size))
    bounds = [(b.lower, b.upper) for b in compute_bounds(net, box)]
    rng = np.random.default_rng(seed)
    X = box.sample(40_000, rng)
    _, pre = net.forward(X, return_preactivations=True)
    k = len(net.hidden) - 1
    B = 24
    splits, alpha, beta = [], [], []
    for lo, hi in bounds[:k]:
        unstable = phases_of(lo, hi)[2]
        splits.append(np.where(unstable, rng.integers(-1, 2, size=(B, lo.size)), 0))
        alpha.append(rng.uniform(0, 1, size=(B, lo.size)))
        beta.append(rng.uniform(0, 1, size=(B, lo.size)))
    checked = 0
    for t in range(net.layers[k].width):
        for sign in (1, -1):
            bound = split_bound(net, box, bounds, (k, t, sign), splits, alpha, beta)
            for i in range(B):
                inside = np.ones(len(X), dtype=bool)
                for j in range(k):
                    inside &= np.all((splits[j][i] == 0) | ((splits[j][i] > 0) & (pre[j] >= 0))
                                     | ((splits[j][i] < 0) & (pre[j] <= 0)), axis=1)
                if inside.any():
                    assert np.max(sign * pre[k][inside, t]) <= bound[i] + 1e-9
                    checked += 1
    assert checked > 20


def test_torch_engine_equals_the_float64_split_bound_with_skips():
    net = _skip_net(2, 0.0)
    assert_engine_matches_split_bound(net, Box(-np.ones(3), np.ones(3)), [(2, 0, 1), (2, 1, -1)], subdomains=8)


def test_shipped_residual_network_compresses_and_verifies(tmp_path):
    root = __import__("pathlib").Path(__file__).resolve().parent.parent / "models"
    out, report = tmp_path / "small.onnx", tmp_path / "report.json"
    assert main(["compress", str(root / "mnist_resnet_tiny.onnx"), "--domain", str(root / "mnist_resnet_tiny.box.json"),
                 "-o", str(out), "--report", str(report), "-q", "--time-limit", "5"]) == 0
    data = json.loads(report.read_text())
    assert data["verification"]["passed"] is True and data["parameters"]["after"] < data["parameters"]["before"]
    assert sum(n.op_type == "Add" for n in onnx.load(str(out)).graph.node) == 2


def test_branches_combined_by_sub_concat_and_slice_import_exactly(tmp_path):
    """A skip from the input (subtracted), and one into the output through Concat, Slice and a scale."""

    class _Graph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = torch.nn.Linear(6, 5), torch.nn.Linear(5, 5), torch.nn.Linear(5, 6)
            self.d, self.e = torch.nn.Linear(6, 3), torch.nn.Linear(6, 6)

        def forward(self, x):
            h1 = torch.relu(self.a(x))
            h2 = torch.relu(self.b(h1) - 0.5 * h1 + h1)
            h3 = torch.relu(self.c(h2) - self.e(x))
            return self.d(h3) + torch.cat([h1, h1[:, :1]], 1)[:, :3] * 2.0

    torch.manual_seed(0)
    path = tmp_path / "graph.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Graph().eval(), (torch.zeros(1, 6),), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    net = import_model(path)
    assert [(s.target, s.source) for s in net.skips] == [(2, -1), (3, 0)]
    X = RNG.uniform(-1, 1, size=(9, 6)).astype(np.float32)
    reference = run_onnx(onnx.load(str(path)), X)[0]
    np.testing.assert_allclose(net.forward(X), reference, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(run_onnx(to_onnx(net), X)[0], reference, rtol=1e-5, atol=1e-5)


def test_dead_residual_branch_collapses_to_the_shortcut(tmp_path):
    """The first block's inner layer never fires: its output is 0, the block is relu(shortcut + bias).
    The inner layer goes and the block's layer reads the stem through the shortcut plus the bias (Shift);
    the function is unchanged (float64 forward passes, and the exported model under onnxruntime)."""
    torch.manual_seed(4)
    module = _ResNet()
    with torch.no_grad():
        module.b1.c1.bias[:] = -1000.0
    path = export_torch(module, tmp_path / "dead.onnx", dynamo=False)
    net = import_model(path)
    box = Box(np.zeros(64), np.ones(64))
    result = analyze(net, box, AnalysisOptions(time_limit=5))
    assert np.all(result.layers[1].status == Status.INACTIVE)
    small = compress_network(net, result)
    assert [type(layer).__name__ for layer in small.layers][:2] == ["Conv", "Shift"]
    assert len(small.layers) == len(net.layers) - 1 and [(s.target, s.source) for s in small.skips] == [(3, 1)]
    X = box.sample(5_000, RNG)
    np.testing.assert_allclose(small.forward(X), net.forward(X), rtol=1e-9, atol=1e-9)
    model = to_onnx(small)
    np.testing.assert_allclose(run_onnx(model, X[:200])[0], run_onnx(str(path), X[:200])[0], rtol=1e-4, atol=1e-4)
    # the new op works through the whole pipeline: torch engine = float64 bound, and a re-analysis
    assert_engine_matches_split_bound(small, box, [(len(small.hidden) - 1, 0, 1.0), (2, 3, -1.0)])
    again = analyze(small, box, AnalysisOptions(time_limit=5))
    assert [la.layer_id for la in again.layers] == [layer.layer_id for layer in small.hidden] == [1, 3, 4, 5]
    assert again.layer(4) is again.layers[2]          # looked up by id, not by position (ids have a gap now)
    smaller = compress_network(small, again)          # compressing the compressed network stays exact
    np.testing.assert_allclose(smaller.forward(X), net.forward(X), rtol=1e-9, atol=1e-9)
    # both convolutions of the dead block are gone: the inner one, and the outer one (now its bias alone)
    assert [n.op_type for n in model.graph.node].count("Conv") == sum(n.op_type == "Conv" for n in
                                                                      onnx.load(str(path)).graph.node) - 2


def test_resnet_with_a_global_average_pooling_head(tmp_path):
    """The usual ResNet head (global average pooling, then the classifier) stays pooling after the skips."""

    class _GapResNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = torch.nn.Conv2d(1, 4, 3, 1, 1)
            self.block = _Block(4, 4, 1)
            self.fc = torch.nn.Linear(4, 3)
            with torch.no_grad():
                self.stem.bias[0] = -100.0      # a dead stem channel: the shortcut and the pooling lose it

        def forward(self, x):
            h = self.block(torch.relu(self.stem(x)))
            return self.fc(torch.nn.functional.adaptive_avg_pool2d(h, 1).flatten(1))

    torch.manual_seed(8)
    path = export_torch(_GapResNet(), tmp_path / "gap.onnx", dynamo=False)
    net = import_model(path)
    assert [type(layer).__name__ for layer in net.layers] == ["Conv", "Conv", "Conv", "Pooled"]
    box = Box(np.zeros(64), np.ones(64))
    small = compress_network(net, analyze(net, box, AnalysisOptions(time_limit=5)))
    assert small.parameter_count < net.parameter_count
    X = box.sample(5_000, RNG)
    np.testing.assert_allclose(small.forward(X), net.forward(X), rtol=1e-9, atol=1e-9)
    exported = to_onnx(small)
    assert {"Add", "AveragePool"} <= {n.op_type for n in exported.graph.node}
    np.testing.assert_allclose(run_onnx(exported, X.astype(np.float32).reshape(-1, 1, 8, 8))[0], net.forward(X),
                               rtol=1e-4, atol=1e-4)


def test_parallel_branches_concatenated_into_a_convolution(tmp_path):
    """Two towers reading the input (Inception-style), concatenated and convolved: the second tower becomes a
    layer whose input is a skip from the input, and the convolution over the concatenation one convolution
    per part (main and skip)."""

    class _Towers(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.Conv2d(1, 2, 1)
            self.c, self.fc = torch.nn.Conv2d(5, 4, 3, stride=2), torch.nn.Linear(4 * 3 * 3, 2)

        def forward(self, x):
            h = torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], 1)
            return self.fc(torch.relu(self.c(h)).flatten(1))

    torch.manual_seed(0)
    path = export_torch(_Towers(), tmp_path / "towers.onnx", dynamo=False)
    net = import_model(path)
    assert [type(layer).__name__ for layer in net.layers] == ["Conv", "Dense", "Conv", "Dense"]
    assert [(s.target, s.source, type(s.op).__name__) for s in net.skips] == [(1, -1, "Conv"), (2, 0, "Conv")]
    X = RNG.uniform(0, 1, size=(5, 1, 8, 8)).astype(np.float32)
    reference = run_onnx(onnx.load(str(path)), X)[0]
    np.testing.assert_allclose(net.forward(X.reshape(5, -1)), reference, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(run_onnx(to_onnx(net), X)[0], reference, rtol=1e-5, atol=1e-5)
    box = Box(np.zeros(64), np.ones(64))
    lo_hi = compute_bounds(net, box)
    _, pre = net.forward(box.sample(20_000, RNG), return_preactivations=True)
    for b, g in zip(lo_hi, pre):
        assert np.all(g >= b.lower - 1e-12) and np.all(g <= b.upper + 1e-12)
    small = compress_network(net, analyze(net, box, AnalysisOptions(time_limit=10)))
    Xs = box.sample(5_000, RNG)
    np.testing.assert_allclose(small.forward(Xs), net.forward(Xs), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dead", [0, 2])
def test_a_whole_dead_layer_at_either_end_of_a_shortcut_compresses_exactly(dead):
    """Every neuron of the shortcut's source (layer 1) or target (layer 3) dead: the skip carries nothing and
    goes (it used to fail thinning an op to zero channels); the written network computes the original's
    function, checked on samples in float64."""
    rng = np.random.default_rng(7)
    layers = [_dense(rng, 2, 3, 1, 0.0), _dense(rng, 3, 3, 2, 0.0), _dense(rng, 3, 3, 3, 0.0), _dense(rng, 3, 1, 4, 0.0)]
    layers[dead] = Dense(layers[dead].W, np.full(3, -100.0), layers[dead].layer_id, layers[dead].neuron_ids)
    info, out = TensorInfo("x", (2,), "float64"), TensorInfo("y", (1,), "float64")
    net = Network(tuple(layers), info, out, (out,), "float64", skips=(Skip(2, 0, Embed.identity(3)),))
    box = Box(-np.ones(2), np.ones(2))
    result = exactcomp.compress(net, box, time_limit=30)
    assert np.all(result.analysis.layers[dead].status == Status.INACTIVE)
    assert result.parameters_after < result.parameters_before
    X = box.sample(2000, RNG)
    np.testing.assert_allclose(result.compressed.forward(X), net.forward(X), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dead", [2, 4])
def test_the_rewriter_takes_a_whole_layer_at_either_end_of_a_projection_shortcut(tmp_path, dead):
    """Statuses with every neuron of the convolution shortcut's source (2) or target (4) inactive: the rewrite
    goes through (the payoff tries such hypothetical statuses; a shortcut thinned to zero channels used to raise)
    and removes at least that layer's kernels."""
    from exactcomp.results import Status
    from exactcomp.rewrite.payoff import written_size

    torch.manual_seed(0)
    net = import_model(export_torch(_ResNet(), tmp_path / "resnet.onnx", False))
    box = Box(np.zeros(net.input_size), np.ones(net.input_size))
    statuses = [np.full(layer.width, Status.UNKNOWN, dtype=np.int8) for layer in net.hidden]
    before = written_size(net, box, statuses)
    statuses[dead][:] = Status.INACTIVE
    assert written_size(net, box, statuses) < before
