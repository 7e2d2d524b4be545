"""Fault suite, options and verification: bad numbers, NaN tolerances, non-finite outputs, dtypes,
overflowing domains, machine-readable output that stays valid JSON with every solver back end."""

from __future__ import annotations

import argparse
import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from exactcomp.cli.main import build_parser
from exactcomp.solvers import available

from .conftest import onnx_mlp, random_weights, tiny_model_folder
from .faults import assert_one_line_error, changes, cli, snapshot


@pytest.fixture
def work(tmp_path):
    return tiny_model_folder(tmp_path)


@pytest.mark.parametrize("option", [
    ["--random-points", "-1"], ["--random-points", "1e9"], ["--seed", "-1"], ["--gradient-steps", "-5"],
    ["--margin", "1e300"], ["--margin", "nan"], ["--margin", "0"], ["--jobs", "1000000000"], ["--jobs", "0"],
    ["--threads", "0"], ["--time-limit", "nan"], ["--time-limit", "-1"], ["--time-limit", "inf"],
])
def test_bad_compress_numbers(work, option):
    before = snapshot(work)
    proc = cli("compress", "model.onnx", "--domain", "box.json", "-o", "out.onnx", *option, cwd=work)
    assert_one_line_error(proc, 2, option[0])
    assert changes(before, snapshot(work)) == set()


@pytest.mark.parametrize("option", [["--random-points", "-1"], ["--rtol", "nan"], ["--atol", "nan"],
                                    ["--atol", "inf"], ["--rtol", "-1e-3"], ["--seed", "-2"]])
def test_bad_verify_numbers(work, option):
    proc = cli("verify", "model.onnx", "model.onnx", "--domain", "box.json", *option, cwd=work)
    assert_one_line_error(proc, 2, option[0])


def test_complex_or_boolean_samples_are_refused(work):
    for name, arr in (("c.npy", np.zeros((2, 4), complex)), ("b.npy", np.zeros((2, 4), bool))):
        np.save(work / name, arr)
        proc = cli("compress", "model.onnx", "--domain", "box.json", "-o", "out.onnx", "--samples", name, cwd=work)
        assert_one_line_error(proc, 2, name)
        assert not (work / "out.onnx").exists()


def _changed_copy(work, name: str, value: float) -> str:
    model = onnx.load(str(work / "model.onnx"))
    init = [i for i in model.graph.initializer if i.name == "b2"][0]
    arr = numpy_helper.to_array(init).copy()
    arr[0] += value
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(model, str(work / name))
    return name


def test_nan_in_the_compressed_output_is_a_mismatch_and_json_stays_valid(work):
    bad = _changed_copy(work, "nan.onnx", float("nan"))
    proc = cli("verify", "model.onnx", bad, "--domain", "box.json", "--json", cwd=work)
    assert proc.returncode == 1
    data = json.loads(proc.stdout, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert not data["passed"] and data["outputs"][0]["mismatches"] == data["points"]


def test_a_half_off_model_fails_whatever_the_tolerance_flags_say(work):
    off = _changed_copy(work, "off.onnx", 0.5)
    assert cli("verify", "model.onnx", off, "--domain", "box.json", cwd=work).returncode == 1
    for flag in ("--rtol", "--atol"):
        assert_one_line_error(cli("verify", "model.onnx", off, "--domain", "box.json", flag, "nan", cwd=work), 2)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_refolded_models_of_every_float_type_verify(tmp_path, dtype):
    """Mostly active neurons: compress refolds weights (basis of active rows, merged layers); the
    result must pass verification with the default tolerance of its own float type."""
    Ws, bs = random_weights([20, 64, 64, 32, 10], seed=1, scale=0.15, bias_shift=1.0)
    onnx.save(onnx_mlp(Ws, bs, dtype=dtype), str(tmp_path / "m.onnx"))
    (tmp_path / "box.json").write_text(json.dumps({"lower": 0, "upper": 1}))
    proc = cli("compress", "m.onnx", "--domain", "box.json", "-o", "c.onnx", "--report", "r.json",
               "--strategy", "bounds", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    from exactcomp.verify.compare import TOLERANCES

    v = report["verification"]
    assert v["passed"] and v["dtype"] == np.dtype(dtype).name
    assert (v["atol"], v["rtol"]) == TOLERANCES[np.dtype(dtype).name]
    assert report["parameters"]["after"] < report["parameters"]["before"]


@pytest.mark.parametrize("bound, needle", [(1e300, "outside the range"), (3e38, "not finite")])
def test_domain_that_overflows_the_float_type_is_refused(work, bound, needle):
    (work / "huge.json").write_text(json.dumps({"lower": -bound, "upper": bound}))
    before = snapshot(work)
    proc = cli("compress", "model.onnx", "--domain", "huge.json", "-o", "out.onnx", cwd=work)
    assert_one_line_error(proc, 2, needle)
    assert changes(before, snapshot(work)) == set()
    assert_one_line_error(cli("verify", "model.onnx", "model.onnx", "--domain", "huge.json", cwd=work), 2)


def test_solvers_json_is_valid(work):
    proc = cli("solvers", "--json", cwd=work)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) >= {"highs", "scip", "pyomo", "ortools"} and all("usable" in v for v in data.values())
    table = cli("solvers", cwd=work).stdout
    assert table.splitlines()[0].split()[:2] == ["solver", "usable"]


#: The solver route (LP tightening and MILPs; no input splitting or branch and bound), so the back end runs.
MILP_PROVERS = ["--provers", "bounds,witnesses,lp,milp"]
USABLE = [name for name, status in available().items() if not status.startswith("unavailable")]


@pytest.mark.parametrize("solver", USABLE)
def test_compress_json_is_valid_with_every_back_end(work, solver):
    """The solver runs (no witness search, so MILPs/LPs decide) and nothing but the report reaches stdout."""
    proc = cli("compress", "model.onnx", "--domain", "box.json", "-o", "out.onnx", "--json", "--solver", solver,
               "--random-points", "0", "--gradient-steps", "0", "--no-symbolic", *MILP_PROVERS, cwd=work)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["analysis"]["solver"] == solver
    assert report["analysis"]["stats"].get("lp_solves", 0) + report["analysis"]["stats"].get("per_neuron_milps", 0) > 0
    assert "HiGHS" not in proc.stderr   # and no banner on the terminal either


def test_solver_log_goes_to_stderr(work):
    proc = cli("compress", "model.onnx", "--domain", "box.json", "-o", "out.onnx", "--json", "--solver-log",
               "--random-points", "0", "--gradient-steps", "0", "--no-symbolic", *MILP_PROVERS, cwd=work)
    assert proc.returncode == 0
    json.loads(proc.stdout)
    assert "HiGHS" in proc.stderr


def test_help_documents_every_argument_and_the_exit_codes():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        for action in command._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help text"
    top = parser.format_help()
    for code in ("0 ", "1 ", "2 ", "130", "143", "141"):
        assert code in top
    assert "slow" in sub.choices["compress"].format_help()   # per-neuron is the slow baseline


def test_random_points_are_evaluated_in_bounded_batches(monkeypatch):
    """Any number of random points: verification chunks never exceed CHUNK rows, and the witness
    tracker keeps a bounded pool however many points it sees."""
    import importlib

    verify_module = importlib.import_module("exactcomp.verify.points")   # the module (exactcomp.verify is also the API function)
    from exactcomp.domain import Box
    from exactcomp.witnesses.search import WitnessTracker

    from .conftest import random_network

    monkeypatch.setattr(verify_module, "CHUNK", 500)
    points = verify_module.verification_points(Box(np.zeros(3), np.ones(3)), random_points=12_345, corners=4)
    sizes = [len(c) for c in points.chunks()]
    assert max(sizes) <= 500 and sum(sizes) == points.total == 12_345 + 8
    net = random_network([3, 16, 16, 2], seed=2)
    tracker = WitnessTracker(net, Box(-np.ones(3), np.ones(3)))
    tracker.offer_random(200_000, np.random.default_rng(0), batch=1000)
    neurons = 32
    assert tracker.evaluated == 200_000 and len(tracker.pool()) <= 4 * neurons + 1024 + 2 * neurons
    # every recorded extreme is still attained by its stored point
    pool = tracker.pool()
    _, pre = net.forward(pool, return_preactivations=True)
    for k, g in enumerate(pre):
        np.testing.assert_array_equal(g[tracker.max_point[k], np.arange(g.shape[1])], tracker.max_value[k])


def test_progress_bars_show_count_and_eta():
    import io

    from rich.console import Console

    from exactcomp.cli.progress import RichProgress

    buffer = io.StringIO()
    with RichProgress(Console(file=buffer, force_terminal=True, width=120)) as progress:
        advance = progress.phase("per-neuron MILPs", 10)
        advance(4, 10, "layer 2")
        progress._progress.refresh()
    text = buffer.getvalue()
    assert "4/10" in text and "ETA" in text and "layer 2" in text


@pytest.mark.parametrize("bad", [dict(samples=np.zeros((2, 4), complex)), dict(seed=-1), dict(random_points=1.5),
                                 dict(margin=float("nan")), dict(margin=2.0), dict(jobs=0), dict(threads=0),
                                 dict(gradient_steps=-5), dict(time_limit=float("inf")), dict(time_limit=-1)])
def test_api_options_are_validated_like_the_cli(bad):
    import exactcomp
    from exactcomp.errors import ExactcompError

    from .conftest import random_network

    net = random_network([4, 6, 2], seed=0)
    with pytest.raises(ExactcompError):
        exactcomp.analyze(net, exactcomp.Box(np.zeros(4), np.ones(4)), **bad)


def test_compress_flags_are_generated_from_the_analysis_options():
    """Issue 22: one place for an option's flag, help, type and default (exactcomp.options.AnalysisOptions)."""
    import dataclasses

    from exactcomp.cli.analysis_flags import analysis_kwargs, flagged_fields
    from exactcomp.options import AnalysisOptions

    parser = build_parser()
    base = ["compress", "m.onnx", "--domain", "box.json", "-o", "out.onnx"]
    defaults = analysis_kwargs(parser.parse_args(base))
    expected = {f.name: f.default for f in dataclasses.fields(AnalysisOptions) if "flag" in f.metadata}
    expected.pop("margin")                       # left to the options' own default unless given
    assert defaults == expected and len(flagged_fields()) >= 15
    given = analysis_kwargs(parser.parse_args(base + ["--no-symbolic", "--time-limit", "none", "--jobs", "2",
                                                      "--margin", "0.01", "--provers", "bounds,milp"]))
    assert (given["symbolic"], given["time_limit"], given["jobs"], given["margin"], given["provers"]) == (
        False, None, 2, 0.01, ("bounds", "milp"))
    assert AnalysisOptions(**given).jobs == 2    # every key is an option
    help_text = parser._subparsers._group_actions[0].choices["compress"].format_help()
    for f in flagged_fields():
        assert f.metadata["flag"] in help_text
