"""Executors (in-process, local process pool, Ray) and the ``distributed`` prover: the same results as
direct calls and as the in-process portfolio, cancellation on time-out, exact-oracle agreement, and clear
errors for bad or unavailable executors. The Ray tests start a local Ray instance with 2 CPUs."""

from __future__ import annotations

import time

import numpy as np
import pytest

from exactcomp.analysis import AnalysisOptions, Status, analyze
from exactcomp.domain import Box
from exactcomp.errors import ExactcompError
from exactcomp.executors import ExecutorTimeout, InProcess, LocalPool, get_executor

from .conftest import random_network
from .faults import assert_one_line_error, cli
from .oracles import CASES, WEAK_SCREEN, check_against_oracle
from .oracles import exact_ranges


def square(x):
    return x * x


def nap(seconds):
    time.sleep(seconds)
    return seconds


def _executors():
    out = [("in-process", lambda: InProcess()), ("pool", lambda: LocalPool(2))]
    try:
        import ray  # noqa: F401
        out.append(("ray", lambda: get_executor("ray", 2)))
    except ImportError:
        pass
    return out


@pytest.mark.parametrize("name,make", _executors(), ids=[n for n, _ in _executors()])
def test_executors_return_every_result_once(name, make):
    executor = make()
    try:
        got = dict(executor.map_unordered(square, list(range(12))))
        assert got == {i: i * i for i in range(12)}
        if name != "in-process":   # a unit that outlives the map's time-out is cancelled
            t0 = time.monotonic()
            with pytest.raises(ExecutorTimeout):
                list(executor.map_unordered(nap, [30.0, 30.0], timeout=1.0))
            assert time.monotonic() - t0 < 15
            assert dict(executor.map_unordered(square, [3])) == {0: 9}   # still usable afterwards
    finally:
        executor.close()


def test_bad_executors_are_clear_errors(monkeypatch, tmp_path):
    with pytest.raises(ExactcompError, match="unknown executor"):
        get_executor("spark")
    with pytest.raises(ExactcompError, match="executor must be"):
        analyze(random_network([2, 3, 1]), Box(-np.ones(2), np.ones(2)), AnalysisOptions(executor="dask"))
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("no ray here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ExactcompError, match=r"pip install 'exactcomp\[ray\]'"):
        get_executor("ray", 2)


def test_cli_rejects_a_malformed_executor(tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "models"
    r = cli("compress", root / "digits_64x32x32.onnx", "--domain", root / "digits_64x32x32.box.json",
            "-o", tmp_path / "s.onnx", "--executor", "spark")
    assert_one_line_error(r, 2, "executor")
    assert list(tmp_path.iterdir()) == []


DISTRIBUTED = ("bounds", "witnesses", "distributed")


@pytest.mark.parametrize("sizes,seed,shift", CASES)
def test_distributed_prover_matches_exact_oracle(sizes, seed, shift):
    net = random_network(sizes, seed=seed, bias_shift=shift)
    box = Box(-np.ones(sizes[0]), np.linspace(0.5, 1.5, sizes[0]))
    result = analyze(net, box, AnalysisOptions(provers=DISTRIBUTED, workers=2, **WEAK_SCREEN))
    check_against_oracle(result, *exact_ranges(net, box))
    assert result.stats.get("certificates_rejected", 0) == 0


def test_local_pool_and_ray_decide_exactly_as_in_process():
    net = random_network([3, 12, 12, 10, 2], seed=11, bias_shift=-0.3, scale=0.8)
    box = Box(-np.ones(3), np.ones(3))
    runs = {"portfolio": analyze(net, box, AnalysisOptions(provers=("bounds", "witnesses", "portfolio"), **WEAK_SCREEN)),
            "pool": analyze(net, box, AnalysisOptions(provers=DISTRIBUTED, workers=2, **WEAK_SCREEN))}
    try:
        import ray  # noqa: F401
        runs["ray"] = analyze(net, box, AnalysisOptions(provers=DISTRIBUTED, executor="ray", workers=2, **WEAK_SCREEN))
    except ImportError:
        pass
    assert runs["pool"].stats["distributed_units"] > 0
    proofs = sum(int(np.isin(la.method, ["bab", "alpha", "milp"]).sum()) for la in runs["portfolio"].layers)
    assert proofs > 0   # the case needs proofs beyond bounds
    for name, run in runs.items():
        for a, b in zip(run.layers, runs["portfolio"].layers):
            assert np.array_equal(a.status, b.status), name
        assert not any((la.status == Status.UNKNOWN).any() for la in run.layers)


def test_ray_is_installed_where_ci_runs():
    """CI runs the Ray path: the dev extra installs ray (skipping would hide a broken Ray path)."""
    import importlib.util
    import os

    if os.environ.get("CI"):
        assert importlib.util.find_spec("ray") is not None


@pytest.mark.parametrize("name,make", _executors()[1:], ids=[n for n, _ in _executors()[1:]])
def test_leaving_a_map_early_cancels_its_units(name, make):
    """What Ctrl-C or a prover that stops early does: the generator is closed, the running units end."""
    executor = make()
    try:
        t0 = time.monotonic()
        results = executor.map_unordered(nap, [0.0, 30.0, 30.0])
        first = next(results)
        assert first == (0, 0.0)
        results.close()                       # GeneratorExit inside the map: cancel the rest
        assert dict(executor.map_unordered(square, [4])) == {0: 16}
        assert time.monotonic() - t0 < 20     # the 30 s units did not hold it up
    finally:
        executor.close()


def test_subtrees_of_one_branch_and_bound_merge_into_a_checked_certificate():
    from exactcomp.bab.certificate import Certificate, check_certificate
    from exactcomp.bab.engine import branch_and_bound
    from exactcomp.bounds.crown import compute_bounds
    from exactcomp.provers.subtrees import prove_by_subtrees

    box = Box(-np.ones(3), np.ones(3))
    proven = agreed = 0
    pool = LocalPool(2)
    try:
        for seed, k, t, sign in ((seed, k, t, sign) for seed in (11, 12, 13) for k in (1, 2) for t in range(8)
                                 for sign in (1.0, -1.0)):
            net = random_network([3, 10, 10, 8, 1], seed=seed, bias_shift=-0.3, scale=0.8)
            bounds = [(b.lower, b.upper) for b in compute_bounds(net, box)]
            if proven < 3:
                target = (k, t, sign)
                whole = branch_and_bound(net, box, bounds, target, 1e-4, deadline=time.perf_counter() + 20)
                if whole.status == "open":
                    continue
                executor = pool if proven == 0 else InProcess()
                status, cert, points = prove_by_subtrees(executor, net, box, bounds, target, 1e-4, 2, 20.0)
                assert status == whole.status or {status, whole.status} <= {"near_zero", "witness"}, target
                agreed += 1
                if status == "proven":
                    assert check_certificate(net, box, cert)
                    j, i, phase = cert.leaves[0].splits and next(
                        (j, int(idx[0]), int(ph[0])) for j, (idx, ph) in enumerate(cert.leaves[0].splits) if len(idx))
                    # the subtrees' leaves are needed together: without those of one subtree the box is not covered
                    part = [leaf for leaf in cert.leaves if not any(
                        jj == j and i in idx.tolist() and ph[idx.tolist().index(i)] == phase
                        for jj, (idx, ph) in enumerate(leaf.splits))]
                    assert not check_certificate(net, box, Certificate(cert.target, cert.bounds, cert.margin, part))
                    proven += 1
    finally:
        pool.close()
    assert proven >= 2 and agreed >= 6


class _ManyWorkersHere(InProcess):
    """In-process, but claiming many workers: the distributed prover then splits stubborn neurons into subtrees."""

    workers = 16


def test_distributed_prover_splits_stubborn_neurons_into_subtrees():
    from exactcomp.provers.distributed import DistributedProver

    net = random_network([3, 12, 12, 10, 2], seed=11, bias_shift=-0.3, scale=0.8)
    box = Box(-np.ones(3), np.ones(3))
    reference = analyze(net, box, AnalysisOptions(provers=("bounds", "witnesses", "portfolio"), **WEAK_SCREEN))
    split = analyze(net, box, AnalysisOptions(provers=("bounds", "witnesses", DistributedProver(first_round_seconds=0.0)),
                                              executor=_ManyWorkersHere(), time_limit=None, **WEAK_SCREEN))
    assert split.stats.get("bab_subtree_units", 0) > 0          # the first round left them open: subtrees decided
    assert split.stats.get("certificates_rejected", 0) == 0     # merged certificates re-checked in float64
    for a, b in zip(split.layers, reference.layers):
        assert np.array_equal(a.status, b.status)
