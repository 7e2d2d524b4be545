"""``portfolio``: branch and bound first, then branch and bound and a MILP side by side per neuron.

No single method wins on every stubborn neuron (measured on the MNIST benchmark networks: branch
and bound proves most 3-50× faster than HiGHS, but HiGHS proves a few that branch and bound cannot).
So, for the open candidates, layer by layer (earlier proofs tighten later models):

1. a short branch and bound for each (``quick`` seconds): most proofs and witnesses come here;
2. for each candidate still open, branch and bound (torch, one thread) and the feasibility MILP of
   the ``milp`` prover (solver, one thread) run at the same time; the first to decide stops the other.
   Each candidate gets an equal share of the time left (all of it when there is no time limit).

Without torch only the MILP runs.
"""

from __future__ import annotations

import threading

from ..analysis import Status
from .bab import bab_outcome, run_bab, torch_available
from .milp import NeuronMilp, Verdict, verdict_outcome
from .state import Decision, Outcome


class Portfolio:
    name = "portfolio"

    def __init__(self, quick: float = 2.0):
        self.quick = quick

    def run(self, state, progress=None):
        if not state.candidate_count():
            return
        has_torch = torch_available()
        threads = _one_torch_thread() if has_torch else None
        try:
            for k in range(len(state.status)):
                if not any(c.layer == k for c in state.open_candidates()):
                    continue
                if has_torch:
                    yield from self._quick_pass(state, k, progress)
                yield from self._side_by_side(state, k, progress, has_torch)
        finally:
            if threads is not None:
                threads()

    def _quick_pass(self, state, k, progress):
        todo = [c for c in state.open_candidates() if c.layer == k]
        report = progress.phase(f"branch and bound, layer {k + 1}", len(todo)) if progress else None
        for n, c in enumerate(todo):
            if state.is_open(c):
                state.remaining()
                yield bab_outcome(c, run_bab(state, c, self.quick), state.margin)
            if report:
                report(n + 1, len(todo), f"neuron {c.neuron}")

    def _side_by_side(self, state, k, progress, has_torch):
        todo = [c for c in state.open_candidates() if c.layer == k]
        if not todo:
            return
        report = progress.phase(f"bab + milp, layer {k + 1}", len(todo)) if progress else None
        checks = NeuronMilp(state, k)
        for n, c in enumerate(todo):
            if state.is_open(c):
                left = state.remaining()
                share = None if left is None else left / (len(todo) - n)
                yield from _race(state, checks, c, share, has_torch)
            if report:
                report(n + 1, len(todo), f"neuron {c.neuron}")


def _race(state, checks: NeuronMilp, c, seconds, has_torch: bool):
    """Branch and bound here, the MILP in a thread; the first decision stops the other."""
    stop = threading.Event()
    verdict: list[Verdict] = []

    def milp():
        try:
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
        if result is not None and result.status != "open":
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
    if result is not None:
        yield bab_outcome(c, result, state.margin)
    if verdict and verdict[0].kind not in ("interrupted", "skipped"):
        yield verdict_outcome(c, verdict[0], state.margin)
    if state.is_open(c) and seconds is not None:   # both ran out of this neuron's share of the time
        yield Outcome(decisions=[Decision(c.layer, c.neuron, int(Status.UNKNOWN), "time_limit")])


def _one_torch_thread():
    """Let branch and bound use one core while the MILP uses the other; returns the undo."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    return lambda: torch.set_num_threads(before)
