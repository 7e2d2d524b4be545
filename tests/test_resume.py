"""``--resume``: a later run on the same model and domain starts from an earlier report."""

from __future__ import annotations

import json

import onnx
import pytest

from .conftest import onnx_mlp, random_weights
from .faults import assert_one_line_error, changes, cli, snapshot


@pytest.fixture
def work(tmp_path):
    Ws, bs = random_weights([4, 12, 10, 6, 2], seed=3, scale=0.7, bias_shift=-0.8)
    onnx.save(onnx_mlp(Ws, bs), str(tmp_path / "m.onnx"))
    (tmp_path / "box.json").write_text(json.dumps({"lower": 0, "upper": 1}))
    return tmp_path


def _run(work, *extra):
    proc = cli("compress", "m.onnx", "--domain", "box.json", "-q", *extra, cwd=work)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_resume_reuses_proofs_and_finishes_the_rest(work):
    # first run: bounds and witnesses only (unknowns left)
    _run(work, "-o", "a.onnx", "--report", "a.json", "--strategy", "bounds", "--random-points", "50")
    first = json.loads((work / "a.json").read_text())
    assert first["totals"]["unknown"] > 0
    _run(work, "-o", "b.onnx", "--report", "b.json", "--resume", "a.json")
    resumed = json.loads((work / "b.json").read_text())
    _run(work, "-o", "c.onnx", "--report", "c.json")
    fresh = json.loads((work / "c.json").read_text())
    stable = first["totals"]["stably_active"] + first["totals"]["stably_inactive"]
    assert resumed["analysis"]["stats"]["resumed_proofs"] == stable
    assert resumed["resumed_from"] == "a.json" and resumed["totals"]["unknown"] == 0
    for a, b in zip(resumed["layers"], fresh["layers"]):
        assert a["neuron_status"] == b["neuron_status"]   # same decisions as a run from scratch
    assert resumed["verification"]["passed"]


@pytest.mark.parametrize("change, needle", [("model", "another network"), ("domain", "another domain"),
                                            ("margin", "margin"), ("garbage", "not a readable JSON")])
def test_resume_refuses_a_report_of_something_else(work, change, needle):
    _run(work, "-o", "a.onnx", "--report", "a.json", "--strategy", "bounds")
    args = ["--resume", "a.json"]
    if change == "model":
        Ws, bs = random_weights([4, 12, 10, 6, 2], seed=4, scale=0.7, bias_shift=-0.8)
        onnx.save(onnx_mlp(Ws, bs), str(work / "m.onnx"))
    elif change == "domain":
        (work / "box.json").write_text(json.dumps({"lower": -0.5, "upper": 0.5}))   # not inside [0, 1]
    elif change == "margin":
        args += ["--margin", "1e-3"]
    else:
        (work / "a.json").write_text("{nope")
    before = snapshot(work)
    proc = cli("compress", "m.onnx", "--domain", "box.json", "-o", "b.onnx", *args, cwd=work)
    assert_one_line_error(proc, 2, needle)
    assert changes(before, snapshot(work)) == set()


def test_resume_report_is_an_input_not_an_output(work):
    _run(work, "-o", "a.onnx", "--report", "a.json", "--strategy", "bounds")
    proc = cli("compress", "m.onnx", "--domain", "box.json", "-o", "b.onnx", "--report", "a.json",
               "--resume", "a.json", cwd=work)
    assert_one_line_error(proc, 2, "earlier report")


def test_resume_onto_a_sub_box_keeps_proofs_and_stays_exact(work):
    """A report over [0, 1] resumed over [0.2, 0.6]: the proofs carry over (stable on a box means stable on
    every sub-box), the run is exact on the sub-box (onnxruntime), and a fresh run over the sub-box proves
    at least the same neurons stable with the same signs."""
    _run(work, "-o", "a.onnx", "--report", "a.json")
    first = json.loads((work / "a.json").read_text())
    (work / "box.json").write_text(json.dumps({"lower": 0.2, "upper": 0.6}))
    _run(work, "-o", "b.onnx", "--report", "b.json", "--resume", "a.json")
    resumed = json.loads((work / "b.json").read_text())
    _run(work, "-o", "c.onnx", "--report", "c.json")
    fresh = json.loads((work / "c.json").read_text())
    assert resumed["verification"]["passed"] and resumed["totals"]["unknown"] == 0
    for old, new, ref in zip(first["layers"], resumed["layers"], fresh["layers"]):
        for s_old, s_new, s_ref in zip(old["neuron_status"], new["neuron_status"], ref["neuron_status"]):
            if s_old.startswith("stably"):
                assert s_new == s_old == s_ref
            assert s_new == s_ref
    proc = cli("verify", "m.onnx", "b.onnx", "--domain", "box.json", cwd=work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
