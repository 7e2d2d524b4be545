"""The cheap provers every schedule starts with: ``bounds`` and ``witnesses``.

* ``bounds``: interval arithmetic, then DeepPoly/CROWN back-substitution (:mod:`exactcomp.bounds.crown`);
  a neuron with ``upper <= 0`` is stably inactive, ``lower >= 0`` stably active (method ``interval``
  or ``symbolic``). The input corners that maximise/minimise each symbolic bound are offered as
  witnesses.
* ``witnesses``: uniform random points (in batches), corners from the first layer's weight signs,
  user samples, then projected sign-gradient ascent on ``±g`` for every open candidate
  (:mod:`exactcomp.witnesses.search`). A neuron seen with both signs is unstable.
"""

from __future__ import annotations

import numpy as np

from exactcomp.bounds.crown import LayerBounds, compute_bounds
from exactcomp.results import Status
from exactcomp.witnesses.search import gradient_search, sign_corners
from exactcomp.provers.state import Decision, Outcome


def decide_by_bounds(bounds: LayerBounds):
    """Initial ``(status, method)`` arrays of a layer from its bounds (undecided neurons: UNKNOWN, "")."""
    status = np.full(bounds.lower.size, Status.UNKNOWN, dtype=np.int8)
    method = np.full(bounds.lower.size, "", dtype=object)
    inactive, active = bounds.upper <= 0, (bounds.lower >= 0) & ~(bounds.upper <= 0)
    status[inactive], status[active] = Status.INACTIVE, Status.ACTIVE
    by_interval = (bounds.interval_upper <= 0) | (bounds.interval_lower >= 0)
    method[(inactive | active) & by_interval] = "interval"
    method[(inactive | active) & ~by_interval] = "symbolic"
    return status, method


class BoundsProver:
    name = "bounds"

    def run(self, state, progress=None):
        report = progress.phase("bounds", len(state.net.hidden)) if progress else None
        layers = compute_bounds(state.net, state.box, symbolic=state.options.symbolic,
                                progress=(lambda d, t: report(d, t)) if report else None)
        outcome = Outcome()
        for k, b in enumerate(layers):
            everyone = np.arange(b.lower.size)
            outcome.bounds.append((k, everyone, b.lower, b.upper))
            status, method = decide_by_bounds(b)
            for j in np.flatnonzero(status != Status.UNKNOWN):
                outcome.decisions.append(Decision(k, int(j), int(status[j]), str(method[j])))
            if b.corner_max is not None and len(b.corner_max):
                outcome.points = np.vstack([p for p in (outcome.points, b.corner_max, b.corner_min) if p is not None])
        yield outcome


class WitnessProver:
    name = "witnesses"

    def run(self, state, progress=None):
        options, box, net = state.options, state.box, state.net
        undecided = [state.undecided(k) & ~state.is_auxiliary(k) for k in range(len(state.status))]
        if not any(u.any() for u in undecided):
            return
        rng = np.random.default_rng(options.seed)
        report = progress.phase("random points", options.random_points) if progress else None
        for start in range(0, options.random_points, 4096):
            yield Outcome(points=box.sample(min(4096, options.random_points - start), rng))
            if report:
                report(min(start + 4096, options.random_points), options.random_points)
        yield Outcome(points=sign_corners(net, box))
        if options.samples is not None:
            yield Outcome(points=options.samples[box.contains(options.samples)])
        report = progress.phase("witness search", options.gradient_restarts) if progress else None
        # the ascent offers its iterates to the tracker itself (thousands of small batches)
        gradient_search(net, box, state.tracker, undecided, steps=options.gradient_steps,
                        restarts=options.gradient_restarts, rng=rng,
                        progress=(lambda d, t, open_: report(d, t, f"{open_} open")) if report else None)
