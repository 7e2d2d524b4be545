"""Valid inputs that must work: old ONNX IR versions and opsets, fixed batch sizes, fixed inputs.

Models are written here with onnx.helper; every check compares onnxruntime runs of the original
and the compressed model (or a numpy forward pass written in this file), never exactcomp's output.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import exactcomp
from exactcomp.errors import ModelError
from exactcomp.onnx_export import check_exportable, to_onnx
from exactcomp.onnx_import import import_model

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
    rng = np.random.default_rng(seed)
    Ws = [rng.normal(size=(o, i)) for i, o in zip(sizes, sizes[1:])]
    bs = [rng.normal(size=o) for o in sizes[1:]]
    if first_bias is not None:
        bs[0] = np.full(sizes[1], first_bias)
    return Ws, bs


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
    box = {"lower": -1.0, "upper": 1.0}
    result = exactcomp.compress(import_model(model), box)
    path = result.save(tmp_path / "small.onnx")
    onnx.checker.check_model(str(path), full_check=True)
    small = onnx.load(str(path))
    assert small.ir_version == ir and [(o.domain, o.version) for o in small.opset_import] == [("", opset)]
    ops = {n.op_type for n in small.graph.node}
    if constant:  # first layer never active on the box: the output is a constant broadcast, no weights
        assert "Gemm" not in ops and ops & {"Expand", "Tile"}
        assert result.compressed.parameter_count == 3
    assert_same_function(model, small, -1.0, 1.0, 4)


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
