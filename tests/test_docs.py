"""The worked examples of docs/extending.md run as written (from the repository root).

Solvers stop at a relative MIP gap (HiGHS's ``mip_rel_gap``, 1e-4 by default, also inside SciPy),
so two correct back ends may report optima that differ in the fifth digit, and the difference
changes between solver versions. The test therefore compares what exactcomp decides (the status
of every neuron) and checks the optima only up to that gap.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MIP_GAP = 1e-4  # HiGHS's default relative gap, the loosest of the solvers compared here


def _same_optimum(value: float, reference) -> bool:
    """``value`` is an optimum within the MIP gap of ``reference`` (a SolveResult with a dual bound)."""
    scale = max(1.0, abs(reference.objective))
    low, high = reference.objective, reference.dual_bound if reference.dual_bound is not None else reference.objective
    return low - 2 * MIP_GAP * scale <= value <= high + 2 * MIP_GAP * scale


def test_extending_examples_run(capsys):
    import exactcomp

    text = (ROOT / "docs" / "extending.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 5
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        scope: dict = {}
        for block in blocks:
            exec(compile(block, "docs/extending.md", "exec"), scope)
    finally:
        os.chdir(cwd)
    # the example back end and formulation reach the optimum HiGHS reaches on plain big-M (up to the MIP gap)
    reference = scope["reference"]
    assert scope["mine"].status == reference.status
    assert _same_optimum(scope["mine"].objective, reference)
    triangle = scope["get_solver"]("highs").solve(scope["triangle"])
    assert _same_optimum(triangle.objective, reference)
    # and the whole analyses with them decide every neuron as the default analysis does
    default = exactcomp.analyze(scope["net"], scope["box"])
    for name in ("scipy_analysis", "triangle_analysis"):
        for mine, ref in zip(scope[name].layers, default.layers):
            np.testing.assert_array_equal(mine.status, ref.status, err_msg=name)
    small_default = exactcomp.analyze(scope["small"], scope["small_box"], time_limit=None)
    for mine, ref in zip(scope["crown_analysis"].layers, small_default.layers):
        np.testing.assert_array_equal(mine.status, ref.status, err_msg="crown")
    # the example prover proved something, and every proof of it re-checked
    crown = scope["crown_analysis"]
    assert sum(layer.methods().get("crown", 0) for layer in crown.layers) > 0
    assert crown.stats["certificates_checked"] >= sum(layer.methods().get("crown", 0) for layer in crown.layers)
    assert crown.stats.get("certificates_rejected", 0) == 0
    # the example op unit: a 1-D convolution read, its dead channel removed, written as a 1-D Conv that
    # computes what the original does (onnxruntime)
    from exactcomp.ops.conv1d import Conv1d

    from .conftest import run_onnx

    assert type(scope["signal_result"].compressed.hidden[0]) is Conv1d
    assert scope["signal_result"].compressed.hidden[0].channels == 3
    X = np.random.default_rng(0).random((200, 2, 16)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(scope["signal_small"], X)[0], run_onnx(scope["signal_model"], X)[0],
                               rtol=1e-4, atol=1e-4)
    assert {n.op_type for n in scope["signal_small"].graph.node} >= {"Conv"}
    # the example executor: its units ran, and the analysis decides as the default one
    threads = scope["threads_analysis"]
    assert threads.stats.get("distributed_units", 0) > 0
    for mine, ref in zip(threads.layers, small_default.layers):
        np.testing.assert_array_equal(mine.status, ref.status, err_msg="threads executor")


def test_readme_python_snippet_runs(tmp_path):
    """The README's API snippet, as a user runs it: a fresh interpreter in a folder with ``models/``."""
    import subprocess
    import sys

    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API"):]
    snippet = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    (tmp_path / "models").symlink_to(ROOT / "models")
    proc = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for name in ("small_digits.onnx", "small_digits.witnesses.npy", "small_digits.json"):
        assert (tmp_path / name).is_file(), name
    assert not (tmp_path / "small.onnx").exists()   # the CLI example's output is not overwritten
