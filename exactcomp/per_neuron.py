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

import numpy as np

from .analysis import Analysis, LayerAnalysis, Status
from .bounds import compute_bounds
from .domain import Box
from .network import Network

#: Safety margin τ: a proof must show g <= -τ (or g >= τ), so solver tolerances cannot fake stability.
MARGIN = 1e-6


def _forward_pre(net: Network, x: np.ndarray, k: int) -> np.ndarray:
    _, pre = net.forward(x[None, :], return_preactivations=True)
    return pre[k][0]


def per_neuron_analysis(net: Network, box: Box, solver="highs", time_limit: float | None = None,
                        margin: float = MARGIN) -> Analysis:
    """Decide every hidden neuron with bounds plus two MILPs per remaining neuron."""
    from exactcomp.formulations.bigm import build_bigm, preactivation_objective
    from exactcomp.solvers import SolveStatus, get_solver

    backend = get_solver(solver)
    t0 = time.perf_counter()
    lb = compute_bounds(net, box)
    bounds = [(b.lower.copy(), b.upper.copy()) for b in lb]
    witnesses: list[np.ndarray] = []
    layers = []
    for k, layer in enumerate(net.hidden):
        L, U = bounds[k]
        status = np.full(layer.width, Status.UNKNOWN, np.int8)
        method = np.full(layer.width, "", object)
        status[U <= 0], method[U <= 0] = Status.INACTIVE, "bounds"
        status[(L >= 0) & (U > 0)], method[(L >= 0) & (U > 0)] = Status.ACTIVE, "bounds"
        pos, neg = np.full(layer.width, -1), np.full(layer.width, -1)
        milp = build_bigm(net, box, bounds, depth=k)
        for j in np.flatnonzero(status == Status.UNKNOWN):
            found = {}
            for sign in (1.0, -1.0):
                c, off = preactivation_objective(milp, net, k, j, sign)
                result = backend.solve(milp.with_objective(c, off, "max"), time_limit=time_limit)
                if result.status == SolveStatus.INFEASIBLE:
                    raise RuntimeError("big-M model infeasible: the box or the bounds are inconsistent")
                if result.dual_bound is not None:
                    bound = result.dual_bound + margin
                    if sign > 0:
                        U[j] = min(U[j], bound)
                    else:
                        L[j] = max(L[j], -bound)
                if result.x is not None:
                    x = box.clip(result.x[milp.blocks["x"]])
                    g = _forward_pre(net, x, k)[j]
                    if sign * g > 0:
                        found[sign] = x
            # U[j] = proven max + τ and L[j] = proven min - τ, so these mean max g <= -τ / min g >= τ
            if U[j] <= 0:
                status[j], method[j] = Status.INACTIVE, "milp"
            elif L[j] >= 0:
                status[j], method[j] = Status.ACTIVE, "milp"
            elif len(found) == 2:
                status[j], method[j] = Status.UNSTABLE, "witness"
                pos[j], neg[j] = len(witnesses), len(witnesses) + 1
                witnesses += [found[1.0], found[-1.0]]
        bounds[k] = (L, U)
        layers.append(LayerAnalysis(layer.layer_id, status, method, L.copy(), U.copy(), pos, neg))
    pool = np.array(witnesses) if witnesses else np.empty((0, box.size))
    return Analysis(net, box, tuple(layers), pool, {"milp": time.perf_counter() - t0})
