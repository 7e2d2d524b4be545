"""``portfolio``: branch and bound and a MILP side by side on each stubborn neuron.

No single method wins on every stubborn neuron (measured on the MNIST benchmark networks: branch
and bound proves most of them many times faster than HiGHS, but HiGHS proves a few that branch and
bound cannot). So each open candidate, layer by layer (earlier proofs tighten later models), gets
branch and bound (torch, one thread) and the feasibility MILP of the ``milp`` prover (solver, one
thread) at the same time — the MILP after a two-second head start of branch and bound, which decides
most neurons alone; the first to decide stops the other, so a hard neuron gets both cores. Each candidate may
use an equal share of the time left (all of it when there is no time limit). Without torch only the
MILP runs.
"""

from __future__ import annotations

import threading

from ..analysis import Status
from .bab import bab_outcome, run_bab, torch_available
from .milp import NeuronMilp, Verdict, verdict_outcome
from .state import Decision, Outcome


class Portfolio:
    name = "portfolio"

    def run(self, state, progress=None):
        if not state.candidate_count():
            return
        has_torch = torch_available()
        threads = _one_torch_thread() if has_torch else None
        try:
            for k in range(len(state.status)):
                todo = [c for c in state.open_candidates() if c.layer == k]
                if not todo:
                    continue
                report = progress.phase(f"bab + milp, layer {k + 1}", len(todo)) if progress else None
                checks = NeuronMilp(state, k)
                for n, c in enumerate(todo):
                    if state.is_open(c):
                        left = state.remaining()
                        share = None if left is None else left / (len(todo) - n)
                        yield from _race(state, checks, c, share, has_torch)
                    if report:
                        report(n + 1, len(todo), f"neuron {c.neuron}; {state.candidate_count()} candidates open")
        finally:
            if threads is not None:
                threads()


#: Seconds branch and bound runs alone before the MILP joins: most neurons are decided within them,
#: and building and starting a MILP beside it slows it down (measured on MNIST 2x100: 6.7 s of branch
#: and bound alone became 11 s with a MILP started at once).
HEAD_START = 2.0


def _race(state, checks: NeuronMilp, c, seconds, has_torch: bool):
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
