"""Valid inputs that must work: old ONNX IR versions and opsets, fixed batch sizes, fixed inputs.

Models are written here with onnx.helper; every check compares onnxruntime runs of the original
and the compressed model (or a numpy forward pass written in this file), never exactcomp's output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import exactcomp
from exactcomp.domain import Box
from exactcomp.errors import ModelError
from exactcomp.ir.network import Dense
from exactcomp.io.onnx_export import check_exportable
from exactcomp.io.onnx_import import import_model
from exactcomp.rewrite.rules import fold_fixed_inputs

NEWEST = (onnx.defs.onnx_opset_version(), onnx.IR_VERSION)


def mlp_model(Ws, bs, opset=17, ir=8, batch="N", inits_as_inputs=False, softmax=False) -> onnx.ModelProto:
    """A Gemm/Relu MLP; with ``inits_as_inputs`` every initializer is also a graph input (IR 3 style)."""
    nodes, inits, x = [], [], "x"
    for i, (W, b) in enumerate(zip(Ws, bs)):
        inits += [numpy_helper.from_array(np.asarray(W, np.float32), f"W{i}"),
                  numpy_helper.from_array(np.asarray(b, np.float32), f"B{i}")]
        nodes.append(helper.make_node("Gemm", [x, f"W{i}", f"B{i}"], [f"g{i}"], transB=1))
        x = f"g{i}"
        if i < len(Ws) - 1:
            nodes.append(helper.make_node("Relu", [x], [f"h{i}"]))
            x = f"h{i}"
    out_width = len(bs[-1])
    outputs = [helper.make_tensor_value_info(x, TensorProto.FLOAT, [batch, out_width])]
    if softmax:
        nodes.append(helper.make_node("Softmax", [x], ["probs"], axis=1))
        outputs = [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, out_width])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, np.shape(Ws[0])[1]])]
    if inits_as_inputs:
        inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits]
    graph = helper.make_graph(nodes, "mlp", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir
    onnx.checker.check_model(model)
    return model


def weights(sizes, seed=0, first_bias=None):
    """Random weights and biases, rounded to float32 (so float64 references match the model)."""
    rng = np.random.default_rng(seed)
    Ws = [rng.normal(size=(o, i)) for i, o in zip(sizes, sizes[1:])]
    bs = [rng.normal(size=o) for o in sizes[1:]]
    if first_bias is not None:
        bs[0] = np.full(sizes[1], first_bias)
    as32 = lambda a: np.asarray(a, np.float32).astype(np.float64)  # noqa: E731 - exactly what the model stores
    return [as32(W) for W in Ws], [as32(b) for b in bs]


def run_model(model, X: np.ndarray) -> list[np.ndarray]:
    """onnxruntime outputs on the rows of ``X``, fed one row at a time (works for any batch size 1,
    symbolic or fixed) or, for a fixed batch size ``k``, as ``k`` rows at a time (``len(X) % k == 0``)."""
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    k = inp.shape[0] if isinstance(inp.shape[0], int) else len(X)
    assert len(X) % k == 0
    runs = [sess.run(None, {inp.name: X[i:i + k].astype(np.float32)}) for i in range(0, len(X), k)]
    return [np.concatenate([r[j] for r in runs]) for j in range(len(runs[0]))]


def assert_same_function(original, compressed, lower, upper, n, count=200, seed=1):
    """onnxruntime outputs of both models agree on random points of the box (float32 tolerance)."""
    X = np.random.default_rng(seed).uniform(lower, upper, size=(count, n))
    for a, b in zip(run_model(original, X), run_model(compressed, X)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ old IR versions and opsets
@pytest.mark.parametrize("opset, ir, as_inputs", [(7, 3, True), (8, 3, True), (13, 7, False), (*NEWEST, False)])
@pytest.mark.parametrize("constant", [False, True])
def test_old_and_new_versions_compress(tmp_path, opset, ir, as_inputs, constant):
    Ws, bs = weights([4, 6, 5, 3], seed=opset, first_bias=-50.0 if constant else None)
    model = mlp_model(Ws, bs, opset=opset, ir=ir, inits_as_inputs=as_inputs, softmax=opset == 8)
    lower, upper = [0.5, -1, -1, -1], [0.5, 1, 1, 1]  # input 0 fixed: a Gather reads the others
    result = exactcomp.compress(import_model(model), {"lower": lower, "upper": upper})
    path = result.save(tmp_path / "small.onnx")
    onnx.checker.check_model(str(path), full_check=True)
    small = onnx.load(str(path))
    assert small.ir_version == ir and [(o.domain, o.version) for o in small.opset_import] == [("", opset)]
    ops = {n.op_type for n in small.graph.node}
    if constant:  # first layer never active on the box: the output is a constant broadcast, no weights
        assert "Gemm" not in ops and ops & {"Expand", "Tile"}
        assert result.compressed.parameter_count == 3
    else:
        assert "Gather" in ops
    assert_same_function(model, small, lower, upper, 4)


def test_ir3_cli_compress(tmp_path):
    Ws, bs = weights([4, 6, 5, 3], seed=3)
    src, out, box = tmp_path / "old.onnx", tmp_path / "small.onnx", tmp_path / "box.json"
    onnx.save(mlp_model(Ws, bs, opset=8, ir=3, inits_as_inputs=True), str(src))
    box.write_text(json.dumps({"lower": -1.0, "upper": 1.0}))
    run = subprocess.run([sys.executable, "-m", "exactcomp", "compress", str(src), "--domain", str(box), "-o", str(out),
                          "--quiet", "--strategy", "bounds"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    onnx.checker.check_model(str(out), full_check=True)
    assert_same_function(onnx.load(str(src)), onnx.load(str(out)), -1.0, 1.0, 4)


def test_unexportable_opset_fails_before_analysis(tmp_path):
    """Opset 6 (whose Gemm needs ``broadcast=1``) imports, but cannot be written: one line, exit 2."""
    Ws, bs = weights([3, 4, 2])
    model = mlp_model(Ws, bs, opset=8, ir=3, inits_as_inputs=True)
    model.opset_import[0].version = 6
    for node in model.graph.node:
        if node.op_type == "Gemm":
            node.attribute.append(helper.make_attribute("broadcast", 1))
    net = import_model(model)
    with pytest.raises(ModelError, match="opset 6"):
        check_exportable(net)
    src, box = tmp_path / "m.onnx", tmp_path / "box.json"
    onnx.save(model, str(src))
    box.write_text(json.dumps({"lower": -1.0, "upper": 1.0}))
    run = subprocess.run([sys.executable, "-m", "exactcomp", "compress", str(src), "--domain", str(box),
                          "-o", str(tmp_path / "small.onnx")], capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert "opset 6" in run.stderr and not (tmp_path / "small.onnx").exists()


# ------------------------------------------------------------------ fixed batch size
def _dims(value_info) -> list:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value_info.type.tensor_type.shape.dim]


@pytest.mark.parametrize("constant", [False, True])
def test_fixed_batch_8_compress_and_verify(constant):
    Ws, bs = weights([20, 6, 5, 3], seed=8, first_bias=-50.0 if constant else None)
    model = mlp_model(Ws, bs, batch=8)
    box = {"lower": -0.5, "upper": 0.5}
    result = exactcomp.compress(import_model(model), box)
    small = result.to_onnx()
    assert _dims(small.graph.input[0]) == [8, 20] and _dims(small.graph.output[0]) == [8, 3]
    check = exactcomp.verify(model, small, box, random_points=1001)  # 1001 + 256 corners: not a multiple of 8
    assert check.passed and check.points % 8 != 0
    assert_same_function(model, small, -0.5, 0.5, 20, count=200)


def test_fixed_batch_chunks_stay_aligned():
    """Fixed batch 8 against the same network with a symbolic batch: any misaligned or padded row
    would show as a mismatch; a changed bias must still be caught in every point."""
    Ws, bs = weights([20, 6, 3], seed=9)
    fixed, dynamic = mlp_model(Ws, bs, batch=8), mlp_model(Ws, bs)
    box = {"lower": -1.0, "upper": 1.0}
    check = exactcomp.verify(fixed, dynamic, box, random_points=13)  # 269 points: 33 chunks and 5 rows
    assert check.passed and check.points == 13 + 256
    wrong = mlp_model(Ws, [bs[0], bs[1] + 1.0], batch=8)
    check = exactcomp.verify(dynamic, wrong, box, random_points=13)
    assert not check.passed and check.outputs[0].mismatches == check.points == 13 + 256


def test_fixed_batch_1_cli(tmp_path):
    Ws, bs = weights([5, 6, 4, 2], seed=1)
    src, out, box = tmp_path / "b1.onnx", tmp_path / "small.onnx", tmp_path / "box.json"
    onnx.save(mlp_model(Ws, bs, batch=1, softmax=True), str(src))
    box.write_text(json.dumps({"lower": -1.0, "upper": 1.0}))
    run = subprocess.run([sys.executable, "-m", "exactcomp", "compress", str(src), "--domain", str(box), "-o", str(out),
                          "--quiet", "--strategy", "bounds", "--json"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["verification"]["passed"] is True
    small = onnx.load(str(out))
    assert _dims(small.graph.input[0]) == [1, 5]
    assert_same_function(onnx.load(str(src)), small, -1.0, 1.0, 5, count=50)


# ------------------------------------------------------------------ fixed (zero-width) inputs
def brute(Ws, bs, X):
    """Forward pass written here: ReLU after every layer but the last."""
    h = np.asarray(X, float)
    for i, (W, b) in enumerate(zip(Ws, bs)):
        h = h @ np.asarray(W, float).T + b
        h = np.maximum(h, 0) if i < len(Ws) - 1 else h
    return h


def fixed_box(n, fixed, seed=0):
    """Box [-1, 1]^n with the coordinates ``fixed`` pinned to random values."""
    lo, hi = np.full(n, -1.0), np.full(n, 1.0)
    lo[fixed] = hi[fixed] = np.random.default_rng(seed).uniform(-1, 1, len(fixed))
    return Box(lo, hi)


def test_network_input_indices_validated_and_used():
    Ws, bs = weights([5, 4, 2])
    net = import_model(mlp_model(Ws, bs))
    sel = replace(net, layers=(Dense(Ws[0][:, [1, 3]], bs[0], 1, np.arange(4)), net.layers[1]),
                  input_indices=np.array([1, 3]))
    X = np.random.default_rng(0).normal(size=(7, 5))
    np.testing.assert_allclose(sel.forward(X), brute([Ws[0][:, [1, 3]], Ws[1]], bs, X[:, [1, 3]]), atol=1e-12)
    assert sel.input_size == 5 and sel.layers[0].fan_in == 2
    assert sel.parameter_count == 4 * 2 + 4 + 2 * 4 + 2  # weights and biases only; the indices are not counted
    np.testing.assert_allclose(sel.with_full_input().forward(X), sel.forward(X), atol=1e-12)
    for bad in ([3, 1], [1, 1], [1, 5], [-1, 3]):
        with pytest.raises(ValueError):
            replace(sel, input_indices=np.array(bad))
    with pytest.raises(ValueError):  # two indices, but the first layer reads five entries
        replace(net, input_indices=np.array([1, 3]))


def test_fold_fixed_inputs_rule():
    Ws, bs = weights([6, 5, 3], seed=2)
    net = import_model(mlp_model(Ws, bs))
    fixed = [0, 2, 5]
    box = fixed_box(6, fixed)
    folded = fold_fixed_inputs(net, box)
    assert folded.input_indices.tolist() == [1, 3, 4]
    assert net.parameter_count - folded.parameter_count == 5 * len(fixed)
    X = box.sample(50, np.random.default_rng(1))
    np.testing.assert_allclose(folded.forward(X), brute(Ws, bs, X), rtol=1e-12, atol=1e-12)
    assert fold_fixed_inputs(folded, box) is folded  # nothing left to fold
    assert fold_fixed_inputs(net, fixed_box(6, [])) is net


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fixed_inputs_compress(seed):
    rng = np.random.default_rng(seed)
    n = 7
    fixed = np.sort(rng.choice(n, size=3, replace=False))
    free = np.setdiff1d(np.arange(n), fixed)
    Ws, bs = weights([n, 8, 6, 3], seed=seed)
    box = fixed_box(n, fixed, seed)
    model = mlp_model(Ws, bs)
    result = exactcomp.compress(import_model(model), box)
    small = result.to_onnx()
    gathers = [node for node in small.graph.node if node.op_type == "Gather"]
    assert len(gathers) == 1 and result.compressed.input_indices.tolist() == free.tolist()
    X = box.sample(300, rng)
    for a, b in zip(run_model(model, X), run_model(small, X)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)
    # the same network with the fixed inputs removed by hand: x_F = c enters the first bias
    c = box.lower[fixed]
    reduced = mlp_model([Ws[0][:, free], *Ws[1:]], [bs[0] + Ws[0][:, fixed] @ c, *bs[1:]])
    reduced_box = Box(box.lower[free], box.upper[free])
    expected = exactcomp.compress(import_model(reduced), reduced_box).compressed.parameter_count
    assert result.compressed.parameter_count == expected
    assert result.original.parameter_count - import_model(reduced).parameter_count == 8 * len(fixed)
    # a network with a selection is analysed like the original; the exported model re-imports
    folded = fold_fixed_inputs(result.original, box)
    statuses = [layer.status.tolist() for layer in exactcomp.analyze(folded, box).layers]
    assert statuses == [layer.status.tolist() for layer in result.analysis.layers]
    np.testing.assert_allclose(import_model(small).forward(X), brute(Ws, bs, X), rtol=1e-5, atol=1e-5)


def test_point_box_gives_constant_model():
    Ws, bs = weights([5, 6, 4, 3], seed=4)
    model = mlp_model(Ws, bs, softmax=True)
    point = np.random.default_rng(4).uniform(-1, 1, 5)
    box = Box(point, point)
    result = exactcomp.compress(import_model(model), box)
    small = result.to_onnx()
    assert result.compressed.parameter_count == 3 and result.compressed.layers[0].is_constant
    shapes = {node.output[0] for node in small.graph.node if node.op_type == "Shape"}
    assert "Gemm" not in {node.op_type for node in small.graph.node}
    assert all(node.input[0] in shapes for node in small.graph.node if node.op_type == "Gather")  # batch size only
    (expected,) = run_model(model, point[None, :])
    X = np.random.default_rng(5).uniform(-3, 3, size=(4, 5))  # a constant model ignores its input
    (got,) = run_model(small, X)
    np.testing.assert_allclose(got, np.repeat(expected, 4, axis=0), rtol=1e-5, atol=1e-6)
    assert exactcomp.verify(model, small, box).passed


def test_all_inputs_free_gives_no_gather():
    Ws, bs = weights([4, 6, 3], seed=5)
    box = fixed_box(4, [])
    result = exactcomp.compress(import_model(mlp_model(Ws, bs)), box)
    assert result.compressed.input_indices is None
    assert "Gather" not in {node.op_type for node in result.to_onnx().graph.node}


def test_fixed_pixels_cli(tmp_path):
    """An image input whose border pixels are always 0 (as in MNIST), compressed with the CLI."""
    Ws, bs = weights([16, 6, 3], seed=6)
    flat = helper.make_node("Flatten", ["x"], ["flat"], axis=1)
    model = mlp_model(Ws, bs)
    graph = model.graph
    graph.node.insert(0, flat)
    graph.node[1].input[0] = "flat"
    graph.input[0].CopyFrom(helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 4]))
    upper = np.zeros((1, 4, 4))
    upper[0, 1:3, 1:3] = 1.0
    src, out, box = tmp_path / "img.onnx", tmp_path / "small.onnx", tmp_path / "box.json"
    onnx.save(model, str(src))
    box.write_text(json.dumps({"lower": 0.0, "upper": upper.tolist()}))
    run = subprocess.run([sys.executable, "-m", "exactcomp", "compress", str(src), "--domain", str(box), "-o", str(out),
                          "--quiet", "--json"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["verification"]["passed"] is True
    small = onnx.load(str(out))
    assert "Gather" in {node.op_type for node in small.graph.node}
    X = np.random.default_rng(0).uniform(0, upper.ravel(), size=(100, 16))
    (a,), (b,) = run_model(model, X.reshape(-1, 1, 4, 4)), run_model(small, X.reshape(-1, 1, 4, 4))
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("axis", [1, -1, 0])
def test_import_gather(axis):
    """Gather of constant indices along a feature axis is a selection; along the batch axis, an error."""
    Ws, bs = weights([2, 4, 2], seed=7)
    model = mlp_model(Ws, bs)
    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5]))
    model.graph.initializer.append(numpy_helper.from_array(np.array([3, -5], np.int64), "sel"))
    model.graph.node.insert(0, helper.make_node("Gather", ["x", "sel"], ["picked"], axis=axis))
    model.graph.node[1].input[0] = "picked"
    if axis == 0:
        with pytest.raises(ModelError, match="batch axis"):
            import_model(model)
        return
    X = np.random.default_rng(0).normal(size=(6, 5))
    np.testing.assert_allclose(import_model(model).forward(X), brute(Ws, bs, X[:, [3, 0]]), rtol=1e-12, atol=1e-12)
