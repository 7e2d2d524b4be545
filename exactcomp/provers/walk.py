"""``region-walk``: LP local search over activation regions for a witness (:mod:`exactcomp.witnesses.region_walk`).

For each open candidate the walk starts from the best input known for it (the witness tracker's
point with the largest ``σ g``) and returns the best real input it reaches: ``σ g > 0`` shows the
neuron unstable, ``-τ <= σ g <= 0`` ends it as ``near_zero`` (no proof beyond τ can exist). The
branch-and-bound and portfolio provers call :func:`walk_candidate` themselves on the candidates
they leave ``near_zero`` or open, so the default schedule needs no separate pass; ``--provers``
can add this one before them.
"""

from __future__ import annotations

import numpy as np

from exactcomp.results import Reason, Status
from exactcomp.provers.state import Decision, Outcome

#: Seconds one walk may take at most (a walk is usually a handful of LPs, 0.2-3 s on MNIST 5x100).
WALK_SECONDS = 5.0


def walk_candidate(state, c, start: np.ndarray | None = None, seconds: float = WALK_SECONDS):
    """``(x, σ g(x))`` of the best input the walk reaches for candidate ``c`` (float64 forward pass)."""
    from exactcomp.witnesses.region_walk import region_walk

    if start is None:
        start = state.tracker.best_points(c.layer, np.array([c.neuron]), np.array([c.sign > 0]))[0]
    deadline = min(state.deadline, state.budget.now() + state.budget.span(seconds))
    return region_walk(state.net, state.box, (c.layer, c.neuron, c.sign), start, deadline=deadline,
                       budget=state.budget)


def walk_outcome(state, c, start=None) -> Outcome:
    """The walk's point as an outcome: a witness when ``σ g > 0``, ``near_zero`` within τ of zero."""
    x, value = walk_candidate(state, c, start)
    out = Outcome(points=x[None], stats={"region_walks": 1})
    if value > 0:
        out.stats["region_walk_witnesses"] = 1
    elif value >= -state.margin:
        out.decisions.append(Decision(c.layer, c.neuron, Status.UNKNOWN, Reason.NEAR_ZERO))
    return out


class RegionWalk:
    name = "region-walk"

    def run(self, state, progress=None):
        todo = state.open_candidates()
        report = progress.phase("region walk", len(todo)) if progress else None
        for n, c in enumerate(todo):
            if state.is_open(c):
                yield walk_outcome(state, c)
            if report:
                report(n + 1, len(todo), f"layer {c.layer + 1} neuron {c.neuron}; {state.candidate_count()} open")
