"""Fault suite, outputs: the CLI never overwrites an input, never leaves half a result.

Every case runs ``python -m exactcomp`` in a subprocess and hashes every file of the work folder
before and after: only the intended outputs may appear.
"""

from __future__ import annotations

import json
import os
import shutil
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
    shutil.copy(work / "a.witnesses.npy", work / "b.witnesses.npy")   # the wrong witnesses beside b
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
