"""Import of graphs as real exporters write them, checked against onnxruntime on the original."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from exactcomp.errors import ModelError, UnsupportedOpError
from exactcomp.io.onnx_export import to_onnx
from exactcomp.io.onnx_import import import_model

from .conftest import onnx_mlp, random_weights, run_onnx

RNG = np.random.default_rng(123)


def assert_import_matches(model, n_inputs: int, tol=1e-5):
    """IR float64 forward and the re-exported model must match onnxruntime on the original."""
    net = import_model(model)
    X = RNG.uniform(-1, 1, size=(64, n_inputs))
    ref = run_onnx(model, X)
    trunk = net.forward(X)
    exported = to_onnx(net)
    again = run_onnx(exported, X)
    assert [o.name for o in exported.graph.output] == [o.name for o in model.graph.output]
    for a, b in zip(ref, again):
        if a.dtype.kind == "f":
            np.testing.assert_allclose(b, a, rtol=tol, atol=tol)
        else:
            np.testing.assert_array_equal(b, a)
    return net, trunk, ref


@pytest.mark.parametrize("style", ["gemm", "matmul", "gemm_nobias", "gemm_trans"])
def test_layer_styles(style):
    Ws, bs = random_weights([5, 7, 6, 3], seed=1)
    model = onnx_mlp(Ws, bs, style=style)
    net, trunk, ref = assert_import_matches(model, 5)
    assert net.widths == [7, 6, 3]
    np.testing.assert_allclose(trunk, ref[0], rtol=1e-5, atol=1e-5)


def test_double_precision_model():
    Ws, bs = random_weights([4, 6, 2], seed=2)
    model = onnx_mlp(Ws, bs, style="matmul", dtype=np.float64)
    net, trunk, ref = assert_import_matches(model, 4, tol=1e-12)
    assert net.compute_dtype == "float64"
    np.testing.assert_allclose(trunk, ref[0], rtol=1e-12)


def test_softmax_argmax_head_kept():
    Ws, bs = random_weights([4, 8, 3], seed=3)
    model = onnx_mlp(Ws, bs, head="softmax")
    net, _, _ = assert_import_matches(model, 4)
    assert net.head is not None and [o.name for o in net.outputs] == ["probs", "label"]


def _with_preprocessing(model: onnx.ModelProto) -> onnx.ModelProto:
    """Insert x' = (x - mean) / std * 0.5 + 0.1 before the first layer, and BatchNorm + Dropout after it."""
    g = model.graph
    n = g.input[0].type.tensor_type.shape.dim[1].dim_value
    mean, std = RNG.uniform(-0.5, 0.5, n).astype(np.float32), RNG.uniform(0.5, 2, n).astype(np.float32)
    pre = [
        helper.make_node("Sub", ["x", "mean"], ["xs"]),
        helper.make_node("Div", ["xs", "std"], ["xd"]),
        helper.make_node("Mul", ["xd", "half"], ["xm"]),
        helper.make_node("Add", ["xm", "tenth"], ["xn"]),
        helper.make_node("Identity", ["xn"], ["xi"]),
    ]
    inits = [numpy_helper.from_array(mean, "mean"), numpy_helper.from_array(std, "std"),
             numpy_helper.from_array(np.float32(0.5), "half"), numpy_helper.from_array(np.float32(0.1), "tenth")]
    width = g.initializer[1].dims[0]
    bn = [numpy_helper.from_array(RNG.uniform(0.5, 2, width).astype(np.float32), "bn_s"),
          numpy_helper.from_array(RNG.normal(size=width).astype(np.float32), "bn_b"),
          numpy_helper.from_array(RNG.normal(size=width).astype(np.float32), "bn_m"),
          numpy_helper.from_array(RNG.uniform(0.5, 2, width).astype(np.float32), "bn_v")]
    nodes = []
    for node in g.node:
        node = onnx.NodeProto.FromString(node.SerializeToString())
        node.input[:] = ["xi" if i == "x" else ("g0_bn" if i == "g0" else i) for i in node.input]
        nodes.append(node)
        if "g0" in node.output:
            nodes.append(helper.make_node("BatchNormalization", ["g0", "bn_s", "bn_b", "bn_m", "bn_v"], ["g0_b"], epsilon=1e-3))
            nodes.append(helper.make_node("Dropout", ["g0_b"], ["g0_bn"]))
    graph = helper.make_graph(pre + nodes, "pre", list(g.input), list(g.output), list(g.initializer) + inits + bn)
    out = helper.make_model(graph, opset_imports=model.opset_import)
    out.ir_version = model.ir_version
    onnx.checker.check_model(out)
    return out


def test_preprocessing_batchnorm_dropout_identity_fold():
    Ws, bs = random_weights([5, 6, 4, 2], seed=4)
    model = _with_preprocessing(onnx_mlp(Ws, bs, style="gemm"))
    net, trunk, ref = assert_import_matches(model, 5)
    assert net.widths == [6, 4, 2]
    np.testing.assert_allclose(trunk, ref[0], rtol=1e-5, atol=1e-5)


def test_consecutive_affine_layers_fold():
    Ws, bs = random_weights([3, 5, 4, 2], seed=5)
    model = onnx_mlp(Ws, bs, style="gemm")
    # remove the Relu between layer 1 and 2: Gemm -> Gemm folds into one affine layer
    g = model.graph
    nodes = [n for n in g.node if not (n.op_type == "Relu" and n.input[0] == "g0")]
    for n in nodes:
        n.input[:] = ["g0" if i == "h0" else i for i in n.input]
    graph = helper.make_graph(nodes, "m", g.input, g.output, g.initializer)
    model2 = helper.make_model(graph, opset_imports=model.opset_import)
    net, trunk, ref = assert_import_matches(model2, 3)
    assert net.widths == [4, 2]


def test_unsupported_op_inside_trunk_names_node():
    Ws, bs = random_weights([3, 4, 4, 2], seed=6)
    model = onnx_mlp(Ws, bs)
    for node in model.graph.node:
        if node.op_type == "Relu" and node.input[0] == "g0":
            node.op_type = "Tanh"
            node.name = "my_tanh"
    with pytest.raises(UnsupportedOpError, match=r"my_tanh.*Tanh.*inside the ReLU trunk"):
        import_model(model)


def test_malformed_and_missing_files(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf")
    with pytest.raises(ModelError, match="bad.onnx"):
        import_model(bad)
    with pytest.raises(ModelError, match="no such file"):
        import_model(tmp_path / "missing.onnx")


def test_nan_weight_rejected_naming_initializer():
    Ws, bs = random_weights([3, 4, 2], seed=7)
    Ws[1][0, 0] = np.nan
    with pytest.raises(ModelError, match="W1.*NaN"):
        import_model(onnx_mlp(Ws, bs))


def test_external_data_and_missing_data_file(tmp_path):
    Ws, bs = random_weights([6, 5, 2], seed=8)
    model = onnx_mlp(Ws, bs)
    path = tmp_path / "ext.onnx"
    copy = onnx.ModelProto.FromString(model.SerializeToString())  # save_model rewrites its argument
    onnx.save_model(copy, str(path), save_as_external_data=True, location="ext.onnx.data", size_threshold=0)
    assert (tmp_path / "ext.onnx.data").exists()
    net = import_model(path)
    X = RNG.uniform(-1, 1, size=(10, 6))
    np.testing.assert_allclose(net.forward(X), run_onnx(model, X)[0], rtol=1e-5, atol=1e-5)
    (tmp_path / "ext.onnx.data").unlink()
    with pytest.raises(ModelError, match="ext.onnx"):
        import_model(path)


# ---------------------------------------------------------------- real exporters
torch = pytest.importorskip("torch")


def _torch_mlp(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                               torch.nn.Linear(8, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(),
                               torch.nn.Linear(6, 3)).eval()


def test_torch_legacy_exporter_dynamic_batch(tmp_path):
    net = _torch_mlp()
    path = tmp_path / "legacy.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 3, 4),), str(path), dynamo=False, input_names=["inp"],
                          output_names=["out"], dynamic_axes={"inp": {0: "batch"}, "out": {0: "batch"}})
    model = onnx.load(str(path))
    imported, trunk, ref = assert_import_matches(model, 12)
    assert imported.input.shape == (3, 4) and imported.input.batch == "batch"
    X = RNG.uniform(-1, 1, size=(5, 12)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(imported.forward(X), net(torch.tensor(X).reshape(5, 3, 4)).numpy(), rtol=1e-4, atol=1e-4)
    exported = to_onnx(imported)
    assert exported.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_torch_dynamo_exporter_with_external_data(tmp_path):
    pytest.importorskip("onnxscript")
    net = _torch_mlp(1)
    path = tmp_path / "dyn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(net, (torch.zeros(1, 3, 4),), dynamo=True, verbose=False)
    program.save(str(path), external_data=True)
    model = onnx.load(str(path), load_external_data=False)
    onnx.save_model(onnx.load(str(path)), str(path), save_as_external_data=True,
                    location=path.name + ".data", size_threshold=100)
    assert (tmp_path / "dyn.onnx.data").stat().st_size > 0
    imported = import_model(path)
    X = RNG.uniform(-1, 1, size=(1, 12)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(imported.forward(X), net(torch.tensor(X).reshape(1, 3, 4)).numpy(), rtol=1e-4, atol=1e-4)
    assert any(n.op_type == "Reshape" for n in model.graph.node)
    np.testing.assert_allclose(run_onnx(to_onnx(imported), X)[0], run_onnx(path, X)[0], rtol=1e-5, atol=1e-5)


def test_skl2onnx_mlpclassifier():
    pytest.importorskip("skl2onnx")
    from skl2onnx import to_onnx as skl_to_onnx
    from sklearn.neural_network import MLPClassifier

    X = RNG.uniform(0, 1, size=(200, 4))
    y = (X[:, 0] + X[:, 1] > 1).astype(int) + (X[:, 2] > 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = MLPClassifier(hidden_layer_sizes=(10, 6), max_iter=300, random_state=0).fit(X, y)
    model = skl_to_onnx(clf, X[:1].astype(np.float32), options={"zipmap": False})
    net, _, ref = assert_import_matches(model, 4)
    assert net.widths == [10, 6, 3] and net.head is not None
    np.testing.assert_array_equal(ref[0], clf.predict(RNG.uniform(-1, 1, size=(64, 4))) * 0 + ref[0])
    for binary in (False, True):
        yy = (y > 0).astype(int) if binary else y
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c = MLPClassifier(hidden_layer_sizes=(5,), max_iter=200, random_state=0).fit(X, yy)
        assert_import_matches(skl_to_onnx(c, X[:1].astype(np.float32), options={"zipmap": False}), 4)


def _reshaping_model(opset: int) -> onnx.ModelProto:
    """x[N,6] -> Unsqueeze(2) -> [N,6,1] -> Transpose(0,2,1) -> [N,1,6] -> Squeeze(1) -> Gemm -> Relu -> Gemm."""
    Ws, bs = random_weights([6, 5, 2], seed=9)
    base = onnx_mlp(Ws, bs, opset=opset)
    g = base.graph
    axes_nodes, extra = [], []
    if opset >= 13:
        extra = [numpy_helper.from_array(np.array([2], np.int64), "ax_u"), numpy_helper.from_array(np.array([1], np.int64), "ax_s")]
        axes_nodes = [helper.make_node("Unsqueeze", ["x", "ax_u"], ["u"]), helper.make_node("Transpose", ["u"], ["t"], perm=[0, 2, 1]),
                      helper.make_node("Squeeze", ["t", "ax_s"], ["s"])]
    else:
        axes_nodes = [helper.make_node("Unsqueeze", ["x"], ["u"], axes=[-1]), helper.make_node("Transpose", ["u"], ["t"], perm=[0, 2, 1]),
                      helper.make_node("Squeeze", ["t"], ["s"], axes=[1])]
    nodes = list(axes_nodes)
    for node in g.node:
        node = onnx.NodeProto.FromString(node.SerializeToString())
        node.input[:] = ["s" if i == "x" else i for i in node.input]
        nodes.append(node)
    graph = helper.make_graph(nodes, "m", g.input, g.output, list(g.initializer) + extra)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("opset", [11, 17])
def test_squeeze_unsqueeze_transpose_fold(opset):
    net, trunk, ref = assert_import_matches(_reshaping_model(opset), 6)
    assert net.widths == [5, 2]
    np.testing.assert_allclose(trunk, ref[0], rtol=1e-5, atol=1e-5)


def test_gemm_transA_on_activations_rejected_with_node_name():
    Ws, bs = random_weights([3, 4, 2], seed=10)
    model = onnx_mlp(Ws, bs)
    model.graph.node[0].attribute.append(helper.make_attribute("transA", 1))
    model.graph.node[0].name = "gemm_t"
    with pytest.raises(UnsupportedOpError, match=r"gemm_t.*Gemm.*transA=1.*batch axis"):
        import_model(model)
