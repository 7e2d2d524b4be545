"""Run a schedule of provers over one network and box (strategies ``auto``, ``network``, ``bounds``).

1. The provers run in order (:data:`exactcomp.provers.SCHEDULES`, or ``AnalysisOptions.provers``);
   each one's outcomes are applied to the :class:`~exactcomp.provers.state.ProofState` as they come.
   Provers after the screening ones (``bounds``, ``witnesses``) are skipped when no candidate is open
   (or deferred).
2. The budget (``AnalysisOptions.time_limit`` seconds, or ``work_limit`` units of work:
   :mod:`exactcomp.provers.budget`) starts with the first prover after the screening; when it runs out, or on
   Ctrl-C / SIGTERM, the schedule stops and every undecided neuron is unknown with the reason ``time_limit``
   (``work_limit``) / ``interrupted``.
3. Every proof that carries a certificate (an object with ``check(net, box) -> bool``, e.g. branch
   and bound's :class:`exactcomp.bab.engine.Certificate`) is re-checked in float64 from the certificate
   alone; a proof that fails its check is withdrawn (the neuron becomes unknown,
   ``certificate_rejected``) — never trusted.
"""

from __future__ import annotations

import time

from exactcomp.provers import SCHEDULES, get_prover
from exactcomp.provers.state import OutOfTime, ProofState
from exactcomp.results import Reason

SCREENING = ("resume", "bounds", "witnesses")


def analyze_with_schedule(net, box, options, progress=None):
    from exactcomp.formulations import get_formulation
    from exactcomp.solvers import get_solver

    names = options.provers or SCHEDULES[options.strategy]
    if options.provers is None and (options.executor != "local" or options.workers > 1):
        names = ["distributed" if n == "portfolio" else n for n in names]   # the portfolio's race, on workers
    if not options.lp_tightening:
        names = [n for n in names if n != "lp"]
    if options.resume is not None:   # an earlier run's proofs, bounds and witnesses first
        names = ["resume", *[n for n in names if n != "resume"]]
    provers = [get_prover(p) for p in names]
    state = ProofState.start(net, box, options, backend=get_solver(options.solver, threads=options.threads,
                                                                   verbose=options.solver_log),
                             formulation=get_formulation(options.formulation))
    if state.budget.by_work and "node_limit" not in getattr(state.backend, "capabilities", ()):
        from exactcomp.errors import ExactcompError

        raise ExactcompError(f"work_limit needs a solver with node limits (highs); {state.backend.name} has none")
    state.stats.update(lp_solves=0, milp_rounds=0, per_neuron_milps=0)
    if progress is not None and state.payoff is not None:
        progress = SizedProgress(progress, state)
    interrupted, out_of_time = False, False
    try:
        for prover in provers:
            proving = prover.name not in SCREENING
            limit = options.work_limit if state.budget.by_work else options.time_limit
            if proving and state.deadline == float("inf") and limit is not None:
                state.deadline = state.budget.now() + limit
            if proving and not state.has_open_work():
                continue
            state.schedule.append(prover.name)
            t0 = time.perf_counter()
            try:
                for outcome in prover.run(state, progress):
                    state.apply(outcome)
            finally:
                state.times[prover.name] = state.times.get(prover.name, 0.0) + time.perf_counter() - t0
    except KeyboardInterrupt:
        interrupted = True
    except OutOfTime:
        out_of_time = True
    if interrupted or out_of_time:
        state.mark_open(Reason.INTERRUPTED if interrupted else state.budget.reason)
    recheck_certificates(state)
    return state.finish(interrupted)


class SizedProgress:
    """A progress display whose notes also show the parameters the written model would have if the run stopped
    now (the payoff's anytime record, :attr:`ProofState.sizes`)."""

    def __init__(self, progress, state):
        self._progress, self._state = progress, state

    def phase(self, name: str, total: int):
        advance = self._progress.phase(name, total)

        def sized(done: int, total_: int, note: str = ""):
            size = f"{self._state.sizes[-1][1]:,} params" if self._state.sizes else ""
            advance(done, total_, ", ".join(x for x in (note, size) if x))

        return sized


def recheck_certificates(state) -> None:
    """Withdraw every proof whose certificate does not re-verify in float64 (see module doc).
    Certificates of one type are checked together when the type offers ``check_many`` (shared work)."""
    from collections import defaultdict

    from exactcomp.results import Status

    t0 = time.perf_counter()
    groups = defaultdict(list)
    for (k, j), (method, certificate) in state.certificates.items():
        if state.status[k][j] in (Status.ACTIVE, Status.INACTIVE) and state.method[k][j] == method:
            groups[type(certificate)].append(((k, j), certificate))
    checked = 0
    for kind, items in groups.items():
        certificates = [c for _, c in items]
        many = getattr(kind, "check_many", None)
        verdicts = many(state.net, state.box, certificates) if many else [c.check(state.net, state.box)
                                                                           for c in certificates]
        for ((k, j), _), ok in zip(items, verdicts):
            checked += 1
            if not ok:
                state.status[k][j], state.method[k][j] = Status.UNKNOWN, Reason.CERTIFICATE_REJECTED
                state.stats["certificates_rejected"] = state.stats.get("certificates_rejected", 0) + 1
    if checked:
        state.stats["certificates_checked"] = checked
        state.times["recheck"] = time.perf_counter() - t0
