"""The 1-D convolution op unit (:mod:`exactcomp.ops.conv1d`, issue 22's worked example): imported, bounded,
proven by every prover, rewritten (dead channels) and exported as 1-D ``Conv`` nodes, each checked against an
independent computation: onnxruntime on the original model, and the same network written as a 2-D
convolution over ``(C, 1, L)`` and read by the 2-D importer."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import exactcomp
from exactcomp.cli.main import main
from exactcomp.domain import Box
from exactcomp.ops.conv1d import Conv1d
from exactcomp.results import Status

from .conftest import run_onnx


def conv1d_model(seed: int = 0, one_d: bool = True, dead: int = 1) -> onnx.ModelProto:
    """[N, 2, 16] -> Conv1d 4ch k3 p1 (channel ``dead`` dead: bias -100) -> ReLU -> Conv1d 3ch k3 s2 p(1,0) -> ReLU
    -> Flatten -> Gemm 2. ``one_d=False``: the same maths as 2-D convolutions over [N, 2, 1, 16]."""
    rng = np.random.default_rng(seed)
    k1, b1 = rng.normal(size=(4, 2, 3)), rng.normal(size=4) * 0.1
    b1[dead] = -100.0
    k2, b2 = rng.normal(size=(3, 4, 3)), rng.normal(size=3) * 0.1
    w, bw = rng.normal(size=(2, 24)), rng.normal(size=2)
    if not one_d:
        k1, k2 = k1[:, :, None, :], k2[:, :, None, :]
    lift = (lambda v: v) if one_d else (lambda v: [1, *v])
    pads = (lambda a, b: [a, b]) if one_d else (lambda a, b: [0, a, 0, b])
    inits = [numpy_helper.from_array(np.asarray(a, np.float32), n)
             for a, n in ((k1, "k1"), (b1, "b1"), (k2, "k2"), (b2, "b2"), (w, "w"), (bw, "bw"))]
    nodes = [helper.make_node("Conv", ["x", "k1", "b1"], ["c1"], pads=pads(1, 1), kernel_shape=lift([3])),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "k2", "b2"], ["c2"], strides=lift([2]), pads=pads(1, 0)),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Flatten", ["r2"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "w", "bw"], ["y"], transB=1)]
    shape = ["N", 2, 16] if one_d else ["N", 2, 1, 16]
    graph = helper.make_graph(nodes, "conv1d", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model


BOX = Box(np.zeros(32), np.ones(32))


def _points(n: int, seed: int = 1) -> np.ndarray:
    return np.vstack([BOX.sample(n, np.random.default_rng(seed)), BOX.lower, BOX.upper])


def test_import_reads_1d_convolutions_that_compute_what_onnxruntime_computes():
    model = conv1d_model()
    net = exactcomp.load(model)
    assert [type(layer) for layer in net.hidden] == [Conv1d, Conv1d]
    assert net.hidden[0].in_shape == (2, 1, 16) and net.hidden[1].value_shape == (3, 8)
    X = _points(300)
    np.testing.assert_allclose(net.forward(X), run_onnx(model, X.reshape(-1, 2, 16).astype(np.float32))[0],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("provers", [None, ("bounds", "lp", "milp"), ("bounds", "bab")])
def test_every_prover_decides_as_on_the_same_network_read_as_2d(provers):
    one, two = exactcomp.load(conv1d_model()), exactcomp.load(conv1d_model(one_d=False))
    kwargs = {} if provers is None else {"provers": provers}
    a, b = (exactcomp.analyze(net, BOX, time_limit=60, **kwargs) for net in (one, two))
    decided = (Status.ACTIVE, Status.INACTIVE, Status.UNSTABLE)
    for la, lb in zip(a.layers, b.layers):
        both = np.isin(la.status, decided) & np.isin(lb.status, decided)
        np.testing.assert_array_equal(la.status[both], lb.status[both])
    assert a.layers[0].status.reshape(4, 16)[1].tolist() == [Status.INACTIVE] * 16   # the dead channel
    # no proof contradicted by dense sampling
    _, pre = one.forward(BOX.sample(4000, np.random.default_rng(3)), return_preactivations=True)
    for la, g in zip(a.layers, pre):
        assert np.all(g[:, la.status == Status.INACTIVE] <= 0) and np.all(g[:, la.status == Status.ACTIVE] >= 0)


def test_compress_removes_the_dead_channel_and_writes_1d_convolutions(tmp_path):
    model = conv1d_model()
    result = exactcomp.compress(exactcomp.load(model), BOX)
    assert all(type(layer) is Conv1d for layer in result.compressed.hidden)
    assert result.compressed.hidden[0].channels < 4 and result.parameters_after < result.parameters_before
    written = result.to_onnx()
    convs = [n for n in written.graph.node if n.op_type == "Conv"]
    weights = {i.name: numpy_helper.to_array(i) for i in written.graph.initializer}
    assert len(convs) == 2 and all(weights[n.input[1]].ndim == 3 for n in convs)   # 1-D again
    X = _points(500).reshape(-1, 2, 16).astype(np.float32)
    np.testing.assert_allclose(run_onnx(written, X)[0], run_onnx(model, X)[0], rtol=1e-4, atol=1e-4)
    path = tmp_path / "small.onnx"
    result.save(path)                           # verified with onnxruntime on random points, corners, witnesses
    assert path.exists()


def test_cli_inspect_and_compress(tmp_path, capsys):
    onnx.save(conv1d_model(2, dead=0), tmp_path / "m.onnx")
    (tmp_path / "box.json").write_text(json.dumps({"lower": [0.0] * 32, "upper": [1.0] * 32}))
    assert main(["inspect", str(tmp_path / "m.onnx")]) == 0
    assert "conv1d 2x16 -> 4x16 k3 s1 p1,1" in capsys.readouterr().out
    assert main(["compress", str(tmp_path / "m.onnx"), "--domain", str(tmp_path / "box.json"), "-o",
                 str(tmp_path / "s.onnx"), "--report", str(tmp_path / "r.json"), "--quiet"]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["verification"]["passed"] and report["layers"][0]["channels"]["kept"] < 4


def test_a_1d_convolution_on_a_wrong_input_fails_with_one_line(tmp_path):
    model = conv1d_model()
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 1
    model.graph.input[0].type.tensor_type.shape.dim.add().dim_value = 16    # [N, 2, 1, 16]: a 2-D input
    with pytest.raises(exactcomp.ExactcompError, match="1-D convolution .* needs a \\[N, C, L\\] input"):
        exactcomp.load(model)


@pytest.mark.parametrize("dynamo", [False, True])
def test_a_torch_1d_cnn_with_batch_norm_compresses_exactly(tmp_path, dynamo):
    """A model another tool wrote (torch's exporters): Conv1d + BatchNorm1d (folded), stride, dilation."""
    torch = pytest.importorskip("torch")
    from .conftest import export_torch

    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.bn = torch.nn.Conv1d(3, 6, 5, padding=2), torch.nn.BatchNorm1d(6)
            self.c2 = torch.nn.Conv1d(6, 4, 3, stride=2, dilation=2, padding=1)
            self.fc = torch.nn.Linear(4 * 7, 3)
            with torch.no_grad():
                self.bn.running_mean.normal_()
                self.bn.running_var.uniform_(0.5, 2.0)
                self.c1.bias[:2] -= 20.0                  # two channels die

        def forward(self, x):
            return self.fc(torch.relu(self.c2(torch.relu(self.bn(self.c1(x))))).flatten(1))

    path = export_torch(Net(), tmp_path / "signal.onnx", dynamo, shape=(1, 3, 16))
    net = exactcomp.load(path)
    assert all(type(layer) is Conv1d for layer in net.hidden)
    box = Box(np.zeros(48), np.ones(48))
    result = exactcomp.compress(net, box, time_limit=5)
    assert result.compressed.hidden[0].channels <= 4
    X = box.sample(200, np.random.default_rng(2)).reshape(-1, 3, 16).astype(np.float32)
    original = onnx.load(str(path))
    small = result.to_onnx()                   # the dynamo export fixes the batch to 1, and so does the written one
    expected, got = (np.vstack([run_onnx(m, x[None])[0] for x in X]) for m in (original, small))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
