"""``lp``: LP bound tightening, layer by layer, over the LP relaxation of the big-M model.

For every candidate of layer ``k`` (and, when a deeper layer has candidates, every undecided neuron
of layer ``k``, whose bounds set the deeper big-M constants): ``max g`` and ``min g`` over the LP
relaxation of layers ``< k`` (triangle relaxation, the tightest bounds known). An optimum ``<= -τ``
(``>= τ``) proves the neuron (method ``lp``); otherwise the optimum widened by τ replaces the bound.
Every LP solution's input is offered as a witness. One solver session per layer, re-solved with
each new objective, so the LPs warm-start from the last basis. The phase uses at most a share of the
time left (default a quarter), candidates first, then the feeding neurons that matter most.
"""

from __future__ import annotations

import numpy as np

from exactcomp.results import Status
from exactcomp.provers.state import Decision, Outcome


def deepest_candidate_layer(state) -> int:
    layers = [k for k in range(len(state.status)) if any(m.any() for m in state.candidates(k))]
    return max(layers) if layers else -1


class LpTightening:
    """``share``: the fraction of the time left this prover may use (its LPs serve the provers after
    it, which need time too); when it is spent, the remaining LPs are skipped, not the analysis."""

    name = "lp"

    def __init__(self, share: float = 0.25):
        self.share = share

    def run(self, state, progress=None):
        depth = deepest_candidate_layer(state)
        # layer 1's interval bounds over the box are already exact
        todo = {k: self.targets(state, k, depth) for k in range(1, depth + 1)}
        total = int(sum(t.size for t in todo.values()))
        report = progress.phase("LP tightening", total) if progress else None
        left = state.remaining()
        stop = float("inf") if left is None else state.budget.now() + self.share * left
        done = 0
        for k, targets in todo.items():
            if targets.size:
                yield from self.layer(state, k, targets, k < depth, stop,
                                      lambda n: report(done + n, total, f"layer {k + 1}") if report else None)
                done += targets.size

    @staticmethod
    def targets(state, k: int, depth: int) -> np.ndarray:
        """Candidates of layer ``k`` first, then (when a deeper layer has candidates) its other
        undecided neurons, most influential first: triangle gap ``-l u / (u - l)`` times the summed
        ``|W|`` into the next layer's open neurons (how much their relaxation loosens later bounds)."""
        inactive, active = state.candidates(k)
        first = np.flatnonzero(inactive | active)
        if k >= depth:
            return first
        rest = np.flatnonzero(state.undecided(k) & ~(inactive | active))
        lo, hi = state.lower[k][rest], state.upper[k][rest]
        gap = np.where((lo < 0) & (hi > 0), -lo * hi / np.where(hi > lo, hi - lo, 1.0), 0.0)
        weight = np.asarray(abs(state.net.layers[k + 1].matrix()[np.flatnonzero(state.undecided(k + 1))][:, rest]).sum(axis=0)).ravel()
        return np.concatenate([first, rest[np.argsort(-(gap * weight), kind="stable")]])

    def layer(self, state, k: int, targets: np.ndarray, feeding: bool, stop: float, report):
        """LP max/min of ``targets`` of layer ``k``; witnessed directions skipped unless ``feeding``."""
        from exactcomp.formulations.bigm import preactivation_objective

        tau = state.margin
        milp = state.trunk_model(k)
        session = state.backend.session(milp, relax=True)
        x_cols = milp.blocks["x"]
        for n, j in enumerate(targets):
            if state.budget.now() >= stop:
                yield Outcome(stats={"lp_skipped": int(targets.size - n)})
                return
            for sign in (1.0, -1.0):
                if state.status[k][j] != Status.UNKNOWN:
                    break
                seen = state.tracker.seen_positive(k)[j] if sign > 0 else state.tracker.seen_negative(k)[j]
                if seen and not feeding:
                    continue
                c, off = preactivation_objective(milp, state.net, k, j, sign)
                session.set_objective(c, off, "max")
                left = state.remaining()
                result = session.solve(time_limit=None if state.budget.by_work else left)
                state.budget.charge("lps")
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
