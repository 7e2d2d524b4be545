"""``exactcomp bench``: the grid runs, CSV/JSON are written, configurations agree, plots are drawn."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from exactcomp.cli.main import main

MODELS = Path(__file__).resolve().parent.parent / "models"


def test_bench_grid_writes_results_and_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "bench"
    code = main(["bench", str(MODELS / "digits_64x32x32.onnx"), "--strategy", "auto,bounds",
                 "--formulation", "bigm,bigm-ideal", "--time-limit", "60", "--out", str(out)])
    assert code == 0
    doc = json.loads((out / "results.json").read_text())
    assert {"machine", "command", "records"} <= set(doc) and "solvers" in doc["machine"]
    records = doc["records"]
    assert len(records) == 4 and not any(r["error"] for r in records)
    # every configuration decides the same neurons
    assert len({(r["stably_active"], r["stably_inactive"], r["unstable"]) for r in records}) == 1
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["formulation"] for r in rows] == ["bigm", "bigm-ideal", "bigm", "bigm-ideal"]
    for name in ("time_vs_size.png", "stable_vs_l1.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_bench_rejects_unknown_names_before_running(tmp_path, capsys):
    code = main(["bench", str(MODELS / "digits_64x32x32.onnx"), "--formulation", "nope", "--out", str(tmp_path)])
    assert code == 2 and "unknown formulation 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()


def test_bench_grid_cells_on_a_process_pool_match_in_process(tmp_path, capsys):
    """Grid cells are work units: on two worker processes, the same records in the same (grid) order."""
    args = ["bench", str(MODELS / "digits_64x32x32.onnx"), str(MODELS / "mnist_784x100x100.onnx"), "--strategy",
            "auto,bounds", "--time-limit", "60", "--no-plots"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert main([*args, "--out", str(tmp_path / "pool"), "--workers", "2"]) == 0
    one, pool = (json.loads((tmp_path / d / "results.json").read_text())["records"] for d in ("one", "pool"))
    keys = ("model", "strategy", "stably_active", "stably_inactive", "unstable", "unknown")
    assert [tuple(r[k] for k in keys) for r in pool] == [tuple(r[k] for k in keys) for r in one]
