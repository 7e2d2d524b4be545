"""Per-neuron MILP stability check (the CPAIOR 2020 baseline), layer by layer.

For every neuron of layer ``k`` not decided by bounds, two MILPs over the big-M encoding of layers
``1..k-1`` (see :mod:`exactcomp.formulations.bigm`): ``max g`` and ``min g``. With margin ``τ``:

* the solver's proven upper bound (dual bound) of ``max g`` is ``<= -τ``: stably inactive;
* the proven lower bound of ``min g`` is ``>= τ``: stably active;
* an incumbent input with ``g > 0`` (resp. ``< 0``), re-checked by a float64 forward pass, is a witness;
* anything else (time limit, |g| within τ of zero at the optimum, solver error) stays unknown.

Proven bounds, widened by ``τ``, replace the bounds of layer ``k`` before layer ``k+1`` is encoded,
so later big-M constants are tighter.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from .analysis import Analysis, Status, collect, decide_by_bounds
from .bounds import compute_bounds
from .domain import Box
from .network import Network
from .witnesses import WitnessTracker

#: Safety margin τ: a proof must show g <= -τ (or g >= τ), so solver tolerances cannot fake stability.
MARGIN = 1e-6


def per_neuron_analysis(net: Network, box: Box, solver="highs", time_limit: float | None = None,
                        margin: float = MARGIN) -> Analysis:
    """Decide every hidden neuron with bounds plus two MILPs per remaining neuron."""
    from exactcomp.formulations.bigm import build_bigm, preactivation_objective
    from exactcomp.solvers import SolveStatus, get_solver

    backend = get_solver(solver)
    t0 = time.perf_counter()
    layer_bounds = compute_bounds(net, box)
    decided = [decide_by_bounds(b) for b in layer_bounds]
    tracker = WitnessTracker(net, box)
    proven: list[tuple[np.ndarray, np.ndarray]] = []
    for k in range(len(net.hidden)):
        status, method = decided[k]
        L, U = layer_bounds[k].lower.copy(), layer_bounds[k].upper.copy()
        milp = build_bigm(net, box, proven, depth=k)
        for j in np.flatnonzero(status == Status.UNKNOWN):
            for sign in (1.0, -1.0):
                c, off = preactivation_objective(milp, net, k, j, sign)
                result = backend.solve(milp.with_objective(c, off, "max"), time_limit=time_limit)
                if result.status == SolveStatus.INFEASIBLE:
                    raise RuntimeError("big-M model infeasible: the box or the bounds are inconsistent")
                if result.x is not None:  # the incumbent's input, re-checked by a float64 forward pass
                    tracker.offer(box.clip(result.x[milp.blocks["x"]])[None, :])
                if result.dual_bound is not None:
                    if sign > 0:
                        U[j] = min(U[j], result.dual_bound + margin)
                    else:
                        L[j] = max(L[j], -result.dual_bound - margin)
            # U[j] = proven max + τ and L[j] = proven min - τ, so these mean max g <= -τ / min g >= τ
            if U[j] <= 0:
                status[j], method[j] = Status.INACTIVE, "milp"
            elif L[j] >= 0:
                status[j], method[j] = Status.ACTIVE, "milp"
        proven.append((L, U))
        layer_bounds[k] = replace(layer_bounds[k], lower=L, upper=U)
    layers, witnesses = collect(net, layer_bounds, decided, tracker)
    return Analysis(net, box, tuple(layers), witnesses, {"milp": time.perf_counter() - t0})
