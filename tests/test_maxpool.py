"""Max pooling: the op against torch, its lowering to comparison neurons against the raised network's forward
pass, import/export against onnxruntime, the analysis against exact oracles (activation-pattern enumeration,
and a MILP with the textbook max encoding), and dead channels through a pooling against forward passes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.optimize import Bounds, LinearConstraint, milp

from exactcomp.analysis import AnalysisOptions, Status, analyze
from exactcomp.bounds.crown import compute_bounds
from exactcomp.cli.main import main
from exactcomp.domain import Box
from exactcomp.ir.conv import Conv, conv_output_size
from exactcomp.ir.lowering import lower_max_pools, raise_max_pools
from exactcomp.ir.maxpool import MaxPool, MaxPoolLayer, PoolLevel
from exactcomp.ir.network import Dense, Network, TensorInfo
from exactcomp.ir.skip import Embed, Skip
from exactcomp.io.onnx_export import to_onnx
from exactcomp.io.onnx_import import import_model
from exactcomp.rewrite.rules import compress_network

from .conftest import assert_engine_matches_split_bound, export_torch, run_onnx
from .oracles import WEAK_SCREEN
from .oracles import exact_ranges

torch = pytest.importorskip("torch")
F = torch.nn.functional
RNG = np.random.default_rng(11)


def _random_pool(rng, in_shape):
    """A random geometry whose windows all take the same number of tournament levels (None if not)."""
    kernel = tuple(int(v) for v in rng.integers(1, 4, 2))
    stride, dilation = tuple(int(v) for v in rng.integers(1, 3, 2)), tuple(int(v) for v in rng.integers(1, 3, 2))
    pads = tuple(int(v) for v in rng.integers(0, 2, 4)) if rng.random() < 0.3 else (0, 0, 0, 0)
    pads = tuple(min(p, (k - 1) // 2) for p, k in zip(pads, kernel * 2))
    try:
        return MaxPool(in_shape, kernel, stride, pads, dilation)
    except ValueError:
        return None


def _torch_max_pool(pool: MaxPool, h: np.ndarray) -> np.ndarray:
    top, left, bottom, right = pool.pads
    x = F.pad(torch.tensor(h).reshape(len(h), *pool.in_shape), (left, right, top, bottom), value=-float("inf"))
    return F.max_pool2d(x, pool.kernel, pool.stride, dilation=pool.dilation).reshape(len(h), -1).numpy()


def test_max_pool_matches_torch():
    checked = 0
    for _ in range(80):
        pool = _random_pool(RNG, (2, int(RNG.integers(3, 8)), int(RNG.integers(3, 8))))
        if pool is None or min(pool.out_shape) < 1:
            continue
        h = RNG.normal(size=(5, pool.fan_in))
        np.testing.assert_array_equal(pool.apply(h), _torch_max_pool(pool, h))
        checked += 1
    assert checked > 30


def _raised_network(rng, channels=3, shape=(7, 6), reader="conv", residual=False, dtype="float64"):
    """conv -> ReLU -> max pool -> (conv | dense) -> ReLU [-> conv + shortcut from the pooling -> ReLU] -> dense."""
    H, W = shape
    conv = Conv(rng.normal(size=(channels, 1, 3, 3)), rng.normal(size=channels), (1, H, W), 1,
                np.arange(channels * H * W), pads=(1, 1, 1, 1))
    while (pool := _random_pool(rng, (channels, H, W))) is None:
        pass
    mp = MaxPoolLayer(pool, tuple(range(2, 2 + pool.depth)))
    nid = 2 + pool.depth
    if reader == "conv" or residual:
        nxt = Conv(rng.normal(size=(channels, channels, 3, 3)), rng.normal(size=channels), pool.out_shape, nid,
                   np.arange(pool.width), pads=(1, 1, 1, 1))
    else:
        nxt = Dense(rng.normal(size=(6, pool.width)), rng.normal(size=6), nid, np.arange(6))
    layers = [conv, mp, nxt]
    if residual:   # a second convolution, plus a shortcut from the pooling
        layers.append(Conv(rng.normal(size=(channels, channels, 3, 3)), rng.normal(size=channels), pool.out_shape,
                           nid + 1, np.arange(pool.width), pads=(1, 1, 1, 1)))
    out = Dense(rng.normal(size=(3, nxt.width)), rng.normal(size=3), nid + len(layers) - 2, np.arange(3))
    skips = (Skip(3, 1, Embed.identity(pool.width)),) if residual else ()
    return Network((*layers, out), TensorInfo("x", (1, H, W), dtype), TensorInfo("y", (3,), dtype),
                   (TensorInfo("y", (3,), dtype),), compute_dtype=dtype, skips=skips)


@pytest.mark.parametrize("reader,residual", [("conv", False), ("dense", False), ("conv", True)])
def test_lowering_is_exact_and_raises_back(reader, residual):
    for seed in range(6):
        rng = np.random.default_rng(seed)
        raised = _raised_network(rng, reader=reader, residual=residual)
        lowered = lower_max_pools(raised)
        assert all(isinstance(x, PoolLevel) for x in lowered.layers[1:1 + raised.layers[1].pool.depth])
        x = rng.normal(size=(64, raised.input_size))
        np.testing.assert_allclose(lowered.forward(x), raised.forward(x), rtol=1e-12, atol=1e-10)
        back = raise_max_pools(lowered)
        assert [type(x).__name__ for x in back.layers] == [type(x).__name__ for x in raised.layers]
        np.testing.assert_array_equal(back.forward(x), raised.forward(x))
        again = lower_max_pools(back)
        assert [x.layer_id for x in again.layers] == [x.layer_id for x in lowered.layers]
        assert again.widths == lowered.widths and len(again.skips) == len(lowered.skips)
        # the lowered layers' own operators agree with their sparse matrices (what formulations read)
        for op in [*lowered.layers, *(s.op for s in lowered.skips)]:
            M = op.matrix().toarray()
            h = rng.normal(size=(2, op.fan_in))
            lam = rng.normal(size=(2, op.width))
            np.testing.assert_allclose(op.apply(h), h @ M.T + op.b, atol=1e-10)
            np.testing.assert_allclose(op.apply_transpose(lam), lam @ M, atol=1e-10)
            assert np.all(op.apply_abs(np.abs(h)) >= np.abs(h) @ np.abs(M).T - 1e-10)


class _PoolNet(torch.nn.Module):
    def __init__(self, relu_first=True, kernel=2, stride=2, second=True):
        super().__init__()
        self.c1, self.c2 = torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.Conv2d(3, 4, 3)
        self.relu_first, self.kernel, self.stride, self.second = relu_first, kernel, stride, second
        size = conv_output_size(8, kernel, stride, 1, 0, 0) - 2
        size = conv_output_size(size, 2, 1, 1, 0, 0) if second else size
        self.fc = torch.nn.Linear(4 * size * size, 5)

    def forward(self, x):
        x = self.c1(x)
        x = F.max_pool2d(F.relu(x), self.kernel, self.stride) if self.relu_first else F.relu(F.max_pool2d(x, self.kernel, self.stride))
        x = F.relu(self.c2(x))
        x = F.max_pool2d(x, 2, 1) if self.second else x
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("dynamo", [False, True])
@pytest.mark.parametrize("relu_first,kernel,stride", [(True, 2, 2), (False, 2, 2), (True, 3, 1)])
def test_torch_max_pool_import_export_match_onnxruntime(tmp_path, dynamo, relu_first, kernel, stride):
    torch.manual_seed(0)
    path = export_torch(_PoolNet(relu_first, kernel, stride), tmp_path / "m.onnx", dynamo)
    net = import_model(path)
    assert any(isinstance(x, PoolLevel) for x in net.layers)
    x = RNG.random((16, 64))
    ref = np.vstack([run_onnx(str(path), x[i:i + 1])[0].reshape(1, -1) for i in range(16)])  # dynamo: batch 1
    np.testing.assert_allclose(net.forward(x), ref, atol=1e-5)
    model = to_onnx(net)
    assert [n.op_type for n in model.graph.node].count("MaxPool") == 2
    out = np.vstack([run_onnx(model, x[i:i + 1])[0].reshape(1, -1) for i in range(16)])
    np.testing.assert_allclose(out, ref, atol=1e-5)


def _tiny(rng, channels, shape, pool_kernel):
    """A network small enough for the activation-pattern oracle (about 12 hidden neurons)."""
    H, W = shape
    conv = Conv(rng.normal(size=(channels, 1, 1, 1)), rng.normal(size=channels) * 0.5, (1, H, W), 1,
                np.arange(channels * H * W))
    pool = MaxPool((channels, H, W), pool_kernel, pool_kernel)
    mp = MaxPoolLayer(pool, tuple(range(2, 2 + pool.depth)))
    nid = 2 + pool.depth
    dense = Dense(rng.normal(size=(2, pool.width)), rng.normal(size=2) * 0.5, nid, np.arange(2))
    out = Dense(rng.normal(size=(1, 2)), rng.normal(size=1), nid + 1, np.arange(1))
    raised = Network((conv, mp, dense, out), TensorInfo("x", (1, H, W), "float64"), TensorInfo("y", (1,), "float64"),
                     (TensorInfo("y", (1,), "float64"),), compute_dtype="float64")
    return lower_max_pools(raised)


@pytest.mark.parametrize("schedule", [("bounds", "witnesses", "bab"), ("bounds", "witnesses", "milp"), None])
def test_statuses_match_activation_pattern_oracle(schedule):
    """Model neurons: exactly the oracle's statuses; comparison neurons: every claim the oracle's."""
    margin = AnalysisOptions().margin
    for seed, (channels, shape, kernel) in enumerate([(1, (2, 2), (2, 2)), (2, (1, 2), (1, 2)), (1, (2, 3), (1, 3))]):
        net = _tiny(np.random.default_rng(seed), channels, shape, kernel)
        box = Box(-np.ones(net.input_size), np.ones(net.input_size))
        lo, hi = exact_ranges(net, box)
        options = AnalysisOptions(**({"provers": schedule, **WEAK_SCREEN} if schedule else {}))
        result = analyze(net, box, options)
        for layer, la, l, h in zip(net.hidden, result.layers, lo, hi):
            clear = (np.abs(h) > 2 * margin) & (np.abs(l) > 2 * margin)
            status = la.status
            assert not np.any((status == Status.INACTIVE) & (h > 0))
            assert not np.any((status == Status.ACTIVE) & (l < 0))
            assert not np.any((status == Status.UNSTABLE) & ((h <= 0) | (l >= 0)))
            if not isinstance(layer, PoolLevel):
                assert np.all((status == Status.INACTIVE)[clear] == (h <= 0)[clear])
                assert np.all((status == Status.UNSTABLE)[clear] == ((h > 0) & (l < 0))[clear])


def _interval(net_layers, box):
    """Plain interval bounds of conv -> ReLU -> max pool (raised form), for the big-M of the oracle MILP."""
    conv, mp = net_layers
    M = conv.matrix().toarray()
    mid, rad = (box.lower + box.upper) / 2, (box.upper - box.lower) / 2
    g_lo, g_hi = M @ mid + conv.b - np.abs(M) @ rad, M @ mid + conv.b + np.abs(M) @ rad
    return g_lo, g_hi


def _textbook_max_milp_ranges(raised, box):
    """Exact min/max of the pre-activations of the dense layer after ``conv -> ReLU -> max pool`` by a MILP
    that encodes the pooling directly (``p >= h_i``, ``p <= h_i + (U - L_i)(1 - z_i)``, ``Σ z_i = 1``) and the
    ReLU by big-M: independent of the comparison-neuron lowering."""
    conv, mp, dense = raised.layers[:3]
    n, m, q = raised.input_size, conv.width, mp.width
    g_lo, g_hi = _interval((conv, mp), box)
    h_hi = np.maximum(g_hi, 0)
    windows = [c * (mp.pool.in_shape[1] * mp.pool.in_shape[2]) + w for c in range(mp.pool.in_shape[0])
               for w in mp.pool.windows]
    taps = [(o, int(i)) for o, w in enumerate(windows) for i in w]
    # variables: x (n), g (m), h (m), a (m, binary), p (q), z (len(taps), binary)
    nv = n + 3 * m + q + len(taps)
    X, G, Hh, A, P, Z = 0, n, n + m, n + 2 * m, n + 3 * m, n + 3 * m + q
    rows, lb, ub = [], [], []

    def row(entries, lo, hi):
        r = np.zeros(nv)
        for j, v in entries:
            r[j] += v
        rows.append(r)
        lb.append(lo)
        ub.append(hi)

    Mc = conv.matrix().toarray()
    for i in range(m):
        row([(G + i, 1.0)] + [(X + j, -Mc[i, j]) for j in range(n)], conv.b[i], conv.b[i])
        row([(Hh + i, 1.0), (G + i, -1.0)], 0, np.inf)                              # h >= g
        row([(Hh + i, 1.0), (G + i, -1.0), (A + i, -g_lo[i])], -np.inf, -g_lo[i])   # h <= g - L(1 - a)
        row([(Hh + i, 1.0), (A + i, -max(g_hi[i], 0))], -np.inf, 0)                  # h <= U a
    for t, (o, i) in enumerate(taps):
        U = max(h_hi[k] for oo, k in taps if oo == o)
        row([(P + o, 1.0), (Hh + i, -1.0)], 0, np.inf)                               # p >= h_i
        row([(P + o, 1.0), (Hh + i, -1.0), (Z + t, U)], -np.inf, U)                  # p <= h_i + U (1 - z)
    for o in range(q):
        row([(Z + t, 1.0) for t, (oo, _) in enumerate(taps) if oo == o], 1, 1)
    bounds = Bounds(np.concatenate([box.lower, np.full(m, -np.inf), np.zeros(m), np.zeros(m), np.zeros(q), np.zeros(len(taps))]),
                    np.concatenate([box.upper, np.full(m, np.inf), h_hi, np.ones(m), np.full(q, h_hi.max()), np.ones(len(taps))]))
    integrality = np.zeros(nv)
    integrality[A:A + m] = 1
    integrality[Z:] = 1
    cons = LinearConstraint(np.array(rows), lb, ub)
    lo, hi = [], []
    for j in range(dense.width):
        c = np.zeros(nv)
        c[P:P + q] = dense.W[j]
        out = [milp(s * c, constraints=cons, integrality=integrality, bounds=bounds) for s in (1, -1)]
        assert all(o.status == 0 for o in out)
        lo.append(out[0].fun + dense.b[j])
        hi.append(-out[1].fun + dense.b[j])
    return np.array(lo), np.array(hi)


def test_layer_after_pooling_matches_textbook_max_milp():
    for seed in range(3):
        rng = np.random.default_rng(100 + seed)
        raised = _raised_network(rng, channels=2, shape=(4, 4), reader="dense")
        net = lower_max_pools(raised)
        box = Box(np.zeros(net.input_size), np.full(net.input_size, 0.5))
        lo, hi = _textbook_max_milp_ranges(raised, box)
        result = analyze(net, box)
        k = len(net.layers) - 2                      # the dense layer after the pooling
        status = result.layers[k].status
        margin = 2 * AnalysisOptions().margin
        clear = (np.abs(lo) > margin) & (np.abs(hi) > margin)
        assert clear.any()
        assert np.all((status == Status.INACTIVE)[clear] == (hi <= 0)[clear])
        assert np.all((status == Status.ACTIVE)[clear] == (lo >= 0)[clear])
        assert np.all((status == Status.UNSTABLE)[clear] == ((lo < 0) & (hi > 0))[clear])
        # and the bounds every prover used are sound
        b = compute_bounds(net, box)[k]
        assert np.all(b.lower <= lo + 1e-9) and np.all(b.upper >= hi - 1e-9)


def test_bounds_sound_by_sampling_and_engine_matches_split_bound():
    rng = np.random.default_rng(5)
    net = lower_max_pools(_raised_network(rng, channels=2, shape=(6, 5), reader="conv", residual=True))
    box = Box(np.zeros(net.input_size), np.ones(net.input_size))
    bounds = compute_bounds(net, box)
    x = box.sample(4000, rng)
    _, pre = net.forward(x, return_preactivations=True)
    for b, g in zip(bounds, pre):
        assert np.all(g.min(axis=0) >= b.lower - 1e-9) and np.all(g.max(axis=0) <= b.upper + 1e-9)
    last = len(net.hidden) - 1
    assert_engine_matches_split_bound(net, box, [(last, 0, 1.0), (last, 3, -1.0)])


def test_dead_channels_go_through_the_pooling():
    rng = np.random.default_rng(3)
    raised = _raised_network(rng, channels=4, shape=(6, 6), reader="conv", dtype="float32")  # onnxruntime: no double Conv
    conv = raised.layers[0]
    bias = conv.bias.copy()
    bias[[1, 2]] = -100.0                                         # two channels dead on the box
    conv = Conv(conv.kernel, bias, conv.in_shape, conv.layer_id, conv.neuron_ids, conv.stride, conv.pads)
    net = lower_max_pools(raised.with_layers([conv, *raised.layers[1:]]))
    box = Box(np.zeros(net.input_size), np.ones(net.input_size))
    result = analyze(net, box)
    small = compress_network(net, result)
    x = box.sample(20000, rng)
    dead = (net.forward(x, return_preactivations=True)[1][0].reshape(-1, 4, conv.positions) <= 0).all(axis=(0, 2))
    assert dead[[1, 2]].all()        # sampling: channels 1 and 2 never positive (and the others alive or dead by chance)
    kept = small.layers[0].channels
    assert kept == 4 - dead.sum() and raise_max_pools(small).layers[1].pool.in_shape[0] == kept
    np.testing.assert_allclose(small.forward(x), net.forward(x), atol=1e-9)
    model = to_onnx(small)
    assert [n.op_type for n in model.graph.node].count("MaxPool") == 1
    np.testing.assert_allclose(run_onnx(model, x)[0].reshape(len(x), -1), net.forward(x), rtol=1e-4, atol=1e-4)


def _bad_pool_model(tmp_path, **attrs):
    from onnx import TensorProto, helper, numpy_helper

    k = numpy_helper.from_array(np.ones((2, 1, 3, 3)), "k")
    nodes = [helper.make_node("Conv", ["x", "k"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p", *attrs.pop("extra_outputs", [])], name="pool", **attrs),
             helper.make_node("Flatten", ["p"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 1, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", None])], [k])
    import onnx

    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("attrs,words", [
    (dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1), "ceil_mode"),
    (dict(kernel_shape=[2, 2], extra_outputs=["idx"]), "Indices"),
    (dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), "different depths"),
    (dict(kernel_shape=[2, 2, 2]), "invalid"),
])
def test_unsupported_max_pool_is_a_one_line_error(tmp_path, capsys, attrs, words):
    path = _bad_pool_model(tmp_path, **attrs)
    box = tmp_path / "box.json"
    box.write_text(json.dumps({"lower": [0.0] * 36, "upper": [1.0] * 36}))
    out = tmp_path / "small.onnx"
    assert main(["compress", str(path), "--domain", str(box), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pool" in err[0] and words in err[0]
    assert not out.exists()


def test_shipped_max_pooling_cnn_compresses_as_the_readme_says(tmp_path):
    import onnx

    root = __import__("pathlib").Path(__file__).resolve().parent.parent / "models"
    model = root / "mnist_cnn_maxpool.onnx"
    out, report = tmp_path / "small_maxpool.onnx", tmp_path / "report.json"
    assert main(["compress", str(model), "--domain", str(root / "mnist_cnn_maxpool.box.json"), "-o", str(out),
                 "--report", str(report), "-q"]) == 0
    data = json.loads(report.read_text())
    assert data["verification"]["passed"] is True
    assert sum(e["unknown"] for e in data["layers"] if e["kind"] != "maxpool") == 0
    convs = [e for e in data["layers"] if e["kind"] == "conv"]
    assert len(convs) == 2 and any(e["channels"]["kept"] < e["channels"]["count"] for e in convs)
    assert {e["node"] for e in data["layers"] if e["kind"] == "maxpool"} == {
        n.name for n in onnx.load(str(model)).graph.node if n.op_type == "MaxPool"}
    assert [n.op_type for n in onnx.load(str(out)).graph.node].count("MaxPool") == 2
    x = np.random.default_rng(0).random((300, 784))
    np.testing.assert_allclose(run_onnx(str(out), x)[0], run_onnx(str(model), x)[0], rtol=1e-4, atol=1e-4)
    # --resume of that report: the analysis must not have changed the network's hash (lazy caches of the
    # pooling ops, sparse matrices whose flags change as they are used), and the replay writes the same graph
    again = tmp_path / "again.onnx"
    assert main(["compress", str(model), "--domain", str(root / "mnist_cnn_maxpool.box.json"), "-o", str(again),
                 "--resume", str(report), "--strategy", "bounds", "-q"]) == 0
    graphs = [onnx.load(str(p)).graph.SerializeToString() for p in (again, out)]   # metadata: the witness file's hash
    assert graphs[0] == graphs[1]


def test_neurons_are_addressed_by_node_channel_and_position(tmp_path):
    import exactcomp
    import onnx

    root = __import__("pathlib").Path(__file__).resolve().parent.parent / "models"
    net = exactcomp.load(root / "mnist_cnn_maxpool.onnx")
    graph = onnx.load(str(root / "mnist_cnn_maxpool.onnx")).graph
    relus = [n.name for n in graph.node if n.op_type == "Relu"]
    C, H, W = net.layers[0].out_shape
    first = next(n for n in graph.node if n.op_type == "Conv")
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    image = np.random.default_rng(1).random((1, 1, 28, 28))
    expected = F.conv2d(torch.tensor(image), torch.tensor(weights[first.input[1]], dtype=torch.float64),
                        torch.tensor(weights[first.input[2]], dtype=torch.float64), padding=1)[0].numpy()
    g = net.forward(image.reshape(1, -1), return_preactivations=True)[1][0][0]
    for c, y, x in [(0, 0, 0), (C - 1, H - 1, W - 1), (3, 5, 17)]:
        layer_id, index = exactcomp.find_neuron(net, relus[0], channel=c, position=(y, x))
        a = exactcomp.neuron_address(net, layer_id, index)
        assert (a.node, a.kind, a.channel, a.position) == (relus[0], "conv", c, (y, x))
        assert abs(g[index] - expected[c, y, x]) < 1e-5     # the neuron torch computes at (c, y, x)
    pool = next(n.name for n in graph.node if n.op_type == "MaxPool")
    layer_id, index = exactcomp.find_neuron(net, pool, index=5)
    assert exactcomp.neuron_address(net, layer_id, index).kind == "maxpool"
    with pytest.raises(exactcomp.ExactcompError, match="channel and a position"):
        exactcomp.find_neuron(net, relus[0])
    with pytest.raises(exactcomp.ExactcompError, match="no layer ends"):
        exactcomp.find_neuron(net, "nope", 0, (0, 0))


def test_networks_built_in_python_export_the_oldest_ir_version_their_opsets_allow():
    """Not onnx's newest IR version, which an older onnxruntime refuses (seen: IR 14 vs onnxruntime 1.30)."""
    import onnx

    net = _raised_network(np.random.default_rng(0), dtype="float32")
    model = to_onnx(lower_max_pools(net))
    assert model.ir_version == onnx.helper.find_min_ir_version_for(list(model.opset_import)) <= 8
