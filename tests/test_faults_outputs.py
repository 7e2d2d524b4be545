"""Fault suite, outputs: the CLI never overwrites an input, never leaves half a result.

Every case runs ``python -m exactcomp`` in a subprocess and hashes every file of the work folder
before and after: only the intended outputs may appear.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest

from .conftest import onnx_mlp, random_weights
from .faults import assert_one_line_error, changes, cli, snapshot


@pytest.fixture
def work(tmp_path):
    """A folder with a model (weights in an external-data file), a domain and samples."""
    Ws, bs = random_weights([3, 8, 6, 2], seed=0, bias_shift=-0.3)
    model = onnx_mlp(Ws, bs, head="softmax")
    onnx.save(model, str(tmp_path / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="model.weights", size_threshold=0)
    (tmp_path / "box.json").write_text(json.dumps({"lower": [-1, -1, 0], "upper": [1, 1, 2]}))
    np.save(tmp_path / "samples.npy", np.zeros((4, 3)))
    return tmp_path


def _compress(work, *extra):
    return cli("compress", "model.onnx", "--domain", "box.json", "--samples", "samples.npy", *extra, cwd=work)


@pytest.mark.parametrize("extra, needle", [
    (["-o", "model.onnx"], "input model"),
    (["-o", "out.onnx", "--report", "model.onnx"], "input model"),
    (["-o", "out.onnx", "--witnesses", "box.json"], "domain file"),
    (["-o", "out.onnx", "--report", "samples.npy"], "samples file"),
    (["-o", "out.onnx", "--report", "model.weights"], "external data file"),
    (["-o", "out.onnx", "--report", "out.onnx"], "name the same file"),
    (["-o", "out.onnx", "--report", "r.json", "--witnesses", "r.json"], "name the same file"),
    (["-o", "out.onnx", "--witnesses", "./sub/../model.onnx"], "input model"),
    (["-o", "model.witnesses.npy", "--witnesses", "model.witnesses.npy"], "name the same file"),
])
def test_output_colliding_with_an_input_or_output_is_refused(work, extra, needle):
    (work / "sub").mkdir()
    before = snapshot(work)
    proc = _compress(work, *extra)
    assert_one_line_error(proc, 2, needle)
    assert changes(before, snapshot(work)) == set()


def test_symlinks_and_hard_links_are_resolved(work):
    os.symlink("model.onnx", work / "alias.onnx")
    os.link(work / "box.json", work / "box-link.json")
    before = snapshot(work)
    assert_one_line_error(_compress(work, "-o", "alias.onnx"), 2, "input model")
    assert_one_line_error(_compress(work, "-o", "out.onnx", "--report", "box-link.json"), 2, "domain file")
    assert changes(before, snapshot(work)) == set()


@pytest.mark.parametrize("target", ["report", "witnesses", "output"])
def test_unwritable_target_fails_before_any_work(work, target):
    blocked = "/proc/exactcomp-test/x" if target != "output" else "/proc/x.onnx"
    extra = {"report": ["-o", "out.onnx", "--report", blocked],
             "witnesses": ["-o", "out.onnx", "--witnesses", blocked],
             "output": ["-o", blocked]}[target]
    before = snapshot(work)
    proc = _compress(work, *extra)
    assert_one_line_error(proc, 2, blocked)
    assert changes(before, snapshot(work)) == set()   # in particular no out.onnx


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_read_only_folder(work):
    ro = work / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        before = snapshot(work)
        assert_one_line_error(_compress(work, "-o", "out.onnx", "--report", "ro/r.json"), 2, "cannot write")
        assert changes(before, snapshot(work)) == set()
    finally:
        ro.chmod(0o755)


def test_directory_as_output(work):
    (work / "d").mkdir()
    before = snapshot(work)
    assert_one_line_error(_compress(work, "-o", "d"), 2, "directory")
    assert_one_line_error(_compress(work, "-o", "out.onnx", "--report", "d"), 2, "directory")
    assert changes(before, snapshot(work)) == set()


def test_outputs_appear_together(work):
    before = snapshot(work)
    proc = _compress(work, "-o", "out.onnx", "--report", "r.json", "-q")
    assert proc.returncode == 0, proc.stderr
    assert {Path(p).name for p in changes(before, snapshot(work))} == {"out.onnx", "out.witnesses.npy", "r.json"}
    assert not [p for p in work.iterdir() if p.name.endswith((".tmp", ".bak", ".probe"))]
    report = json.loads((work / "r.json").read_text())
    assert report["witnesses"]["bytes"] == (work / "out.witnesses.npy").stat().st_size
    assert "out.witnesses.npy" in proc.stdout and "verify" in proc.stdout


def test_stale_witnesses_are_ignored(work):
    """A witnesses file beside a newer model (written for another model) is not used, and said so."""
    assert _compress(work, "-o", "a.onnx", "-q").returncode == 0
    assert _compress(work, "-o", "b.onnx", "-q", "--seed", "1", "--random-points", "50").returncode == 0
    stale = np.load(work / "a.witnesses.npy")
    np.save(work / "b.witnesses.npy", np.vstack([stale, stale[:1] * 0.5]))   # other witnesses beside b
    np.save(work / "a.witnesses.npy", np.full((3, 3), 0.5))          # and a rewritten file beside a
    for name in ("a", "b"):
        proc = cli("verify", "model.onnx", f"{name}.onnx", "--domain", "box.json", "--json", cwd=work)
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        assert data["passed"] and data["extra_points"] == 0 and data["point_files"] == []
        assert data["notes"] and "ignored" in data["notes"][0]
    # the matching file is used
    assert _compress(work, "-o", "c.onnx", "-q").returncode == 0
    data = json.loads(cli("verify", "model.onnx", "c.onnx", "--domain", "box.json", "--json", cwd=work).stdout)
    assert data["extra_points"] > 0 and data["notes"] == []


def test_no_witnesses_file_when_asked(work):
    before = snapshot(work)
    assert _compress(work, "-o", "out.onnx", "--no-witnesses", "-q").returncode == 0
    assert {Path(p).name for p in changes(before, snapshot(work))} == {"out.onnx"}


def _fixed_batch_model(path: Path) -> None:
    """A float32 MLP whose input has a fixed batch of 8 instead of a symbolic one."""
    Ws, bs = random_weights([5, 12, 8, 3], seed=4, bias_shift=0.1)
    model = onnx_mlp(Ws, bs)
    for value in (model.graph.input[0], model.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_value = 8
    onnx.save(model, str(path))


@pytest.mark.parametrize("case", ["fixed-batch", "float16", "zero-width", "point"])
def test_valid_special_inputs_compress_and_touch_nothing_else(tmp_path, case):
    """Fixed batch, float16 and (partly or wholly) fixed inputs: exit 0, no traceback, verify passes
    from the CLI, and the only files that appear are the outputs asked for."""
    if case == "fixed-batch":
        _fixed_batch_model(tmp_path / "m.onnx")
        box = {"lower": -1, "upper": 1}
    else:
        Ws, bs = random_weights([5, 12, 8, 3], seed=4, scale=0.4, bias_shift=0.5)
        onnx.save(onnx_mlp(Ws, bs, dtype=np.float16 if case == "float16" else np.float32), str(tmp_path / "m.onnx"))
        box = {"lower": [-1, -1, 0.25, -1, 0.5], "upper": [1, 1, 0.25, 1, 0.5]} if case == "zero-width" else \
            {"lower": [0.1, 0.2, 0.3, 0.4, 0.5], "upper": [0.1, 0.2, 0.3, 0.4, 0.5]} if case == "point" else \
            {"lower": -1, "upper": 1}
    (tmp_path / "box.json").write_text(json.dumps(box))
    before = snapshot(tmp_path)
    proc = cli("compress", "m.onnx", "--domain", "box.json", "-o", "c.onnx", "--report", "r.json", cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert {Path(p).name for p in changes(before, snapshot(tmp_path))} == {"c.onnx", "c.witnesses.npy", "r.json"}
    check = cli("verify", "m.onnx", "c.onnx", "--domain", "box.json", "--json", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["passed"]
    written = onnx.load(str(tmp_path / "c.onnx"))
    if case == "fixed-batch":
        assert written.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 8
    if case == "zero-width":
        assert any(n.op_type == "Gather" for n in written.graph.node)
    if case == "point":
        assert not any(n.op_type == "Gemm" for n in written.graph.node)   # a constant model
