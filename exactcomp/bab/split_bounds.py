"""Bounds of one neuron over subdomains that fix the phase of earlier ReLUs (β-CROWN's bound), in numpy.

Target: ``f = σ g_{k,t}`` (``σ = +1`` to prove ``g <= -τ``, ``-1`` to prove ``g >= τ``) over the box,
restricted to a *subdomain*: some unstable neurons ``j`` of layers ``< k`` have a fixed phase
``S_j = +1`` (``g_j >= 0``) or ``-1`` (``g_j <= 0``). With pre-activation bounds ``l <= g <= u`` valid on
the whole box, any ``α ∈ [0, 1]`` and ``β >= 0``, weak duality gives

    max_{x in subdomain} f(x)  <=  max_{x in box} [ f̂(x) + Σ_j β_j S_j g_j(x) ]

where ``f̂`` replaces every ReLU by a linear bound chosen by the sign of its coefficient ``a`` (found by
back-substitution from the target down to the input): split active ``h = g``; split inactive ``h = 0``;
stable neurons exactly; unsplit unstable ones ``h <= s (g - l)`` (``s = u / (u - l)``) when ``a >= 0``
and ``h >= α g`` when ``a < 0``. The maximum over the box of the resulting affine function is taken at
a corner. The bound holds for *every* ``α ∈ [0, 1]`` and ``β >= 0``, so a certificate (phases, α, β)
needs no trust in the optimiser that produced it: :func:`split_bound` recomputes it in float64 and
widens it by ``ROUNDING_SLACK`` times a magnitude bound of every term it adds up (as in
:mod:`exactcomp.bounds.crown`).
"""

from __future__ import annotations

import numpy as np

from exactcomp.bounds.crown import ROUNDING_SLACK


def phases_of(lower: np.ndarray, upper: np.ndarray):
    """Masks of stably active, stably inactive and unstable neurons, and the upper-relaxation slope."""
    active, inactive = lower >= 0, upper <= 0
    unstable = ~active & ~inactive
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(unstable, upper / np.where(unstable, upper - lower, 1.0), 0.0)
    return active, inactive, unstable, slope


def split_bound(net, box, bounds, target, splits, alpha, beta, return_corner: bool = False):
    """Sound upper bounds of ``σ g_{k,t}`` over a batch of subdomains (see module doc).

    ``bounds``: ``[(l_j, u_j)]`` for the hidden layers ``0..k-1`` (valid on the whole box);
    ``target``: ``(k, t, σ)``; ``splits[j]``, ``alpha[j]``, ``beta[j]``: arrays ``(B, n_j)``
    (phases in {-1, 0, 1}; α is clipped to [0, 1] and β to [0, ∞) here). Returns the bounds ``(B,)``
    (widened for float64 rounding) and, with ``return_corner``, the input corners maximising the
    final affine function (candidate witnesses).
    """
    k, t, sign = target
    B = len(splits[0]) if k else 1
    layer = net.layers[k]
    pending: dict = {}   # j -> (a, |a|): coefficients on h_j still to substitute (all paths, skips included)

    def add(key, a, mag_a):
        pending[key] = (a, mag_a) if key not in pending else (pending[key][0] + a, pending[key][1] + mag_a)

    def through(j, op_rows):
        add(j, op_rows, np.abs(op_rows))

    a0 = np.broadcast_to(sign * layer.rows([t])[0], (B, layer.fan_in)).astype(np.float64)
    through(k - 1, a0)
    for skip in net.skips_into(k):
        through(skip.source, np.broadcast_to(sign * skip.op.rows([t])[0], (B, skip.op.fan_in)).astype(np.float64))
    const = np.full(B, sign * layer.b[t], dtype=np.float64)
    mag = np.full(B, abs(layer.b[t]))
    for j in range(k - 1, -1, -1):
        if j not in pending:
            continue
        a, mag_a = pending.pop(j)
        lo, hi = bounds[j]
        act, inact, unst, slope = phases_of(lo, hi)
        S = np.asarray(splits[j])
        al = np.clip(np.asarray(alpha[j], float), 0.0, 1.0)
        be = np.maximum(np.asarray(beta[j], float), 0.0)
        split_on, split_off = unst & (S > 0), unst & (S < 0)
        free = unst & (S == 0)
        upper_side = a >= 0
        lam = np.where(act | split_on, a, 0.0)
        lam = lam + np.where(free & upper_side, a * slope, 0.0) + np.where(free & ~upper_side, a * al, 0.0)
        lam = lam + be * np.where(split_on, 1.0, 0.0) - be * np.where(split_off, 1.0, 0.0)
        intercept = np.where(free & upper_side, -a * slope * lo, 0.0)
        const = const + intercept.sum(axis=1)
        mag_lam = mag_a + be * (split_on | split_off)
        mag = mag + (mag_a * slope * np.abs(lo) * free).sum(axis=1)
        prev = net.layers[j]
        const = const + lam @ prev.b
        mag = mag + mag_lam @ np.abs(prev.b)
        add(j - 1, prev.apply_transpose(lam), prev.apply_abs_transpose(mag_lam))
        for skip in net.skips_into(j):
            add(skip.source, skip.op.apply_transpose(lam), skip.op.apply_abs_transpose(mag_lam))
    a, mag_a = pending.pop(-1) if -1 in pending else (np.zeros((B, box.size)), np.zeros((B, box.size)))
    bound = const + np.maximum(a * box.lower, a * box.upper).sum(axis=1)
    mag = mag + (mag_a * np.maximum(np.abs(box.lower), np.abs(box.upper))).sum(axis=1)
    bound = bound + ROUNDING_SLACK * mag
    if return_corner:
        return bound, np.where(a > 0, box.upper, box.lower)
    return bound
