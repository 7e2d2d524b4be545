"""``--random-points`` / ``random_points`` have an upper limit (issue 20, point 5): 1e12 used to be accepted
and ran until killed. The CLI, ``AnalysisOptions`` and ``exactcomp.verify`` refuse the same values."""

from __future__ import annotations


import numpy as np
import pytest

import exactcomp

from .conftest import tiny_model_folder
from .faults import assert_one_line_error, changes, cli, snapshot

MAX_RANDOM_POINTS = 10_000_000   # README: "at most 10,000,000"


@pytest.fixture
def work(tmp_path):
    return tiny_model_folder(tmp_path)


def test_one_limit_everywhere():
    from exactcomp.cli.main import MAX_COUNT
    from exactcomp.domain import MAX_RANDOM_POINTS as LIMIT

    assert MAX_COUNT == LIMIT == MAX_RANDOM_POINTS


@pytest.mark.parametrize("value", [str(10 ** 12), str(MAX_RANDOM_POINTS + 1)])
def test_cli_refuses_too_many_random_points(work, value):
    before = snapshot(work)
    for args in (["compress", "model.onnx", "--domain", "box.json", "-o", "out.onnx"],
                 ["verify", "model.onnx", "model.onnx", "--domain", "box.json"]):
        proc = cli(*args, "--random-points", value, cwd=work, timeout=60)
        assert_one_line_error(proc, 2, "--random-points")
        assert "at most 10,000,000" in proc.stderr
    assert changes(before, snapshot(work)) == set()


def test_api_refuses_bad_random_points(work):
    """In a subprocess with a timeout: without the limit, 1e12 random points run until killed."""
    import subprocess
    import sys

    code = f"""
import exactcomp
from exactcomp.errors import ExactcompError
net = exactcomp.load("model.onnx")
for value in (-1, 2.5, True, "5", {MAX_RANDOM_POINTS + 1}, 10 ** 12):
    for call in (lambda: exactcomp.analyze(net, "box.json", random_points=value),
                 lambda: exactcomp.verify("model.onnx", "model.onnx", "box.json", random_points=value)):
        try:
            call()
        except ExactcompError as exc:
            assert "random_points" in str(exc) and "\\n" not in str(exc), str(exc)
        else:
            raise SystemExit(f"random_points={{value!r}} accepted")
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_the_limit_itself_is_accepted_by_the_parser_and_the_api(work):
    from exactcomp.options import check_options
    from exactcomp.cli.main import build_parser

    args = build_parser().parse_args(["verify", "a.onnx", "b.onnx", "--domain", "box.json",
                                 "--random-points", str(MAX_RANDOM_POINTS)])
    assert args.random_points == MAX_RANDOM_POINTS
    check_options(exactcomp.AnalysisOptions(random_points=MAX_RANDOM_POINTS))
    check_options(exactcomp.AnalysisOptions(random_points=np.int64(0)))
    check = exactcomp.verify(work / "model.onnx", work / "model.onnx", work / "box.json", random_points=0)
    assert check.passed and check.random_points == 0
