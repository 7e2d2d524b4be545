"""``--work-limit`` (issue 23): a budget in units of work gives the same answer on any load (the other core busy
or not), stays sound against the exact activation-pattern oracle, cuts where the budget ends with reason
``work_limit``, records the work done in either mode, and refuses what would race (parallel workers)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import exactcomp
from exactcomp.analysis import AnalysisOptions, analyze
from exactcomp.domain import Box
from exactcomp.errors import ExactcompError
from exactcomp.provers.budget import COST, Budget
from exactcomp.results import Reason, Status

from .conftest import random_network
from .oracles import CASES, WEAK_SCREEN, check_against_oracle, exact_ranges

PORTFOLIO = ("bounds", "witnesses", "portfolio")


def _case():
    net = random_network([3, 12, 12, 10, 2], seed=11, bias_shift=-0.3, scale=0.8)
    return net, Box(-np.ones(3), np.ones(3))


def _fingerprint(result) -> tuple:
    return tuple((la.status.tobytes(), tuple(map(str, la.method)), la.lower.tobytes(), la.upper.tobytes())
                 for la in result.layers)


class _BusyCores:
    """Both cores kept busy by other processes while the block runs (what a loaded CI machine does)."""

    def __enter__(self):
        code = "while True: pass"
        self.procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
            p.wait()


@pytest.mark.parametrize("sizes,seed,shift", CASES)
def test_a_generous_work_budget_decides_every_neuron_as_the_oracle_says(sizes, seed, shift):
    net = random_network(sizes, seed=seed, bias_shift=shift)
    box = Box(-np.ones(sizes[0]), np.linspace(0.5, 1.5, sizes[0]))
    result = analyze(net, box, AnalysisOptions(provers=PORTFOLIO, work_limit=10 ** 6, **WEAK_SCREEN))
    check_against_oracle(result, *exact_ranges(net, box))
    assert not any((la.status == Status.UNKNOWN).any() for la in result.layers)
    # the work recorded is the steps recorded, at their cost
    steps = {k[len("work_"):]: v for k, v in result.stats.items() if k.startswith("work_")}
    assert result.stats["work"] == round(sum(n * COST.get(k, 1.0) for k, n in steps.items()))


def test_the_same_work_limit_gives_the_same_answer_with_the_cores_busy():
    net, box = _case()
    full = analyze(net, box, AnalysisOptions(provers=PORTFOLIO, work_limit=10 ** 6, **WEAK_SCREEN))
    assert sum(int(np.isin(la.method, ["bab", "alpha", "milp"]).sum()) for la in full.layers) > 0   # proofs needed
    limit = max(1, full.stats["work"] // 3)   # cut the proofs short, so that where they stop matters
    options = AnalysisOptions(provers=PORTFOLIO, work_limit=limit, **WEAK_SCREEN)
    quiet = analyze(net, box, options)
    with _BusyCores():
        loaded = analyze(net, box, options)
    assert _fingerprint(quiet) == _fingerprint(loaded)
    assert {k: v for k, v in quiet.stats.items() if k.startswith("work")} == \
        {k: v for k, v in loaded.stats.items() if k.startswith("work")}
    reasons = np.concatenate([la.method for la in quiet.layers])
    assert (reasons == Reason.WORK_LIMIT).any()            # the budget did cut
    assert not (reasons == Reason.TIME_LIMIT).any()
    for a, b in zip(quiet.layers, full.layers):   # what the cut run decided, the full run decided alike
        decided = a.status != Status.UNKNOWN
        assert np.array_equal(a.status[decided], b.status[decided])


def test_the_written_model_is_byte_identical_under_load(tmp_path):
    net, box = _case()
    options = dict(provers=PORTFOLIO, work_limit=8, **WEAK_SCREEN)
    first = exactcomp.compress(net, box, **options)
    first.save(tmp_path / "a.onnx", witnesses=False)
    with _BusyCores():
        second = exactcomp.compress(net, box, **options)
    second.save(tmp_path / "b.onnx", witnesses=False)
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    assert first.report()["analysis"]["work_limit"] == 8


def test_a_time_budget_records_its_work_too():
    net, box = _case()
    result = analyze(net, box, AnalysisOptions(provers=PORTFOLIO, time_limit=60, **WEAK_SCREEN))
    assert result.stats["work"] > 0 and result.stats["work_bab_bounds"] > 0


def test_the_budget_clock_counts_weighted_steps():
    budget = Budget(100)
    budget.charge("lps", 2)
    budget.charge("bab_bounds", 50)
    assert budget.now() == pytest.approx(2 * COST["lps"] + 50 * COST["bab_bounds"])
    assert budget.reason == Reason.WORK_LIMIT and Budget().reason == Reason.TIME_LIMIT
    assert budget.solver_limits(12.7) == {"time_limit": None, "node_limit": 12}
    assert Budget().solver_limits(12.7) == {"time_limit": 12.7}


def test_highs_stops_at_a_node_limit_with_status_time_limit():
    """A 0-1 knapsack HiGHS cannot close at the root: one node is not enough, no limit solves it to the optimum
    that brute force finds."""
    from itertools import product

    import scipy.sparse as sp

    from exactcomp.formulations.milp import MILP
    from exactcomp.solvers import SolveStatus, get_solver

    rng = np.random.default_rng(4)
    n = 16
    w, v = rng.integers(30, 100, n).astype(float), rng.integers(30, 100, n).astype(float)
    A = sp.csr_matrix(np.vstack([w, rng.integers(30, 100, n)]).astype(float))
    caps = np.array([w.sum() / 2 + 0.5, A.toarray()[1].sum() / 2 + 0.5])
    milp = MILP(c=v, A=A, row_lower=np.full(2, -np.inf), row_upper=caps, col_lower=np.zeros(n),
                col_upper=np.ones(n), integrality=np.ones(n, bool), sense="max")
    backend = get_solver("highs", threads=1)
    solved = backend.session(milp).solve()
    best = max(v @ np.array(x) for x in product((0, 1), repeat=n) if (A @ np.array(x) <= caps).all())
    assert solved.status == SolveStatus.OPTIMAL and solved.objective == pytest.approx(best)
    assert solved.nodes > 1
    assert backend.session(milp).solve(node_limit=1).status == SolveStatus.TIME_LIMIT


@pytest.mark.parametrize("extra,message", [(dict(workers=2), "parallel workers"),
                                           (dict(strategy="per-neuron"), "per-neuron"),
                                           (dict(work_limit=0), "work_limit must be")])
def test_what_would_race_is_refused(extra, message):
    net, box = _case()
    options = dict(work_limit=10, **WEAK_SCREEN)
    options.update(extra)
    with pytest.raises(ExactcompError, match=message):
        analyze(net, box, AnalysisOptions(**options))


def test_the_cli_takes_a_work_limit_and_says_what_was_spent(tmp_path):
    from .conftest import tiny_model_folder

    folder = tiny_model_folder(tmp_path)
    model, box = folder / "model.onnx", folder / "box.json"
    out = subprocess.run([sys.executable, "-m", "exactcomp", "compress", str(model), "-d", str(box), "-o",
                          str(tmp_path / "s.onnx"), "--work-limit", "500"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "units of work (--work-limit)" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "exactcomp", "compress", str(model), "-d", str(box), "-o",
                          str(tmp_path / "t.onnx"), "--work-limit", "10", "--workers", "2"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "parallel workers" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "t.onnx").exists()
