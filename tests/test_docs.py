"""The worked examples of docs/extending.md run as written (from the repository root)."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_extending_examples_run(capsys):
    text = (ROOT / "docs" / "extending.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 2
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        scope: dict = {}
        for block in blocks:
            exec(compile(block, "docs/extending.md", "exec"), scope)
    finally:
        os.chdir(cwd)
    # the example back end and formulation reach the same optimum as HiGHS on plain big-M
    reference = scope["reference"].objective
    assert abs(scope["mine"].objective - reference) <= 1e-6 * max(1.0, abs(reference))
    highs = scope["get_solver"]("highs")
    assert abs(highs.solve(scope["triangle"]).objective - reference) <= 1e-6 * max(1.0, abs(reference))
