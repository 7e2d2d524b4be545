"""Witness search by linear programming over activation regions (a local search between regions).

Inside one *activation region* (every ReLU of the layers before ``k`` has a fixed phase) the network
is affine: with ``D_j = diag(phase_j)`` the pre-activations are ``g_0 = W_0 x + b_0`` and
``g_j = W_j D_{j-1} g_{j-1} + b_j``, i.e. ``g_j = A_j x + c_j``. So

    max  σ (A_k[t] x + c_k[t])   s.t.  x in box,  A_j x + c_j >= 0 (active),  <= 0 (inactive), j < k

is a linear program whose optimum is the exact maximum of ``σ g_{k,t}`` over that region. Starting
from the region of a good point (a branch-and-bound subdomain's best corner, a witness-search point),
the walk solves this LP, then tries the neighbouring regions across the phase constraints that are
tight at the optimum (flipping one neuron's phase at a time) and moves to the first one whose LP
optimum is higher; it stops at a local maximum, after ``max_lps`` LPs or at the deadline.

Nothing here is a proof and nothing is trusted: the points are clipped to the box and evaluated by
the network's float64 forward pass, and only those values are returned. Measured on the MNIST
5x100 benchmark network: a neuron whose best known point was ``g = -6.0e-5`` (``near_zero``) reaches
``g = +9.0e-5`` in two LPs (0.2 s), so it is shown unstable instead of left unknown.
"""

from __future__ import annotations

import time

import numpy as np

#: Phase constraints with ``|g_j(x*)|`` below this (relative to the row's scale) count as tight.
TIGHT = 1e-7


def region_lp(net, box, target, phases):
    """The LP optimum over the region given by ``phases`` (list of boolean arrays: active or not),
    as ``(x, σ g(x))`` with ``x`` clipped to the box and the value from a float64 forward pass;
    ``(None, -inf)`` when the region is empty or the LP fails."""
    from scipy.optimize import linprog

    k, t, sign = target
    x_map = (np.eye(box.size), np.zeros(box.size))
    posts = []                                       # h_j = A_j x + c_j on the region
    rows, rhs = [], []
    source = lambda j: x_map if j < 0 else posts[j]  # noqa: E731
    for j in range(k):
        layer = net.layers[j]
        A, c = source(j - 1)
        Gc = layer.apply(c[None])[0]                 # W c + b, and W A, through the operator interface
        GA = (layer.apply(A.T) - layer.b).T
        for skip in net.skips_into(j):               # + S h_src (skip ops have no bias)
            As, cs = source(skip.source)
            Gc, GA = Gc + skip.op.apply(cs[None])[0], GA + skip.op.apply(As.T).T
        side = np.where(phases[j], -1.0, 1.0)                     # active: -g <= 0; inactive: g <= 0
        rows.append(side[:, None] * GA)
        rhs.append(-side * Gc)
        posts.append((phases[j][:, None] * GA, phases[j] * Gc))
    objective = sign * (net.layers[k].rows([t])[0] @ source(k - 1)[0])
    for skip in net.skips_into(k):
        objective = objective + sign * (skip.op.rows([t])[0] @ source(skip.source)[0])
    res = linprog(-objective, A_ub=np.vstack(rows) if rows else None, b_ub=np.concatenate(rhs) if rhs else None,
                  bounds=np.column_stack([box.lower, box.upper]), method="highs")
    if res.status != 0 or res.x is None:
        return None, -np.inf
    x = np.clip(res.x, box.lower, box.upper)
    return x, _value(net, target, x)


def _value(net, target, x) -> float:
    k, t, sign = target
    _, pre = net.forward(x[None], return_preactivations=True)
    return float(sign * pre[k][0, t])


def region_walk(net, box, target, start: np.ndarray, max_lps: int = 40, deadline: float = float("inf"),
                budget=None):
    """Local search over activation regions from ``start``; returns ``(x, σ g(x))`` of the best real
    input seen (``start`` itself if nothing better was found). ``budget``: a
    :class:`~exactcomp.provers.budget.Budget` whose clock ``deadline`` is on (default ``time.perf_counter()``),
    charged one ``walk_lps`` per LP."""
    clock = time.perf_counter if budget is None else budget.now
    k = target[0]
    best_x, best = np.clip(start, box.lower, box.upper), _value(net, target, start)
    if k == 0:   # no ReLU before the target: one LP over the box is the exact maximum
        x, v = region_lp(net, box, target, [])
        _charge(budget)
        return (x, v) if v > best else (best_x, best)
    phases = _phases(net, best_x, k)
    x, v = region_lp(net, box, target, phases)
    lps = 1
    _charge(budget)
    if v > best:
        best_x, best = x, v
    while x is not None and lps < max_lps and clock() < deadline:
        moved = False
        for j, i in _tight_neurons(net, x, k):
            trial = [p.copy() for p in phases]
            trial[j][i] = ~trial[j][i]
            tx, tv = region_lp(net, box, target, trial)
            lps += 1
            _charge(budget)
            if tx is not None and tv > v + 1e-12:
                phases, x, v, moved = trial, tx, tv, True
                if v > best:
                    best_x, best = x, v
                break
            if lps >= max_lps or clock() >= deadline:
                break
        if not moved:
            break
    return best_x, best


def _charge(budget) -> None:
    if budget is not None:
        budget.charge("walk_lps")


def _phases(net, x, k):
    _, pre = net.forward(x[None], return_preactivations=True)
    return [pre[j][0] > 0 for j in range(k)]


def _tight_neurons(net, x, k):
    """(layer, neuron) whose pre-activation is (numerically) zero at ``x``: the region's faces the
    LP optimum lies on, earliest layers first, smallest |g| first within a layer."""
    _, pre = net.forward(x[None], return_preactivations=True)
    out = []
    for j in range(k):
        g = pre[j][0]
        scale = 1.0 + np.abs(net.layers[j].b)
        tight = np.flatnonzero(np.abs(g) <= TIGHT * scale)
        out.extend((j, int(i)) for i in tight[np.argsort(np.abs(g[tight]))])
    return out
