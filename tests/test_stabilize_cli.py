"""``exactcomp stabilize`` as a user runs it: a stabilized model that compresses exactly, and bad input as one
line, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import onnx
import pytest
import torch

import exactcomp

from .conftest import export_torch, onnx_mlp, random_weights, run_onnx
from .faults import assert_one_line_error, changes, cli, popen, snapshot


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A digits MLP trained without sparsity, its data split, a [0, 1] box."""
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("stab")
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(64, 24), torch.nn.ReLU(), torch.nn.Linear(24, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(torch.from_numpy(X[:1200])), torch.from_numpy(y[:1200])).backward()
        opt.step()
    export_torch(net, folder / "m.onnx", dynamo=False, shape=(1, 64))
    np.save(folder / "x.npy", X[:1200])
    np.save(folder / "y.npy", y[:1200])
    np.save(folder / "vx.npy", X[1200:])
    np.save(folder / "vy.npy", y[1200:])
    (folder / "box.json").write_text(json.dumps({"lower": 0, "upper": 1}))
    return folder


BASE = ["stabilize", "m.onnx", "--domain", "box.json", "--data", "x.npy", "--labels", "y.npy"]


def test_stabilize_then_compress_exactly(work):
    proc = cli(*BASE, "--val-data", "vx.npy", "--val-labels", "vy.npy", "-o", "s.onnx", "--report", "s.json",
               "--max-accuracy-drop", "2", "--time-limit", "25", "--epochs", "1", cwd=work)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((work / "s.json").read_text())
    chosen = record["rounds"][record["chosen"] - 1]
    original, stable = onnx.load(str(work / "m.onnx")), onnx.load(str(work / "s.onnx"))
    assert [n.op_type for n in stable.graph.node] == [n.op_type for n in original.graph.node]
    assert stable.graph.input == original.graph.input and stable.graph.output == original.graph.output
    X, y = np.load(work / "vx.npy"), np.load(work / "vy.npy")
    before = float((run_onnx(original, X)[0].argmax(1) == y).mean())
    after = float((run_onnx(stable, X)[0].argmax(1) == y).mean())
    assert after >= before - 0.02 - 1e-9 and after == pytest.approx(chosen["accuracy"], abs=1e-9)
    compressed = cli("compress", "s.onnx", "--domain", "box.json", "-o", "small.onnx", "--report", "c.json", cwd=work)
    assert compressed.returncode == 0, compressed.stderr
    report = json.loads((work / "c.json").read_text())
    assert report["totals"]["stably_inactive"] >= chosen["units_given_up"] and report["verification"]["passed"]


@pytest.mark.parametrize("case, needle", [
    ("labels_length", "labels for"), ("labels_range", "must lie in 0..9"), ("outside", "outside the domain"),
    ("nan", "NaN"), ("empty", "no rows"), ("output_is_input", "would overwrite"), ("labels_float", "1-D integer"),
    ("val_labels_alone", "validation labels need validation data"), ("unsupported", "cannot be trained"),
    ("no_relu", "no Relu"), ("chance", "at chance level"), ("bool_data", "real numbers"),
    ("then_compress_is_output", "would overwrite"), ("device", "device must be"),
])
def test_bad_input_is_one_line_and_writes_nothing(work, tmp_path, case, needle):
    args = list(BASE) + ["-o", "out.onnx"]
    if case == "labels_length":
        np.save(tmp_path / "y.npy", np.zeros(5, np.int64))
        args[args.index("y.npy")] = tmp_path / "y.npy"
    elif case == "labels_range":
        np.save(tmp_path / "y.npy", np.full(1200, 12, np.int64))
        args[args.index("y.npy")] = tmp_path / "y.npy"
    elif case == "labels_float":
        np.save(tmp_path / "y.npy", np.zeros(1200))
        args[args.index("y.npy")] = tmp_path / "y.npy"
    elif case in ("outside", "nan", "empty"):
        data = np.load(work / "x.npy")
        data = {"outside": data + 2, "nan": np.where(data > 0.5, np.nan, data), "empty": data[:0]}[case]
        np.save(tmp_path / "x.npy", data)
        args[args.index("x.npy")] = tmp_path / "x.npy"
    elif case == "output_is_input":
        args[-1] = "x.npy"
    elif case == "val_labels_alone":
        args += ["--val-labels", "vy.npy"]
    elif case == "no_relu":
        Ws, bs = random_weights([64, 10], seed=0)
        onnx.save(onnx_mlp(Ws, bs), str(tmp_path / "m.onnx"))
        args[1] = tmp_path / "m.onnx"
    elif case == "chance":   # labels the model never predicts
        predicted = run_onnx(onnx.load(str(work / "m.onnx")), np.load(work / "x.npy"))[0].argmax(1)
        np.save(tmp_path / "y.npy", (predicted + 1) % 10)
        args[args.index("y.npy")] = tmp_path / "y.npy"
    elif case == "bool_data":
        np.save(tmp_path / "x.npy", np.load(work / "x.npy") > 0.5)
        args[args.index("x.npy")] = tmp_path / "x.npy"
    elif case == "then_compress_is_output":
        args += ["--then-compress", "out.onnx"]
    elif case == "device":
        args += ["--device", "gpu0"]
    elif case == "unsupported":
        Ws, bs = random_weights([64, 8, 10], seed=0)
        model = onnx_mlp(Ws, bs)
        model.graph.node.insert(1, onnx.helper.make_node("Identity", ["g0"], ["g0i"]))
        model.graph.node[2].op_type = "LeakyRelu"   # exactcomp refuses it too, naming the node
        model.graph.node[2].input[0] = "g0i"
        onnx.save(model, str(tmp_path / "m.onnx"))
        args[1] = tmp_path / "m.onnx"
        needle = "LeakyRelu"
    before = snapshot(work)
    proc = cli(*args, cwd=work)
    assert_one_line_error(proc, 2, needle)
    assert changes(before, snapshot(work)) == set()


def test_an_unmeetable_budget_writes_nothing_and_exits_1(work):
    proc = cli(*BASE, "--val-data", "vx.npy", "--val-labels", "vy.npy", "-o", "none.onnx", "--max-accuracy-drop", "0",
               "--time-limit", "8", "--epochs", "1", cwd=work)
    if proc.returncode == 0:   # fine-tuning may gain accuracy; then a round met even a zero-drop budget
        return
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()   # a progress line per round, then the one error line
    assert lines[-1].startswith("exactcomp: error:") and "no round met the budget" in lines[-1]
    assert all(line.startswith("round ") for line in lines[:-1])
    assert not (work / "none.onnx").exists()


def test_then_compress_writes_both_models_and_the_report_says_what_compress_did(work):
    proc = cli(*BASE, "--val-data", "vx.npy", "--val-labels", "vy.npy", "-o", "tc.onnx", "--report", "tc.json",
               "--then-compress", "tc_small.onnx", "--max-accuracy-drop", "2", "--time-limit", "20", "--epochs", "1",
               "-q", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""   # --quiet: no round lines
    report = json.loads((work / "tc.json").read_text())
    small = exactcomp.load(work / "tc_small.onnx")   # read back independently of the report
    assert report["compress"]["parameters_after"] == small.parameter_count
    assert report["compress"]["parameters_before"] == exactcomp.load(work / "tc.onnx").parameter_count
    assert report["compress"]["unknown"] == 0
    check = exactcomp.verify(work / "tc.onnx", work / "tc_small.onnx", {"lower": 0.0, "upper": 1.0})
    assert check.passed
    assert "compressed exactly to tc_small.onnx" in proc.stdout


def test_without_torch_one_line_exit_2(work, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class _NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ModuleNotFoundError(\"No module named 'torch'\")\n"
        "sys.meta_path.insert(0, _NoTorch())\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    before = snapshot(work)
    proc = cli(*BASE, "-o", "nt.onnx", cwd=work, env=env)
    assert_one_line_error(proc, 2, "needs torch")
    assert changes(before, snapshot(work)) == set()


def test_an_interrupt_leaves_nothing_or_a_model_that_meets_the_budget(work):
    """SIGINT right after the first round's line: exit 130, and the model exists exactly when that round met
    the budget, which onnxruntime confirms on the validation data."""
    out = work / "int.onnx"
    proc = popen(*BASE, "--val-data", "vx.npy", "--val-labels", "vy.npy", "-o", out.name, "--max-accuracy-drop", "1",
                 "--time-limit", "200", "--epochs", "3", cwd=work)
    line = proc.stderr.readline()
    assert line.startswith("round 1:"), line
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == 130, rest
    X, y = np.load(work / "vx.npy"), np.load(work / "vy.npy")
    before = float((run_onnx(onnx.load(str(work / "m.onnx")), X)[0].argmax(1) == y).mean())
    accuracy = float(line.split("accuracy ")[1].split()[0])
    met = "all proven dead" in line and accuracy >= before - 0.01 - 1e-9
    assert out.exists() == met or (out.exists() and "round 2:" in rest)
    if out.exists():
        after = float((run_onnx(onnx.load(str(out)), X)[0].argmax(1) == y).mean())
        assert after >= before - 0.01 - 1e-9


def test_sweep_writes_a_table_a_png_and_points_that_match_compress(work):
    proc = cli(*BASE, "--val-data", "vx.npy", "--val-labels", "vy.npy", "-o", "sw.onnx", "--report", "sw.json",
               "--max-accuracy-drop", "3", "--time-limit", "20", "--epochs", "1", "--sweep", "2",
               "--baseline-epochs", "3", "-q", cwd=work)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((work / "sw.json").read_text())
    points = report["sweep"]["points"]
    assert {p["method"] for p in points} == {"stabilize", "magnitude", "l1_scratch"}
    assert (work / "sw.sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| stabilize |" in proc.stdout and "| l1_scratch |" in proc.stdout
    # the written model is the chosen round: compressing it gives that round's point
    chosen = [p for p in points if p["method"] == "stabilize" and p["strength"] == report["fraction"]]
    compressed = cli("compress", "sw.onnx", "--domain", "box.json", "-o", "sw_small.onnx", "--report", "swc.json",
                     cwd=work)
    assert compressed.returncode == 0, compressed.stderr
    assert len(chosen) == 1 and chosen[0]["meets_budget"]
    assert json.loads((work / "swc.json").read_text())["parameters"]["after"] == chosen[0]["parameters"]
    X, y = np.load(work / "vx.npy"), np.load(work / "vy.npy")
    l1_point = next(p for p in points if p["method"] == "l1_scratch")
    assert 0.0 <= l1_point["metric"] <= 1.0 and l1_point["parameters"] > 0
    assert float((run_onnx(onnx.load(str(work / "sw.onnx")), X)[0].argmax(1) == y).mean()) == pytest.approx(
        chosen[0]["metric"], abs=1e-9)


def test_the_sweep_uses_the_score_asked_for_on_its_stabilize_curve(monkeypatch):
    """``--score`` goes to the stabilize curve of ``--sweep`` (it was silently dropped); magnitude keeps its own."""
    import exactcomp.finetune.api as api
    from exactcomp.finetune.sweep import sweep

    calls = []

    class Stop(Exception):
        pass

    def record(*args, **kwargs):
        calls.append(kwargs.get("score"))
        raise Stop

    monkeypatch.setattr(api, "stabilize", record)
    with pytest.raises(Stop):
        sweep("m.onnx", None, None, ["box.json"], points=2, score="ablation")
    assert calls == ["ablation"]
