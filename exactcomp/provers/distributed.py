"""``distributed``: the portfolio's race (branch and bound beside a feasibility MILP, then a region walk) on
many candidates at once, each a self-contained work unit on an executor (:mod:`exactcomp.executors`).

Layers go in order (a layer's proofs tighten the next layer's models). For layer ``k`` every open candidate
becomes a :class:`NeuronUnit`: the network, the box, the bounds and proven statuses of the layers up to
``k``, the candidate and its time share (the time left times the number of workers, split evenly among
the open candidates of this and later layers; no limit without one). A worker rebuilds a proof state from
the unit alone and runs :func:`exactcomp.provers.portfolio.race` there; its outcomes (decisions with
certificates, bounds, witness points) come back and are applied by the schedule like any prover's: the
first decision on a neuron wins, points go through the float64 witness tracker (a witness found twice
counts once), and every certificate is re-checked in float64 at the end. Candidates that ran out of their
share get the time that early finishers left in one more round; when the workers outnumber them at least
twice, each one's branch and bound is split into subtrees that run on all workers instead
(:mod:`exactcomp.provers.subtrees`). The time budget and Ctrl-C cancel the units still running.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from exactcomp.results import BabStatus, Reason, Status
from exactcomp.provers.state import Candidate, Decision, OutOfTime, Outcome

#: Seconds a map may run past the schedule's deadline (a unit's own clock stops it first).
GRACE = 5.0


@dataclass
class NeuronUnit:
    """Everything one worker needs to decide ``candidate`` (see module doc)."""

    net: object
    box: object
    lower: list
    upper: list
    status: list
    candidate: Candidate
    seconds: float | None
    margin: float
    solver: str
    formulation: str
    device: str

    @classmethod
    def of(cls, state, c: Candidate, seconds):
        k, options = c.layer, state.options
        solver = options.solver if isinstance(options.solver, str) else "highs"   # objects stay in this process
        formulation = options.formulation if isinstance(options.formulation, str) else "bigm"
        return cls(state.net, state.box, [a.copy() for a in state.lower[:k + 1]],
                   [a.copy() for a in state.upper[:k + 1]], [s.copy() for s in state.status[:k + 1]], c, seconds,
                   state.margin, solver, formulation, options.device)


def prove_unit(unit: NeuronUnit) -> list:
    """Run one unit (in a worker): the portfolio's race on its candidate; returns the outcomes."""
    from exactcomp.options import AnalysisOptions
    from exactcomp.formulations import get_formulation
    from exactcomp.provers.bab import torch_available
    from exactcomp.provers.milp import NeuronMilp
    from exactcomp.provers.portfolio import race
    from exactcomp.provers.state import ProofState
    from exactcomp.solvers import get_solver

    options = AnalysisOptions(margin=unit.margin, solver=unit.solver, formulation=unit.formulation,
                              device=unit.device, threads=1, time_limit=unit.seconds)
    deadline = float("inf") if unit.seconds is None else time.perf_counter() + unit.seconds
    state = ProofState.start(unit.net, unit.box, options, deadline, get_solver(unit.solver, threads=1),
                             get_formulation(unit.formulation))
    k = unit.candidate.layer
    for i in range(k + 1):
        state.lower[i], state.upper[i] = unit.lower[i].copy(), unit.upper[i].copy()
        if i < k:
            state.status[i] = unit.status[i].copy()
            state.method[i][state.status[i] != Status.UNKNOWN] = "given"
    outcomes = []
    try:
        for outcome in race(state, NeuronMilp(state, k), unit.candidate, unit.seconds, torch_available(), final=True):
            outcomes.append(outcome)
    except OutOfTime:
        pass
    return outcomes


class DistributedProver:
    """``first_round_seconds`` caps each unit's share in the first round (None: the fair share)."""

    name = "distributed"

    def __init__(self, first_round_seconds: float | None = None):
        self.first_round_seconds = first_round_seconds

    def run(self, state, progress=None):
        from exactcomp.executors import ExecutorTimeout, get_executor

        if not state.candidate_count():
            return
        executor = get_executor(state.options.executor, state.options.workers)
        try:
            deferred = []
            for k in range(len(state.status)):
                todo = [c for c in state.open_candidates() if c.layer == k]
                if todo:
                    deferred += yield from self._layer(state, executor, todo, progress, f"layer {k + 1}")
            todo = [c for c in deferred if state.is_open(c)]
            left = state.remaining()
            if todo and (left is None or left >= 1.0) and executor.workers >= 2 * len(todo):
                yield from self._subtrees(state, executor, todo)   # more workers than stubborn neurons
                deferred = [c for c in todo if state.is_open(c)]
            elif todo and left is not None and left >= 1.0:
                deferred = yield from self._layer(state, executor, todo, progress, "round 2", share_all=True)
            for c in deferred:
                if state.is_open(c):
                    yield Outcome(decisions=[Decision(c.layer, c.neuron, Status.UNKNOWN, Reason.TIME_LIMIT)])
        except ExecutorTimeout:
            raise OutOfTime from None
        finally:
            executor.close()

    def _subtrees(self, state, executor, todo):
        """Each stubborn candidate in turn, its branch and bound split into subtrees over all workers
        (:mod:`exactcomp.provers.subtrees`); yields the merged proofs, witnesses and unknown reasons."""
        import math

        from exactcomp.provers.bab import torch_available
        from exactcomp.provers.milp import proven_edge
        from exactcomp.provers.subtrees import prove_by_subtrees

        if not torch_available():
            return
        depth = min(4, max(1, math.floor(math.log2(executor.workers))))
        for n, c in enumerate(todo):
            left = state.remaining()
            share = None if left is None else left / (len(todo) - n)
            status, certificate, points = prove_by_subtrees(
                executor, state.net, state.box, state.bounds(c.layer + 1), (c.layer, c.neuron, c.sign), state.margin,
                depth, share, timeout=None if share is None else share + GRACE, device=state.options.device)
            out = Outcome(points=points if len(points) else None, stats={"bab_subtree_units": 2 ** depth})
            if status == BabStatus.PROVEN:
                out.decisions.append(Decision(c.layer, c.neuron, c.sign.status,
                                              "bab", certificate))
                out.bounds.append(proven_edge(c, state.margin))
            elif status == BabStatus.NEAR_ZERO:
                out.decisions.append(Decision(c.layer, c.neuron, Status.UNKNOWN, Reason.NEAR_ZERO))
            yield out

    def _layer(self, state, executor, todo, progress, label, share_all=False):
        """Map ``todo`` on the executor; yields their outcomes; returns those left open."""
        left = state.remaining()
        later = 0 if share_all else sum(c.layer > todo[0].layer for c in state.open_candidates())
        share = None if left is None else left * executor.workers / (len(todo) + later)
        if share is not None:
            share = min(share, left)
        if not share_all and self.first_round_seconds is not None:
            share = self.first_round_seconds if share is None else min(share, self.first_round_seconds)
        units = [NeuronUnit.of(state, c, share) for c in todo]
        report = progress.phase(f"distributed ({executor.name}, {executor.workers} workers), {label}", len(units)) \
            if progress else None
        timeout = None if left is None else left + GRACE
        for n, (i, outcomes) in enumerate(executor.map_unordered(prove_unit, units, timeout=timeout)):
            for outcome in outcomes:
                yield outcome
            if report:
                report(n + 1, len(units), f"{state.candidate_count()} candidates open")
        yield Outcome(stats={"distributed_units": len(units)})
        return [c for c in todo if state.is_open(c)]
