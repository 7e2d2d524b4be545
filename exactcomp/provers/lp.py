"""``lp``: LP bound tightening, layer by layer, over the LP relaxation of the big-M model.

For every candidate of layer ``k`` (and, when a deeper layer has candidates, every undecided neuron
of layer ``k``, whose bounds set the deeper big-M constants): ``max g`` and ``min g`` over the LP
relaxation of layers ``< k`` (triangle relaxation, the tightest bounds known). An optimum ``<= -τ``
(``>= τ``) proves the neuron (method ``lp``); otherwise the optimum widened by τ replaces the bound.
Every LP solution's input is offered as a witness. One solver session per layer, re-solved with
each new objective, so the LPs warm-start from the last basis.
"""

from __future__ import annotations

import numpy as np

from ..analysis import Status
from .state import Decision, Outcome


def deepest_candidate_layer(state) -> int:
    layers = [k for k in range(len(state.status)) if any(m.any() for m in state.candidates(k))]
    return max(layers) if layers else -1


class LpTightening:
    name = "lp"

    def run(self, state, progress=None):
        depth = deepest_candidate_layer(state)
        # layer 1's interval bounds over the box are already exact
        todo = {k: np.flatnonzero(self.targets(state, k, depth)) for k in range(1, depth + 1)}
        total = int(sum(t.size for t in todo.values()))
        report = progress.phase("LP tightening", total) if progress else None
        done = 0
        for k, targets in todo.items():
            if targets.size:
                yield from self.layer(state, k, targets, k < depth,
                                      lambda n: report(done + n, total, f"layer {k + 1}") if report else None)
                done += targets.size

    @staticmethod
    def targets(state, k: int, depth: int) -> np.ndarray:
        """Candidates of layer ``k``, plus its undecided neurons when a deeper layer has candidates."""
        inactive, active = state.candidates(k)
        targets = inactive | active
        if k < depth:
            targets |= state.undecided(k)
        return targets

    def layer(self, state, k: int, targets: np.ndarray, feeding: bool, report):
        """LP max/min of ``targets`` of layer ``k``; witnessed directions skipped unless ``feeding``."""
        from exactcomp.formulations.bigm import preactivation_objective

        tau = state.margin
        milp = state.trunk_model(k)
        session = state.backend.session(milp, relax=True)
        x_cols = milp.blocks["x"]
        for n, j in enumerate(targets):
            for sign in (1.0, -1.0):
                if state.status[k][j] != Status.UNKNOWN:
                    break
                seen = state.tracker.seen_positive(k)[j] if sign > 0 else state.tracker.seen_negative(k)[j]
                if seen and not feeding:
                    continue
                c, off = preactivation_objective(milp, state.net, k, j, sign)
                session.set_objective(c, off, "max")
                result = session.solve(time_limit=state.remaining())
                out = Outcome(stats={"lp_solves": 1})
                if result.x is not None:
                    out.points = result.x[x_cols][None, :]
                if result.dual_bound is not None:
                    widened = result.dual_bound + tau
                    out.bounds.append((k, np.array([j]), None, np.array([widened])) if sign > 0 else
                                      (k, np.array([j]), np.array([-widened]), None))
                    if result.dual_bound <= -tau:   # max(±g) <= -τ: proven with the margin
                        status = Status.INACTIVE if sign > 0 else Status.ACTIVE
                        out.decisions.append(Decision(k, int(j), int(status), "lp"))
                yield out
            if report:
                report(n + 1)
