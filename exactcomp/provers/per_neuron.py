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

from exactcomp.bounds.crown import compute_bounds
from exactcomp.domain import Box
from exactcomp.ir.network import Network
from exactcomp.options import DEFAULT_MARGIN, AnalysisOptions
from exactcomp.provers.screening import decide_by_bounds
from exactcomp.results import Analysis, Reason, Status, assemble
from exactcomp.witnesses.search import WitnessTracker

#: Kept for backwards compatibility: the default safety margin τ.
MARGIN = DEFAULT_MARGIN


def per_neuron_strategy(net: Network, box: Box, options: AnalysisOptions, progress=None) -> Analysis:
    """Strategy ``per-neuron``: the CPAIOR 2020 baseline with ``options``' solver, margin and time limit."""
    return per_neuron_analysis(net, box, solver=options.solver, time_limit=options.time_limit,
                               margin=options.margin, threads=options.threads, progress=progress,
                               symbolic=options.symbolic, solver_log=options.solver_log)


def per_neuron_analysis(net: Network, box: Box, solver="highs", time_limit: float | None = None,
                        margin: float = DEFAULT_MARGIN, threads: int | None = None, progress=None,
                        symbolic: bool = True, solver_log: bool = False) -> Analysis:
    """Decide every hidden neuron with bounds plus two MILPs per remaining neuron.

    ``time_limit`` bounds the whole MILP phase; neurons not reached are unknown (``time_limit``),
    as are all remaining ones after Ctrl-C (``interrupted``, with ``Analysis.interrupted`` set).
    """
    from exactcomp.formulations.bigm import build_bigm
    from exactcomp.solvers import get_solver

    backend = get_solver(solver, threads=threads, verbose=solver_log)
    t0 = time.perf_counter()
    deadline = t0 + time_limit if time_limit is not None else float("inf")
    layer_bounds = compute_bounds(net, box, symbolic=symbolic)
    decided = [decide_by_bounds(b) for b in layer_bounds]
    tracker = WitnessTracker(net, box)
    proven: list[tuple[np.ndarray, np.ndarray]] = []
    total = int(sum((s == Status.UNKNOWN).sum() for s, _ in decided))
    report = progress.phase("per-neuron MILPs", total) if progress else None
    done, stop = 0, None
    for k in range(len(net.hidden)):
        status, method = decided[k]
        L, U = layer_bounds[k].lower.copy(), layer_bounds[k].upper.copy()
        milp = build_bigm(net, box, proven, depth=k)
        for j in np.flatnonzero(status == Status.UNKNOWN):
            if stop:
                method[j] = stop
                continue
            try:
                _bound_by_milps(backend, milp, (net, box, k, j), deadline, tracker, (L, U), margin)
            except TimeoutError:
                stop = Reason.TIME_LIMIT
                method[j] = stop
                continue
            except KeyboardInterrupt:
                stop = Reason.INTERRUPTED
                method[j] = stop
                continue
            _decide(status, method, j, (L, U), (tracker.seen_positive(k), tracker.seen_negative(k)), margin)
            done += 1
            if report:
                report(done, total, f"layer {k + 1}")
        proven.append((L, U))
        layer_bounds[k] = replace(layer_bounds[k], lower=L, upper=U)
    return assemble(net, box, [s for s, _ in decided], [m for _, m in decided], [b.lower for b in layer_bounds],
                    [b.upper for b in layer_bounds], tracker, {"milp": time.perf_counter() - t0},
                    interrupted=stop == Reason.INTERRUPTED)


def _bound_by_milps(backend, milp, target, deadline, tracker, bounds, margin) -> None:
    """Maximise and minimise neuron ``j`` of hidden layer ``k`` (``target = (net, box, k, j)``) by the MILP:
    ``U[j] = min(U[j], max + τ)``, ``L[j] = max(L[j], min - τ)`` from the solver's dual bounds; incumbents are
    offered to ``tracker`` as witnesses (re-checked by its float64 forward pass). Raises ``TimeoutError`` past
    ``deadline`` or when the solver stops at its time limit."""
    from exactcomp.formulations.bigm import preactivation_objective
    from exactcomp.solvers import SolveStatus

    (net, box, k, j), (L, U) = target, bounds
    for sign in (1.0, -1.0):
        left = deadline - time.perf_counter()
        if left <= 0:
            raise TimeoutError
        c, off = preactivation_objective(milp, net, k, j, sign)
        result = backend.solve(milp.with_objective(c, off, "max"), time_limit=None if deadline == float("inf") else left)
        if result.x is not None:  # the incumbent's input, re-checked by a float64 forward pass
            tracker.offer(box.clip(result.x[milp.blocks["x"]])[None, :])
        if result.status == SolveStatus.TIME_LIMIT:
            raise TimeoutError
        if result.dual_bound is not None:
            if sign > 0:
                U[j] = min(U[j], result.dual_bound + margin)
            else:
                L[j] = max(L[j], -result.dual_bound - margin)


def _decide(status, method, j, bounds, seen, margin) -> None:
    """``U[j]`` = proven max + τ and ``L[j]`` = proven min - τ, so ``U[j] <= 0`` means max g <= -τ (inactive) and
    ``L[j] >= 0`` min g >= τ (active); a neuron never seen on one side whose bound lies within 2τ of zero on that
    side is kept with reason ``near_zero``. ``seen = (seen positive, seen negative)`` masks of the layer."""
    L, U = bounds
    if U[j] <= 0:
        status[j], method[j] = Status.INACTIVE, "milp"
    elif L[j] >= 0:
        status[j], method[j] = Status.ACTIVE, "milp"
    elif (not seen[0][j] and U[j] <= 2 * margin) or (not seen[1][j] and L[j] >= -2 * margin):
        method[j] = Reason.NEAR_ZERO   # its max (min) lies within τ of zero: kept
