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
from .oracles import WEAK_SCREEN

ROOT = Path(__file__).resolve().parents[1]


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


needs_cuda = pytest.mark.skipif(not _has_cuda(), reason="no CUDA GPU available to torch")


def _has_ort_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers() and _has_cuda()


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "", 3])
def test_malformed_devices_are_refused_by_the_api(device):
    net = random_network([3, 4, 2], seed=0)
    with pytest.raises(ExactcompError, match="device"):
        analyze(net, Box(-np.ones(3), np.ones(3)), AnalysisOptions(device=device))


@pytest.mark.skipif(_has_cuda(), reason="a GPU is present here")
@pytest.mark.skipif(_has_cuda(), reason="a CUDA GPU is present")
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


@pytest.mark.skipif(_has_ort_cuda(), reason="onnxruntime-gpu and a GPU are present")
def test_provider_cuda_without_onnxruntime_gpu_is_one_line_and_exit_2(tmp_path):
    model, box = ROOT / "models/digits_64x32x32.onnx", ROOT / "models/digits_64x32x32.box.json"
    out = tmp_path / "small.onnx"
    r = cli("compress", model, "--domain", box, "-o", out, "--provider", "cuda")
    assert_one_line_error(r, 2, "onnxruntime-gpu")
    assert list(tmp_path.iterdir()) == []
    r = cli("verify", model, model, "--domain", box, "--provider", "cuda")
    assert_one_line_error(r, 2, "onnxruntime-gpu")


@pytest.mark.skipif(not _has_ort_cuda(), reason="needs onnxruntime-gpu and a GPU")
def test_verify_on_the_cuda_provider_compares_the_same_points():
    from exactcomp.verify.compare import verify_models

    model, box = ROOT / "models/digits_64x32x32.onnx", ROOT / "models/digits_64x32x32.box.json"
    from exactcomp import api

    domain = api.load_domain(api.load(model), box)
    cpu = verify_models(model, model, domain)
    gpu = verify_models(model, model, domain, provider="cuda")
    assert gpu.passed and gpu.points == cpu.points


@needs_cuda
def test_max_pooling_network_bounds_on_cuda_match_cpu():
    """The torch operators of max-pooling comparisons and carries (index scatters) on the GPU."""
    from .conftest import assert_engine_matches_split_bound
    from .test_maxpool import _raised_network
    from exactcomp.bab.torch_bound import BoundEngine
    from exactcomp.ir.lowering import lower_max_pools
    import torch

    net = lower_max_pools(_raised_network(np.random.default_rng(5), channels=2, shape=(6, 5), residual=True))
    box = Box(np.zeros(net.input_size), np.ones(net.input_size))
    bounds = [(b.lower, b.upper) for b in compute_bounds(net, box)]
    last = len(net.hidden) - 1
    assert_engine_matches_split_bound(net, box, [(last, 0, 1.0)])
    results = {}
    for device in ("cpu", "cuda"):
        engine = BoundEngine(net, box, bounds, (last, 0, 1.0), device=device)
        splits = [torch.zeros((2, lo.size), dtype=torch.int64, device=device) for lo, _ in bounds[:last]]
        alpha = [torch.full((2, lo.size), 0.5, dtype=torch.float64, device=device) for lo, _ in bounds[:last]]
        beta = [torch.zeros((2, lo.size), dtype=torch.float64, device=device) for lo, _ in bounds[:last]]
        results[device] = engine.bound(splits, alpha, beta)[0].cpu().numpy()
    np.testing.assert_allclose(results["cuda"], results["cpu"], atol=1e-9)
