"""``bab``: branch and bound over ReLU splits, one candidate at a time (:mod:`exactcomp.bab.engine`).

Each open candidate gets :func:`exactcomp.bab.engine.branch_and_bound` with the current bounds of the
layers before it, for at most ``per_neuron`` seconds (and the schedule's deadline). A proof at the
root (optimised slopes alone, no split) is reported as method ``alpha``, a proof with splits as
``bab``; both carry their certificate, which the schedule re-checks in float64 before the analysis
ends, and tighten the neuron's bound to ``-τ`` (resp. ``τ``). The best input found is offered as a
witness; a real input within τ of zero makes the neuron ``near_zero``. Needs torch (CPU float64; the
``torch`` extra); without it the prover does nothing and says so in the statistics.
"""

from __future__ import annotations


from exactcomp.results import BabStatus, Reason, Status
from exactcomp.provers.milp import proven_edge
from exactcomp.provers.state import Decision, Outcome
from exactcomp.provers.walk import walk_outcome


def torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def bab_outcome(c, result, margin: float) -> Outcome:
    """An outcome from a :class:`exactcomp.bab.engine.BabResult` for candidate ``c``."""
    out = Outcome(points=result.points if len(result.points) else None,
                  stats={"bab_subdomains": result.subdomains})
    if result.status == BabStatus.PROVEN:
        leaves = result.certificate.leaves
        how = "alpha" if len(leaves) == 1 and not any(len(idx) for idx, _ in leaves[0].splits) else "bab"
        out.decisions.append(Decision(c.layer, c.neuron, c.sign.status,
                                      how, result.certificate))
        out.bounds.append(proven_edge(c, margin))
        out.stats["bab_proofs"] = 1
    elif result.status == BabStatus.NEAR_ZERO:
        out.decisions.append(Decision(c.layer, c.neuron, Status.UNKNOWN, Reason.NEAR_ZERO))
    return out


def best_point(result):
    """Branch and bound's best input (None when it has none): where a region walk starts."""
    return result.points[0] if len(result.points) else None


def bab_options(state):
    """Branch-and-bound options for the analysis' device (larger batches on a GPU)."""
    from exactcomp.bab.engine import BabOptions

    device = getattr(state.options, "device", "cpu") or "cpu"
    return BabOptions(device=device, batch=GPU_BATCH if device.startswith("cuda") else BabOptions.batch)


#: Children bounded per iteration on a GPU (subdomains per second grow with the batch up to ~16k on an H100).
GPU_BATCH = 8192


def run_bab(state, c, seconds: float | None, cancelled=None, options=None):
    """Branch and bound on one candidate for at most ``seconds`` of the state's budget (seconds, or units of
    work: :mod:`exactcomp.provers.budget`; None: until the deadline)."""
    from exactcomp.bab.engine import branch_and_bound

    budget = state.budget
    deadline = state.deadline if seconds is None else min(state.deadline, budget.now() + seconds)
    return branch_and_bound(state.net, state.box, state.bounds(c.layer + 1), (c.layer, c.neuron, c.sign),
                            state.margin, deadline=deadline, options=options or bab_options(state),
                            cancelled=cancelled, budget=budget)


class BabProver:
    name = "bab"

    def __init__(self, per_neuron: float | None = 30.0):
        self.per_neuron = per_neuron

    def run(self, state, progress=None):
        if not torch_available():
            yield Outcome(stats={"bab_unavailable": 1})
            return
        todo = state.open_candidates()
        report = progress.phase("branch and bound", len(todo)) if progress else None
        for n, c in enumerate(todo):
            if state.is_open(c):
                state.remaining()   # raises OutOfTime past the deadline
                result = run_bab(state, c, None if self.per_neuron is None else state.budget.span(self.per_neuron))
                if result.status in (BabStatus.NEAR_ZERO, BabStatus.OPEN):
                    yield walk_outcome(state, c, best_point(result))
                yield bab_outcome(c, result, state.margin)
            if report:
                report(n + 1, len(todo), f"layer {c.layer + 1} neuron {c.neuron}; {state.candidate_count()} open")
