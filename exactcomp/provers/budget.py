"""Where the proof budget is measured: seconds of the wall clock (``--time-limit``) or units of work
(``--work-limit``), which make the answer the same on any machine and under any load.

A **unit of work** is about 10 ms of one core's work on this project's 2-core machine, counted from steps whose
cost does not depend on the clock, each with its weight (:data:`COST`): a subdomain bounded by branch and bound
(1/50 of a unit: the batched bound passes do 3,600-13,000 subdomains a second on the MNIST benchmark MLPs), an LP
of the LP tightening (3 units: 20-60 ms there), a MILP solve (3) and each of its branch-and-bound nodes (1), an LP
of a region walk (1), a box of the input splitting (1/2). Every prover charges what it does to the
:class:`Budget` of the :class:`~exactcomp.provers.state.ProofState` in either mode (the report's ``work`` and
``work_<kind>`` counts); the provers read the budget's clock (:meth:`Budget.now`: seconds, or units spent)
wherever they used the wall clock, and turn their constants in seconds (a walk's 5 s, the portfolio's head
start, ...) into units with :meth:`Budget.span` (:data:`UNITS_PER_SECOND`). The weights are a guide to spending
the budget in proportion to the work, not a promise of seconds: ``--work-limit 30000`` took 150-400 s on the
benchmark networks here.

Under a work budget nothing may depend on the clock or on which thread finishes first, so: the portfolio runs
branch and bound and then the MILP on each candidate (no race), MILPs get node limits instead of time limits
(solver back ends that can: HiGHS), the payoff is refreshed after every change (not at a rate set by its own
cost), and per-neuron MILPs run one at a time. Seeds are fixed everywhere already.
"""

from __future__ import annotations

import threading
import time

from exactcomp.results import Reason

#: Units of work per second, to turn the provers' constants in seconds into units (module doc).
UNITS_PER_SECOND = 100.0

#: Units of work of one step of each kind (module doc); a kind not listed costs 1.
COST = {"bab_bounds": 0.02, "lps": 3.0, "milp_solves": 3.0, "milp_nodes": 1.0, "walk_lps": 1.0, "input_boxes": 0.5}


class Budget:
    """The proof budget's clock and the work done (see module doc). ``work_limit``: None for a time budget."""

    def __init__(self, work_limit: int | None = None):
        self.by_work = work_limit is not None
        self.limit = work_limit
        self.spent: dict[str, int] = {}
        self._lock = threading.Lock()   # per-neuron MILPs of a time budget charge from several threads

    @property
    def work(self) -> float:
        """Units of work charged so far, of every kind, each step at its :data:`COST`."""
        return sum(count * COST.get(kind, 1.0) for kind, count in self.spent.items())

    @property
    def reason(self) -> Reason:
        """The unknown reason of neurons the budget did not reach."""
        return Reason.WORK_LIMIT if self.by_work else Reason.TIME_LIMIT

    def now(self) -> float:
        """The budget's clock: units spent (work budget) or ``time.perf_counter()`` seconds."""
        return self.work if self.by_work else time.perf_counter()

    def charge(self, kind: str, units: int = 1) -> None:
        """Record ``units`` steps of ``kind`` (``bab_bounds``, ``milp_nodes``, ``lps``, ...)."""
        with self._lock:
            self.spent[kind] = self.spent.get(kind, 0) + int(units)

    def charge_milp(self, result) -> None:
        """One MILP solve and the branch-and-bound nodes it explored (a solver's ``SolveResult``)."""
        self.charge("milp_solves")
        self.charge("milp_nodes", result.nodes)

    def span(self, seconds: float) -> float:
        """A duration of the provers' constants on this budget's clock."""
        return seconds * UNITS_PER_SECOND if self.by_work else seconds

    def solver_limits(self, left: float | None) -> dict:
        """Keyword arguments of a solver session's ``solve`` for ``left`` of the budget (None: unlimited): a time
        limit in seconds, or a node limit in units."""
        if left is None:
            return {"time_limit": None}
        return {"time_limit": None, "node_limit": max(0, int(left))} if self.by_work else {"time_limit": left}

    def stats(self) -> dict:
        """The analysis statistics: ``work`` (units, rounded) and ``work_<kind>`` (steps of each kind)."""
        return {"work": int(round(self.work)), **{f"work_{kind}": n for kind, n in sorted(self.spent.items())}}
