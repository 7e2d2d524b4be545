"""``milp``: one feasibility MILP per candidate over the exact big-M model of the layers before it.

For an inactive candidate: is ``g >= -τ`` feasible? Infeasible proves ``g < -τ`` on the box (method
``milp``). A feasible point is float64-checked as a witness; if it is none, a second model asks for
``g >= τ``: infeasible means the maximum lies within τ of zero (``near_zero``, kept). Active
candidates likewise with ``-g``. The candidates of a layer are independent, so up to
``options.jobs`` of them are solved at once, each in its own thread (HiGHS releases the GIL); their
outcomes reach the schedule in the calling thread only. Layers go in order, so each layer's model
already has the proofs of the layers before it.
"""

from __future__ import annotations

import enum
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np

from exactcomp.solvers import SolveStatus
from exactcomp.options import DEFAULT_JOBS
from exactcomp.results import Reason, Status
from exactcomp.provers.state import Candidate, Decision, OutOfTime, Outcome


class VerdictKind(enum.StrEnum):
    """How one feasibility check ended: ``INFEASIBLE`` (``σ g >= -τ`` infeasible: a proof), ``WITNESS`` (a
    feasible point with the other sign), ``NEAR_ZERO`` (``σ g >= τ`` infeasible but ``>= -τ`` feasible),
    ``NO_WITNESS`` (feasible points, none a float64 witness: a solver tolerance, counted a solver error),
    ``SOLVER_ERROR``, ``TIME_LIMIT``, ``INTERRUPTED`` (stopped by a partner or Ctrl-C), ``SKIPPED`` (decided
    meanwhile)."""

    INFEASIBLE = "infeasible"
    WITNESS = "witness"
    NEAR_ZERO = "near_zero"
    NO_WITNESS = "no_witness"
    SOLVER_ERROR = "solver_error"
    TIME_LIMIT = "time_limit"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"


@dataclass
class Verdict:
    kind: VerdictKind
    points: list = field(default_factory=list)   # inputs of the solver's feasible points
    milps: int = 0


def proven_edge(c: Candidate, margin: float):
    """The bound a proof of candidate ``c`` establishes: ``g <= -τ`` (inactive) or ``g >= τ`` (active)."""
    edge = np.array([margin])
    return (c.layer, np.array([c.neuron]), None, -edge) if c.sign > 0 else (c.layer, np.array([c.neuron]), edge, None)


def verdict_outcome(c: Candidate, verdict: Verdict, margin: float, how: str = "milp") -> Outcome:
    """The outcome of one check: its points, and a proof or an unknown reason."""
    out = Outcome(points=np.array(verdict.points) if verdict.points else None,
                  stats={"per_neuron_milps": verdict.milps} if verdict.milps else {})
    if verdict.kind == VerdictKind.INFEASIBLE:   # σ g >= -τ infeasible: σ g < -τ on the box
        out.decisions.append(Decision(c.layer, c.neuron, c.sign.status, how))
        out.bounds.append(proven_edge(c, margin))
    elif verdict.kind in (VerdictKind.NEAR_ZERO, VerdictKind.SOLVER_ERROR, VerdictKind.NO_WITNESS):
        reason = Reason.NEAR_ZERO if verdict.kind == VerdictKind.NEAR_ZERO else Reason.SOLVER_ERROR
        out.decisions.append(Decision(c.layer, c.neuron, Status.UNKNOWN, reason))
    return out


class NeuronMilp:
    """The per-neuron checks of one layer ``k`` over one shared trunk model; stoppable from any thread."""

    def __init__(self, state, k: int):
        self.state, self.k = state, k
        self.milp = state.trunk_model(k)
        self.sessions: set = set()
        self.cancelled = threading.Event()
        self.lock = threading.Lock()

    def cancel(self) -> None:
        self.cancelled.set()
        with self.lock:
            for session in self.sessions:
                session.interrupt()

    def check(self, c: Candidate, stop=None, until: float | None = None) -> Verdict:
        """Decide one candidate: ``σ g >= -τ`` feasible?, then ``>= τ`` if the point is no witness.
        ``stop`` (an Event) ends this check early (status ``interrupted``); ``until``: a deadline on the state's
        budget clock earlier than the schedule's (status ``time_limit`` past it)."""
        from exactcomp.formulations.bigm import preactivation_objective

        state, tau = self.state, self.state.margin
        if not state.is_open(c):   # witnessed or decided meanwhile
            return Verdict(VerdictKind.SKIPPED)
        obj, off = preactivation_objective(self.milp, state.net, self.k, c.neuron, c.sign)
        verdict = Verdict(VerdictKind.NO_WITNESS)
        for at_least in (-tau, tau):
            kind = self._feasible(obj, off, at_least, verdict, stop, until)
            if kind != VerdictKind.NO_WITNESS or self._is_witness(verdict.points, c):
                verdict.kind = (VerdictKind.NEAR_ZERO if at_least > 0 and kind == VerdictKind.INFEASIBLE else
                                VerdictKind.WITNESS if kind == VerdictKind.NO_WITNESS else kind)
                return verdict
        return verdict

    def _feasible(self, obj, off, at_least: float, verdict: Verdict, stop, until=None) -> VerdictKind:
        """Solve ``max obj·x + off`` s.t. ``>= at_least``: infeasible / no_witness / time_limit / ..."""
        state, x_cols = self.state, self.milp.blocks["x"]
        if self.cancelled.is_set() or (stop is not None and stop.is_set()):
            return VerdictKind.INTERRUPTED
        budget = state.budget
        deadline = state.deadline if until is None else min(until, state.deadline)
        left = None if deadline == float("inf") else deadline - budget.now()
        if left is not None and left <= 0:
            return VerdictKind.TIME_LIMIT
        model = state.formulation.strengthen(self.milp.with_objective_cutoff(obj, off, at_least), state.net,
                                             state.backend, time_limit=None if budget.by_work else left)
        session = state.backend.session(model, relax=not self.milp.integrality.any())
        with self.lock:
            self.sessions.add(session)
        watcher = _StopWatcher(stop, session) if stop is not None else None
        if self.cancelled.is_set():
            session.interrupt()
        try:   # any feasible point answers the question: stop at the first incumbent
            result = session.solve(**budget.solver_limits(left), incumbent=lambda values: True, stop_at=at_least)
            budget.charge_milp(result)
        finally:
            with self.lock:
                self.sessions.discard(session)
            if watcher is not None:
                watcher.done()
        verdict.milps += 1
        if result.x is not None:
            verdict.points.append(state.box.clip(result.x[x_cols]))
            return VerdictKind.NO_WITNESS
        return {SolveStatus.INFEASIBLE: VerdictKind.INFEASIBLE, SolveStatus.TIME_LIMIT: VerdictKind.TIME_LIMIT,
                SolveStatus.STOPPED: VerdictKind.INTERRUPTED}.get(result.status, VerdictKind.SOLVER_ERROR)

    def _is_witness(self, points, c: Candidate) -> bool:
        if not points:
            return False
        _, pre = self.state.net.forward(np.asarray(points), return_preactivations=True)
        return bool((c.sign * pre[self.k][:, c.neuron] > 0).any())


class _StopWatcher:
    """Interrupts ``session`` as soon as ``stop`` is set (a portfolio partner decided the neuron)."""

    def __init__(self, stop, session):
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(stop, session), daemon=True)
        self._thread.start()

    def _watch(self, stop, session):
        while not self._finished.is_set():
            if stop.wait(0.05):
                session.interrupt()
                return

    def done(self):
        self._finished.set()


class PerNeuronMilp:
    name = "milp"

    def run(self, state, progress=None):
        undefer = [Decision(k, int(j), Status.UNKNOWN, Reason.NONE) for k in range(len(state.method))
                   for j in np.flatnonzero((state.status[k] == Status.UNKNOWN) & (state.method[k] == Reason.DEFERRED))]
        if undefer:
            yield Outcome(decisions=undefer)
        total = state.candidate_count()
        if not total:
            return
        report = progress.phase("per-neuron MILPs", total) if progress else None
        done = 0
        for k in range(len(state.status)):
            jobs = [c for c in state.open_candidates() if c.layer == k]
            if not jobs:
                continue
            checks = NeuronMilp(state, k)
            out_of_time = False
            for c, verdict in _run_checks(checks, jobs, _worker_count(state, len(jobs))):
                out_of_time |= verdict.kind == VerdictKind.TIME_LIMIT
                yield verdict_outcome(c, verdict, state.margin)
                done += 1
                if report:
                    report(done, total, f"layer {k + 1}")
            if out_of_time:
                raise OutOfTime


def _worker_count(state, jobs: int) -> int:
    """Threads for ``jobs`` checks: 1 unless the back end declares it can solve ``"concurrent"``ly."""
    if "concurrent" not in getattr(state.backend, "capabilities", ()):
        return 1
    if state.budget.by_work:   # under a work budget, checks finishing in the clock's order would change answers
        return 1
    wanted = state.options.jobs if state.options.jobs is not None else DEFAULT_JOBS
    return max(1, min(wanted, jobs))


def _run_checks(checks: NeuronMilp, jobs, workers: int):
    """Yield ``(candidate, Verdict)`` as checks finish (in the calling thread); Ctrl-C stops them all."""
    if workers == 1:
        for c in jobs:
            yield c, checks.check(c)
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="exactcomp-milp")
    futures = {pool.submit(checks.check, c): c for c in jobs}
    try:
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            for future in done:
                yield futures[future], future.result()
    except BaseException:   # Ctrl-C (or an error): stop the running solves, drop the queued ones
        checks.cancel()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
