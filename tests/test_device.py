"""--device: validated before any work, and (where a CUDA GPU is present) the same decisions and
re-checked certificates as on the CPU. The GPU tests skip cleanly on machines without one."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from exactcomp.analysis import AnalysisOptions, analyze
from exactcomp.bab.engine import BabOptions, branch_and_bound, check_certificate
from exactcomp.bounds.crown import compute_bounds
from exactcomp.domain import Box
from exactcomp.errors import ExactcompError

from .conftest import random_network
from .faults import assert_one_line_error, cli
from .test_complete import WEAK_SCREEN

ROOT = Path(__file__).resolve().parents[1]


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


needs_cuda = pytest.mark.skipif(not _has_cuda(), reason="no CUDA GPU available to torch")


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "", 3])
def test_malformed_devices_are_refused_by_the_api(device):
    net = random_network([3, 4, 2], seed=0)
    with pytest.raises(ExactcompError, match="device"):
        analyze(net, Box(-np.ones(3), np.ones(3)), AnalysisOptions(device=device))


@pytest.mark.skipif(_has_cuda(), reason="a GPU is present here")
def test_cuda_without_a_gpu_is_one_line_and_exit_2(tmp_path):
    out = tmp_path / "small.onnx"
    for device in ("cuda", "cuda:1", "gpu"):
        r = cli("compress", ROOT / "models/digits_64x32x32.onnx", "--domain", ROOT / "models/digits_64x32x32.box.json",
                "-o", out, "--device", device)
        assert_one_line_error(r, 2, "device")
        assert list(tmp_path.iterdir()) == []


def _net_and_targets():
    net = random_network([3, 10, 10, 8, 1], seed=11, bias_shift=-0.3, scale=0.8)
    box = Box(-np.ones(3), np.ones(3))
    bounds = [(b.lower, b.upper) for b in compute_bounds(net, box)]
    return net, box, bounds


@needs_cuda
def test_branch_and_bound_on_cuda_decides_as_on_cpu_with_valid_certificates():
    net, box, bounds = _net_and_targets()
    compared = 0
    for k in (1, 2):
        for t in range(net.hidden[k].width):
            for sign in (1.0, -1.0):
                runs = {d: branch_and_bound(net, box, bounds, (k, t, sign), 1e-4, deadline=time.perf_counter() + 20,
                                            options=BabOptions(batch=64, device=d)) for d in ("cpu", "cuda")}
                cpu, gpu = runs["cpu"], runs["cuda"]
                if "open" in (cpu.status, gpu.status):
                    continue
                assert gpu.status == cpu.status, (k, t, sign)
                if gpu.status == "proven":
                    assert check_certificate(net, box, gpu.certificate)
                compared += 1
    assert compared >= 10


@needs_cuda
def test_analysis_on_cuda_matches_cpu():
    net, box, _ = _net_and_targets()
    schedule = ("bounds", "witnesses", "bab")
    cpu = analyze(net, box, AnalysisOptions(provers=schedule, **WEAK_SCREEN))
    gpu = analyze(net, box, AnalysisOptions(provers=schedule, device="cuda", **WEAK_SCREEN))
    for a, b in zip(cpu.layers, gpu.layers):
        assert np.array_equal(a.status, b.status)
    assert gpu.stats.get("certificates_rejected", 0) == 0
