"""Fault suite, interrupts: SIGINT and SIGTERM at start-up and mid-analysis, and a closed stdout.

Documented behaviour (README, ``exactcomp --help``): an interrupt during the analysis still writes
the sound partial result, verified, labelled ``PARTIAL RESULT`` in the summary's first line and
``"partial": true`` in the report, and exits 128 + the signal number (130 SIGINT, 143 SIGTERM);
an interrupt before the analysis writes nothing, with one line and the same exit status.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import onnx
import pytest

from exactcomp.analysis import Status

from .faults import changes, handler_installed, popen, snapshot

MODELS = Path(__file__).resolve().parent.parent / "models"
MODEL, BOX = MODELS / "mnist_784x100x100.onnx", MODELS / "mnist_784x100x100.box.json"
SIGNALS = [signal.SIGINT, signal.SIGTERM]


def _wait_for_handler(proc, signum, timeout=30.0) -> None:
    t0 = time.monotonic()
    while not handler_installed(proc.pid, signum):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout, "the CLI never installed its signal handler"
        time.sleep(0.002)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to see when start-up begins")
@pytest.mark.parametrize("signum", SIGNALS)
def test_interrupt_at_start_up_writes_nothing(tmp_path, signum):
    before = snapshot(tmp_path)
    proc = popen("compress", MODEL, "--domain", BOX, "-o", "out.onnx", "--report", "r.json", cwd=tmp_path)
    _wait_for_handler(proc, signal.SIGTERM)   # our handler is in place: the CLI has just started
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err
    assert err.strip().splitlines() == [err.strip().splitlines()[0]] and "nothing written" in err
    assert changes(before, snapshot(tmp_path)) == set()


@pytest.mark.parametrize("signum", SIGNALS)
def test_interrupt_mid_analysis_writes_the_verified_partial_result(tmp_path, signum):
    # the per-neuron baseline takes many minutes on this model: after 4 s it is surely in its MILPs
    proc = popen("compress", MODEL, "--domain", BOX, "-o", "out.onnx", "--report", "r.json",
                 "--strategy", "per-neuron", cwd=tmp_path)
    time.sleep(4.0)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err
    assert out.splitlines()[0].startswith("PARTIAL RESULT")
    name = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}[signum]
    assert name in out.splitlines()[0]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["partial"] and report["interrupted"] and name in report["interrupted_by"]
    assert report["verification"]["passed"] and report["totals"]["unknown"] > 0
    assert {p.name for p in tmp_path.iterdir()} == {"out.onnx", "out.witnesses.npy", "r.json"}
    onnx.checker.check_model(str(tmp_path / "out.onnx"))
    # unknown and unstable neurons were kept
    for layer in report["layers"]:
        assert layer["neuron_status"].count(Status.UNKNOWN.label) == layer["unknown"]
        assert layer["kept"] >= layer["unknown"] + layer["unstable"]


def test_closed_stdout_is_quiet(tmp_path):
    """``exactcomp verify ... | head``: the reader goes away; no BrokenPipeError traceback, exit 141."""
    proc = popen("verify", MODEL, MODEL, "--domain", BOX, "--random-points", "2000", cwd=tmp_path)
    proc.stdout.close()    # like head exiting before we print
    err = proc.stderr.read()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert proc.returncode == 141
