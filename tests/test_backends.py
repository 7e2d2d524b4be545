"""Every installed solver back end on the same small MILPs (optima by enumeration) and networks.

Back ends whose library is missing are skipped (``exactcomp solvers`` says which); the stable sets of
small networks must be identical across all installed back ends, and equal to the exact oracle.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from exactcomp.analysis import AnalysisOptions, Status, analyze
from exactcomp.domain import Box
from exactcomp.formulations.milp import MILP
from exactcomp.solvers import SolveStatus, available, get_solver

from .conftest import random_network
from .oracles import brute_force, knapsack

#: Registry names (with an inner solver where a back end reaches several) tried by this suite.
BACKENDS = ["highs", "scip", "pyomo", "ortools:scip", "ortools:highs"]
FOUND = available()


def _backend(name: str):
    if FOUND.get(name.partition(":")[0], "unavailable").startswith("unavailable"):
        pytest.skip(f"{name}: {FOUND.get(name.partition(':')[0])}")
    return get_solver(name)


@pytest.mark.parametrize("name", BACKENDS)
def test_knapsacks_match_enumeration(name):
    backend = _backend(name)
    for seed in range(2):
        milp = knapsack(seed, n=9)
        best = brute_force(milp)
        result = backend.solve(milp)
        assert result.status == SolveStatus.OPTIMAL
        assert abs(result.objective - best) < 1e-6 and abs(result.dual_bound - best) < 1e-6
        assert np.all(milp.A @ result.x <= milp.row_upper + 1e-6)
        relaxed = backend.session(milp, relax=True).solve()   # the LP bound is above the optimum
        assert relaxed.status == SolveStatus.OPTIMAL and relaxed.objective >= best - 1e-6


@pytest.mark.parametrize("name", BACKENDS)
def test_infeasible_and_minimisation(name):
    backend = _backend(name)
    milp = knapsack(4, n=6)
    assert backend.solve(milp.with_objective_cutoff(milp.c, 0.0, brute_force(milp) + 0.5)).status == SolveStatus.INFEASIBLE
    # min x0 + x1 subject to x0 + x1 >= 1.5 over integers in [0, 3]: optimum 2
    small = MILP(c=np.ones(2), A=sp.csr_matrix(np.ones((1, 2))), row_lower=np.array([1.5]), row_upper=np.array([np.inf]),
                 col_lower=np.zeros(2), col_upper=np.full(2, 3.0), integrality=np.ones(2, bool), sense="min")
    result = backend.solve(small)
    assert result.status == SolveStatus.OPTIMAL and abs(result.objective - 2.0) < 1e-6


@pytest.mark.parametrize("name", [b for b in BACKENDS if b != "ortools:highs"])
def test_incumbent_hook_sees_feasible_points_and_stops(name):
    backend = _backend(name)
    if "incumbent_callback" not in backend.capabilities:
        pytest.skip(f"{name} has no incumbent callback")
    milp = knapsack(2, n=12)
    seen = []
    result = backend.solve(milp, incumbent=lambda x: seen.append(x) or True)
    assert seen and result.status in (SolveStatus.STOPPED, SolveStatus.OPTIMAL)
    for x in seen:
        assert np.all(milp.A @ x <= milp.row_upper + 1e-6) and np.allclose(x, np.round(x), atol=1e-6)


@pytest.mark.parametrize("strategy", ["per-neuron-milp", "network"])
def test_stable_sets_are_identical_across_backends(strategy):
    """Same network, every installed back end: the same stable sets, none contradicted by sampling.

    No witness search, no LP tightening and no branch and bound, so the MILPs of each back end decide
    the candidates (per-neuron feasibility MILPs, or the network-wide MILP).
    """
    net = random_network([4, 12, 10, 6, 2], seed=14, bias_shift=-0.5, scale=0.7)
    box = Box(np.zeros(4), np.ones(4))
    weak = dict(random_points=0, gradient_restarts=0, gradient_steps=0, lp_tightening=False)
    names = [n for n in BACKENDS if not FOUND.get(n.partition(":")[0], "unavailable").startswith("unavailable")]
    _, pre = net.forward(box.sample(100_000, np.random.default_rng(0)), return_preactivations=True)
    statuses = {}
    for name in names:
        options = (dict(strategy="auto", provers=("bounds", "witnesses", "milp")) if strategy == "per-neuron-milp"
                   else dict(strategy=strategy))
        result = analyze(net, box, AnalysisOptions(solver=name, **options, **weak))
        assert result.stats["per_neuron_milps"] + result.stats["milp_rounds"] >= 1, name
        statuses[name] = [layer.status.copy() for layer in result.layers]
        for layer, g in zip(result.layers, pre):
            assert not np.any(layer.status == Status.UNKNOWN), name
            assert np.all(g[:, layer.status == Status.INACTIVE] <= 0) and np.all(g[:, layer.status == Status.ACTIVE] >= 0)
    for name in names[1:]:
        for a, b in zip(statuses[names[0]], statuses[name]):
            np.testing.assert_array_equal(a, b, err_msg=f"{names[0]} vs {name}")


def test_missing_library_is_a_one_line_error_with_the_install_hint():
    from exactcomp.errors import ExactcompError
    from exactcomp.solvers.base import require

    with pytest.raises(ExactcompError, match=r"solver 'foo' needs no_such_lib: pip install 'exactcomp\[foo\]'"):
        require("no_such_lib.sub", "foo", "foo")


def test_solvers_command_lists_every_registered_back_end(capsys):
    import json

    from exactcomp.cli.main import main
    from exactcomp.solvers import REGISTRY

    assert main(["solvers", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert set(listed) == set(REGISTRY)
    assert not listed["highs"]["status"].startswith("unavailable")


@pytest.mark.parametrize("seed,shift", [(3, -0.8), (6, -0.5)])
def test_scip_single_tree_needs_one_search_where_highs_restarts(seed, shift):
    """With SCIP's constraint handler, witnessed candidates are rejected inside one search (the
    paper's single tree); HiGHS restarts after each witness. Same decisions, checked by sampling."""
    backend = _backend("scip")
    assert "lazy_fixings" in backend.capabilities
    net = random_network([4, 12, 10, 6, 2], seed=seed, bias_shift=shift, scale=0.7)
    box = Box(np.zeros(4), np.ones(4))
    weak = dict(random_points=0, gradient_restarts=0, gradient_steps=0, lp_tightening=False, strategy="network")
    scip, highs = (analyze(net, box, AnalysisOptions(solver=s, **weak)) for s in ("scip", "highs"))
    assert scip.stats["milp_rounds"] == 1 and highs.stats["milp_rounds"] >= 2
    assert sum(layer.methods().get("milp", 0) for layer in scip.layers) >= 4
    for a, b in zip(scip.layers, highs.layers):
        np.testing.assert_array_equal(a.status, b.status)
    _, pre = net.forward(box.sample(100_000, np.random.default_rng(seed)), return_preactivations=True)
    for layer, g in zip(scip.layers, pre):
        assert np.all(g[:, layer.status == Status.INACTIVE] <= 0) and np.all(g[:, layer.status == Status.ACTIVE] >= 0)
