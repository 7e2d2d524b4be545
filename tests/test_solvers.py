"""The HiGHS back end on small MILPs with known optima (checked by enumeration), and its hooks."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from exactcomp.formulations.milp import MILP
from exactcomp.solvers import SolveStatus, get_solver

from .oracles import brute_force, knapsack


def test_optimum_matches_enumeration_and_every_incumbent_is_feasible():
    solver = get_solver("highs")
    for seed in range(4):
        milp = knapsack(seed)
        seen = []
        result = solver.solve(milp, incumbent=lambda x: seen.append(x.copy()) or False)
        assert result.status == SolveStatus.OPTIMAL
        assert abs(result.objective - brute_force(milp)) < 1e-6
        assert result.dual_bound >= result.objective - 1e-6
        for x in seen:
            assert np.all(milp.A @ x <= milp.row_upper + 1e-6)


def test_cutoff_row_makes_unreachable_targets_infeasible():
    milp = knapsack(1)
    best = brute_force(milp)
    solver = get_solver("highs")
    assert solver.solve(milp.with_objective_cutoff(milp.c, 0.0, best + 0.5)).status == SolveStatus.INFEASIBLE
    reach = solver.solve(milp.with_objective_cutoff(milp.c, 0.0, best - 0.5))
    assert reach.status == SolveStatus.OPTIMAL and reach.objective >= best - 0.5


def test_incumbent_hook_can_stop_the_solve():
    milp = knapsack(2, n=12)
    calls = []
    result = get_solver("highs").solve(milp, incumbent=lambda x: calls.append(1) or True,
                                       start=np.zeros(milp.num_vars))
    assert calls and result.status in (SolveStatus.STOPPED, SolveStatus.OPTIMAL)
    assert result.x is not None


def test_lp_session_reuses_the_model_with_new_objectives():
    milp = knapsack(3)
    session = get_solver("highs").session(milp, relax=True)
    for j in range(3):
        c = np.zeros(milp.num_vars)
        c[j] = 1.0
        session.set_objective(c, 0.0, "max")
        assert abs(session.solve().objective - 1.0) < 1e-9
        session.set_objective(c, 0.0, "min")
        assert abs(session.solve().objective) < 1e-9


def test_unknown_solver_is_a_clear_error():
    import pytest

    from exactcomp.errors import ExactcompError

    with pytest.raises(ExactcompError, match="unknown solver 'nope'"):
        get_solver("nope")


def market_split(seed: int, m: int = 4, n: int = 40) -> MILP:
    """A Cornuéjols-Dawande market split instance: tiny, and far too hard to finish in seconds."""
    rng = np.random.default_rng(seed)
    A = rng.integers(0, 100, size=(m, n)).astype(float)
    rhs = np.floor(A.sum(axis=1) / 2)
    return MILP(c=np.zeros(n), A=sp.csr_matrix(A), row_lower=rhs, row_upper=rhs, col_lower=np.zeros(n),
                col_upper=np.ones(n), integrality=np.ones(n, bool))


def test_interrupt_from_another_thread_stops_a_running_solve():
    import threading
    import time

    session = get_solver("highs", threads=1).session(market_split(0))
    timer = threading.Timer(0.5, session.interrupt)
    timer.start()
    t0 = time.perf_counter()
    result = session.solve(time_limit=60)
    timer.cancel()
    assert result.status == SolveStatus.STOPPED   # without the interrupt it runs into its 60 s limit
    assert time.perf_counter() - t0 < 30


def test_a_hook_that_raises_ends_the_solve_instead_of_hanging():
    """An exception in a hook must reach the caller (or end the solve with an error), never leave it
    waiting for a worker thread that died (seen with highspy 1.11-1.15)."""
    import threading

    milp = knapsack(2, n=12)

    def bad_hook(x):
        raise ValueError("hook failed")

    outcome = []

    def run():
        try:
            outcome.append(get_solver("highs").solve(milp, incumbent=bad_hook, start=np.zeros(milp.num_vars)).status)
        except ValueError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "solve() hung after a hook raised"
    assert outcome and (isinstance(outcome[0], ValueError) or outcome[0] == SolveStatus.ERROR)
