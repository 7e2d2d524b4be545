"""The command line as users and CI run it: compress, verify, inspect, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from exactcomp.cli.main import main

from .conftest import onnx_mlp, random_weights, run_onnx

MODELS = Path(__file__).resolve().parent.parent / "models"
DIGITS = MODELS / "digits_64x32x32.onnx"
DIGITS_BOX = MODELS / "digits_64x32x32.box.json"


@pytest.fixture
def tiny(tmp_path):
    Ws, bs = random_weights([3, 8, 6, 2], seed=0, bias_shift=-0.3)
    path = tmp_path / "tiny.onnx"
    onnx.save(onnx_mlp(Ws, bs, head="softmax"), str(path))
    box = tmp_path / "box.json"
    box.write_text(json.dumps({"lower": [-1, -1, 0], "upper": [1, 1, 2]}))
    return path, box


def test_compress_shipped_model_and_report(tmp_path, capsys):
    out, report = tmp_path / "small.onnx", tmp_path / "report.json"
    assert main(["compress", str(DIGITS), "--domain", str(DIGITS_BOX), "-o", str(out), "--report", str(report),
                 "--witnesses", str(tmp_path / "w.npy")]) == 0
    data = json.loads(report.read_text())
    import os
    import stat

    mask = os.umask(0)
    os.umask(mask)
    for written in (out, report):  # written atomically, yet with the permissions any new file gets
        assert stat.S_IMODE(written.stat().st_mode) == 0o666 & ~mask
    assert data["schema"] == "exactcomp.report/1"
    assert data["verification"]["passed"] is True
    for layer in data["layers"]:
        counts = [layer[k] for k in ("stably_active", "stably_inactive", "unstable", "unknown")]
        assert sum(counts) == layer["neurons"] == len(layer["neuron_status"]) == len(layer["neuron_method"])
        assert layer["kept"] <= layer["neurons"]
    assert data["parameters"]["after"] <= data["parameters"]["before"]
    p = data["parameters"]
    assert sum(l["parameters_before"] for l in data["layers"]) + p["output_layer_before"] == p["before"]
    assert sum(l["parameters_after"] for l in data["layers"]) + p["output_layer_after"] == p["after"]
    assert set(data["times"]) >= {"import", "bounds", "witnesses", "rewrite", "export", "verify", "total"}
    assert data["totals"]["stably_inactive"] > 0
    # independent check of the written model on held-out digits data inside the box
    from sklearn.datasets import load_digits

    X = load_digits().images[1500:].reshape(-1, 64).astype(np.float32)
    np.testing.assert_allclose(run_onnx(out, X)[0], run_onnx(DIGITS, X)[0], rtol=1e-4, atol=1e-4)
    assert "stability and compression" in capsys.readouterr().out
    # the verify command accepts the saved witnesses and passes
    assert main(["verify", str(DIGITS), str(out), "--domain", str(DIGITS_BOX), "--points", str(tmp_path / "w.npy"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["passed"] is True


def test_verify_catches_corrupted_model(tmp_path, tiny, capsys):
    model, box = tiny
    out = tmp_path / "small.onnx"
    assert main(["compress", str(model), "--domain", str(box), "-o", str(out), "-q"]) == 0
    bad = onnx.load(str(out))
    init = [i for i in bad.graph.initializer if i.name.endswith("/bias")][-1]  # the output layer's bias
    arr = numpy_helper.to_array(init).copy()
    arr[0] += 0.05
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    corrupt = tmp_path / "corrupt.onnx"
    onnx.save(bad, str(corrupt))
    capsys.readouterr()
    assert main(["verify", str(model), str(corrupt), "--domain", str(box), "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["passed"] is False and result["max_abs_error"] > 1e-3
    assert len(result["worst_point"]) == 3 and result["outputs"][0]["mismatches"] > 0
    assert main(["verify", str(model), str(out), "--domain", str(box)]) == 0
    # an unrelated model whose input has the same name but another shape
    proc = _run_cli("verify", str(DIGITS), str(MODELS / "mnist_784x100x100.onnx"), "--domain", str(DIGITS_BOX))
    assert proc.returncode == 2 and "compressed model input 'input' is" in proc.stderr and "Traceback" not in proc.stderr


def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "exactcomp", *args], capture_output=True, text=True)


@pytest.mark.parametrize("content, message", [
    ({"lower": 0, "upper": [1, 1]}, "field 'upper' has shape"),
    ({"lower": [0, 2, 0], "upper": [1, 1, 1]}, "lower exceeds upper at flat index 1"),
    ({"lower": 0, "upper": "x"}, "field 'upper'"),
    ({"lower": 0}, "missing field 'upper'"),
    ({"lower": [0, float("nan"), 0], "upper": 1}, "non-finite"),
])
def test_bad_domain_one_line_error(tmp_path, tiny, content, message):
    model, _ = tiny
    box = tmp_path / "bad.json"
    box.write_text(json.dumps(content).replace("NaN", "NaN"))
    out = tmp_path / "out.onnx"
    proc = _run_cli("compress", str(model), "--domain", str(box), "-o", str(out))
    assert proc.returncode == 2
    assert message in proc.stderr and "bad.json" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_bad_model_errors(tmp_path, tiny):
    _, box = tiny
    cases = {}
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\x01 not onnx")
    cases[garbage] = "garbage.onnx"
    Ws, bs = random_weights([3, 4, 2], seed=1)
    Ws[0][1, 1] = np.nan
    nan_model = tmp_path / "nan.onnx"
    onnx.save(onnx_mlp(Ws, bs), str(nan_model))
    cases[nan_model] = "NaN"
    Ws, bs = random_weights([3, 4, 4, 2], seed=1)
    m = onnx_mlp(Ws, bs)
    for node in m.graph.node:
        if node.op_type == "Relu":
            node.op_type, node.name = "LeakyRelu", "leaky1"
            break
    leaky = tmp_path / "leaky.onnx"
    onnx.save(m, str(leaky))
    cases[leaky] = "leaky1"
    for path, message in cases.items():
        out = tmp_path / "out.onnx"
        proc = _run_cli("compress", str(path), "--domain", str(box), "-o", str(out))
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert not out.exists()
    proc = _run_cli("compress", str(tmp_path / "nope.onnx"), "--domain", str(box), "-o", str(tmp_path / "o.onnx"))
    assert proc.returncode == 2 and "no such file" in proc.stderr


def test_inspect(tiny, capsys):
    model, _ = tiny
    assert main(["inspect", str(model), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [l["out"] for l in info["layers"]] == [8, 6, 2]
    assert info["head"]["nodes"] == ["Softmax", "ArgMax"]
    assert main(["inspect", str(model)]) == 0
    assert "layer 1: dense 3 -> 8 + ReLU" in capsys.readouterr().out


def test_python_api_mirrors_cli(tmp_path, tiny):
    import exactcomp

    model, box = tiny
    net = exactcomp.load(model)
    analysis = exactcomp.analyze(net, box)
    assert sum(analysis.totals().values()) == sum(net.widths[:-1])
    result = exactcomp.compress(net, box, analysis=analysis)
    path = result.save(tmp_path / "api.onnx")
    check = exactcomp.verify(model, path, box, extra_points=analysis.witnesses)
    assert check.passed and check.extra_points == len(analysis.witnesses)
    with pytest.raises(exactcomp.DomainError):
        exactcomp.domain(net, {"lower": 1, "upper": 0})


def test_stored_witnesses_are_used_by_verify(tmp_path, tiny, capsys):
    model, box = tiny
    out = tmp_path / "small.onnx"
    assert main(["compress", str(model), "--domain", str(box), "-o", str(out), "-q", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    stored = tmp_path / "small.witnesses.npy"
    assert report["witnesses"]["file"] == str(stored) and stored.exists()
    witnesses = np.load(stored)
    assert len(witnesses) == report["witnesses"]["count"] > 0
    assert main(["verify", str(model), str(out), "--domain", str(box), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["extra_points"] == len(witnesses)
    # extra points outside the domain are dropped: the models need only agree on the box
    outside = tmp_path / "outside.npy"
    np.save(outside, np.full((5, 3), 7.0))
    assert main(["verify", str(model), str(out), "--domain", str(box), "--points", str(outside), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["extra_points"] == len(witnesses)
    assert main(["compress", str(model), "--domain", str(box), "-o", str(tmp_path / "b.onnx"), "-q", "--no-witnesses"]) == 0
    assert not (tmp_path / "b.witnesses.npy").exists()


@pytest.mark.parametrize("strategy", ["auto", "network", "per-neuron", "bounds"])
def test_compress_strategies_report_how_neurons_were_decided(tmp_path, tiny, capsys, strategy):
    model, box = tiny
    out, report = tmp_path / "small.onnx", tmp_path / "r.json"
    assert main(["compress", str(model), "--domain", str(box), "-o", str(out), "--report", str(report),
                 "--strategy", strategy, "--time-limit", "60", "--margin", "1e-5", "--threads", "1",
                 "--random-points", "0", "--gradient-steps", "0"]) == 0
    data = json.loads(report.read_text())
    assert data["analysis"]["strategy"] == strategy and data["analysis"]["margin"] == 1e-5
    assert data["verification"]["passed"] is True
    methods = {m for layer in data["layers"] for m in layer["neuron_method"]}
    allowed = {"interval", "symbolic", "lp", "milp", "alpha", "bab", "input_split", "witness", "no_payoff", None}
    assert methods <= allowed
    for layer in data["layers"]:      # neurons left because no decision could change the model: not_needed
        for status, method in zip(layer["neuron_status"], layer["neuron_method"]):
            assert (method == "no_payoff") == (status == "not_needed")
    if strategy != "bounds":
        assert data["totals"]["unknown"] == 0
    Ws, bs = random_weights([3, 8, 6, 2], seed=0, bias_shift=-0.3)
    X = np.random.default_rng(0).uniform([-1, -1, 0], [1, 1, 2], size=(2000, 3)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(out, X)[0], run_onnx(model, X)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("option", [["--strategy", "magic"], ["--time-limit", "-3"], ["--margin", "0"],
                                    ["--threads", "zero"]])
def test_bad_analysis_options_exit_2(tmp_path, tiny, option):
    model, box = tiny
    out = tmp_path / "o.onnx"
    proc = _run_cli("compress", str(model), "--domain", str(box), "-o", str(out), *option)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and option[0] in proc.stderr
    assert not out.exists()
