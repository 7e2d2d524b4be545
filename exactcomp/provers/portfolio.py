"""``portfolio``: branch and bound and a MILP side by side on each stubborn neuron.

No single method wins on every stubborn neuron (measured on the MNIST benchmark networks: branch
and bound proves most of them many times faster than HiGHS, but HiGHS proves a few that branch and
bound cannot). So each open candidate, layer by layer (earlier proofs tighten later models), gets
branch and bound (torch, one thread) and the feasibility MILP of the ``milp`` prover (solver, one
thread) at the same time — the MILP after a two-second head start of branch and bound, which decides
most neurons alone; the first to decide stops the other, so a hard neuron gets both cores. Each
candidate may use a share of the time left among the candidates still to come (all of it when there is
no time limit) in proportion to what its proof is worth (:meth:`ProofState.worth`: the parameters of the
written model it can remove, with a payoff; equal shares without), and within a layer the candidates
worth most go first; the time that easy neurons leave unused goes, in further rounds (at most
:data:`MAX_EXTRA_ROUNDS`), to those that ran out of their share. A candidate left near zero or undecided gets a region walk
(:mod:`exactcomp.provers.walk`) from the best point found, which may show it unstable. Without torch
only the MILP runs. Under a work budget (``--work-limit``) the two run one after the other on each candidate
(:func:`in_turn`), so that the answer does not depend on the clock.
"""

from __future__ import annotations

import threading

from exactcomp.results import BabStatus, Status
from exactcomp.provers.bab import bab_outcome, best_point, run_bab, torch_available
from exactcomp.provers.milp import NeuronMilp, Verdict, VerdictKind, verdict_outcome
from exactcomp.provers.state import Decision, Outcome
from exactcomp.provers.walk import walk_outcome


class Portfolio:
    name = "portfolio"

    def run(self, state, progress=None):
        if not state.candidate_count():
            return
        has_torch = torch_available()
        threads = _one_torch_thread() if has_torch else None
        self.attempt = in_turn if state.budget.by_work else race
        try:
            deferred = yield from self._first_round(state, progress, has_torch)
            for round_ in range(2, 2 + MAX_EXTRA_ROUNDS):
                left = state.remaining()
                if not deferred or left is None or left < state.budget.span(MIN_ROUND_SECONDS):
                    break
                deferred = yield from self._next_round(state, progress, has_torch, deferred, round_)
            for c in deferred:   # both ran out of this neuron's share of the time, in every round
                yield Outcome(decisions=[Decision(c.layer, c.neuron, Status.UNKNOWN, state.budget.reason)])
        finally:
            if threads is not None:
                threads()

    def _first_round(self, state, progress, has_torch):
        """Layer by layer, worth most first; each candidate gets its share of the time left among all candidates
        still to come (of every layer), in proportion to its worth. Returns those that used up their share
        undecided."""
        deferred = []
        for k in range(len(state.status)):
            todo = sorted((c for c in state.open_candidates() if c.layer == k), key=lambda c: -state.worth(c))
            if not todo:
                continue
            report = progress.phase(f"bab + milp, layer {k + 1}", len(todo)) if progress else None
            checks = NeuronMilp(state, k)
            for n, c in enumerate(todo):
                if state.is_open(c):
                    left = state.remaining()
                    later = sum(state.worth(c2) for c2 in state.open_candidates() if c2.layer > k)
                    waiting = sum(state.worth(c2) for c2 in todo[n:] if state.is_open(c2))
                    share = None if left is None else left * state.worth(c) / (waiting + later)
                    yield from self.attempt(state, checks, c, share, has_torch, final=share is None)
                    if state.is_open(c):
                        deferred.append(c)
                if report:
                    report(n + 1, len(todo), f"neuron {c.neuron}; {state.candidate_count()} candidates open")
        return deferred

    def _next_round(self, state, progress, has_torch, deferred, round_: int):
        """The time earlier rounds did not use (neurons decided early), split among the candidates that ran
        out of their share in proportion to their worth (each starts afresh with a larger share); returns
        those still undecided."""
        todo = sorted((c for c in deferred if state.is_open(c)), key=lambda c: -state.worth(c))
        if not todo:
            return todo
        report = progress.phase(f"bab + milp, round {round_}", len(todo)) if progress else None
        left_over, checks = [], {}
        for n, c in enumerate(todo):
            if not state.is_open(c):
                continue
            share = state.remaining() * state.worth(c) / sum(state.worth(c2) for c2 in todo[n:] if state.is_open(c2))
            if c.layer not in checks:
                checks[c.layer] = NeuronMilp(state, c.layer)
            yield from self.attempt(state, checks[c.layer], c, share, has_torch, final=True)
            if state.is_open(c):
                left_over.append(c)
            if report:
                report(n + 1, len(todo), f"layer {c.layer + 1} neuron {c.neuron}; {state.candidate_count()} open")
        return left_over


#: Rounds after the first for candidates that ran out of their share, and the least time worth one.
MAX_EXTRA_ROUNDS = 4
MIN_ROUND_SECONDS = 1.0

#: Seconds branch and bound runs alone before the MILP joins: most neurons are decided within them,
#: and building and starting a MILP beside it slows it down (measured on MNIST 2x100: 6.7 s of branch
#: and bound alone became 11 s with a MILP started at once).
HEAD_START = 2.0


def race(state, checks: NeuronMilp, c, seconds, has_torch: bool, final: bool = True):
    """Branch and bound here, the MILP in a thread (after :data:`HEAD_START`); the first decision stops the other."""
    stop = threading.Event()
    verdict: list[Verdict] = []

    def milp():
        try:
            if has_torch and stop.wait(HEAD_START):
                return
            verdict.append(checks.check(c, stop=stop))
        finally:
            stop.set()

    worker = threading.Thread(target=milp, name="exactcomp-portfolio-milp", daemon=True)
    worker.start()
    timer = threading.Timer(seconds, stop.set) if seconds is not None else None
    if timer is not None:
        timer.start()
    try:
        result = run_bab(state, c, seconds, cancelled=stop) if has_torch else None
        if result is not None and result.status != BabStatus.OPEN:
            stop.set()
        worker.join()
    except BaseException:   # Ctrl-C: stop the MILP too
        stop.set()
        checks.cancel()
        worker.join()
        raise
    finally:
        if timer is not None:
            timer.cancel()
    yield from _outcomes(state, c, result, verdict, final)


def in_turn(state, checks: NeuronMilp, c, share, has_torch: bool, final: bool = True):
    """Under a work budget (:mod:`exactcomp.provers.budget`) the race's parts one after the other, so that the
    answer does not depend on which finishes first: branch and bound for the head start (:data:`HEAD_START` on the
    budget's clock), then, if the candidate is still open, the MILP for half of what is left of ``share``, then
    branch and bound again for the rest (None: no share, the MILP until it decides)."""
    budget = state.budget
    end = None if share is None else budget.now() + share
    head = budget.span(HEAD_START)
    result = run_bab(state, c, head if end is None else min(head, share)) if has_torch else None
    verdict: list[Verdict] = []
    if result is None or result.status == BabStatus.OPEN:
        milp_end = None if end is None else budget.now() + (end - budget.now()) / (2 if has_torch else 1)
        verdict.append(checks.check(c, until=milp_end))
        decided = verdict[0].kind in (VerdictKind.INFEASIBLE, VerdictKind.WITNESS, VerdictKind.NEAR_ZERO)
        if has_torch and not decided and end is not None and end > budget.now():
            result = run_bab(state, c, end - budget.now())
    yield from _outcomes(state, c, result, verdict, final)


def _outcomes(state, c, result, verdict: list, final: bool):
    """What branch and bound (``result``) and the MILP (``verdict``) found, as outcomes; a candidate neither
    decided gets a region walk from the best point when near zero or in its last round."""
    milp_decided = bool(verdict) and verdict[0].kind in (VerdictKind.INFEASIBLE, VerdictKind.WITNESS)
    near_zero = ((result is not None and result.status == BabStatus.NEAR_ZERO)
                 or bool(verdict) and verdict[0].kind == VerdictKind.NEAR_ZERO)
    if not milp_decided and (near_zero or final) and (result is None or result.status != BabStatus.WITNESS):
        # neither proved it: a region walk from the best point may still find a positive input
        yield walk_outcome(state, c, best_point(result) if result is not None else None)
    if result is not None:
        yield bab_outcome(c, result, state.margin)
    if verdict and verdict[0].kind not in (VerdictKind.INTERRUPTED, VerdictKind.SKIPPED):
        yield verdict_outcome(c, verdict[0], state.margin)


def _one_torch_thread():
    """Let branch and bound use one core while the MILP uses the other; returns the undo."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    return lambda: torch.set_num_threads(before)
