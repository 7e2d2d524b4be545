"""``exactcomp stabilize`` as a user runs it: a stabilized model that compresses exactly, and bad input as one
line, exit 2, nothing written."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from .conftest import export_torch, onnx_mlp, random_weights, run_onnx
from .faults import assert_one_line_error, changes, cli, snapshot


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
    ("val_labels_alone", "--val-labels needs --val-data"), ("unsupported", "cannot be trained"),
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
