"""HiGHS back end (highspy), the default solver.

HiGHS minimises, so a maximisation is passed as ``min -c·x`` and bounds are mapped back. Hooks:
``cbMipSolution`` copies every incumbent (``data_out.mip_solution``) to the ``incumbent`` hook;
``cbMipInterrupt`` / ``cbSimplexInterrupt`` report ``mip_dual_bound`` to the ``progress`` hook and
stop the solve when a hook asked for it or on Ctrl-C. HiGHS may call the MIP interrupt callback
rarely during the root node, so ``stop_at`` is also passed as ``objective_target``, which ends the
solve at the first incumbent that good. A start solution is given with ``setSolution``.

The solve runs in a worker thread so that Ctrl-C reaches Python at once; the main thread then
asks HiGHS to stop and re-raises ``KeyboardInterrupt`` when it has. Sessions solved concurrently in
other threads (HiGHS releases the GIL) are stopped with ``interrupt()``. ``threads`` takes effect only
at the first solve in a process (a HiGHS limitation).
"""

from __future__ import annotations

import threading
import time

import numpy as np

from exactcomp.solvers import SolveResult, SolveStatus
from exactcomp.solvers.quiet import quiet_native_stdout


#: MIP settings for stability proofs (measured on MNIST 784-100-100 layer-2 neurons: 55 s -> 10 s).
#: Primal heuristics (RINS, RENS, feasibility jump, ...) spend most of the root node looking for
#: solutions that exactcomp's own witness search and incumbent checks make unnecessary, and full
#: strong branching on the dense LPs dominates the rest; one reliable strong-branching sample suffices.
PROOF_OPTIONS = {
    "mip_heuristic_effort": 0.0,
    "mip_heuristic_run_rins": False,
    "mip_heuristic_run_rens": False,
    "mip_heuristic_run_root_reduced_cost": False,
    "mip_heuristic_run_feasibility_jump": False,
    "mip_pscost_minreliable": 1,
}


class HighsBackend:
    """Solves :class:`~exactcomp.formulations.milp.MILP` models with HiGHS.

    ``options`` are HiGHS options set on every model (default :data:`PROOF_OPTIONS`; pass ``{}``
    for HiGHS's own defaults).
    """

    name = "highs"
    capabilities = frozenset({"milp", "lp", "incumbent_callback", "interrupt", "start_solution", "concurrent",
                              "node_limit"})

    def __init__(self, threads: int | None = None, verbose: bool = False, options: dict | None = None):
        self.threads = threads
        self.verbose = verbose
        self.options = dict(PROOF_OPTIONS if options is None else options)

    @staticmethod
    def version() -> str:
        import highspy

        with quiet_native_stdout():
            h = highspy.Highs()
        return f"highspy {h.versionMajor()}.{h.versionMinor()}.{h.versionPatch()}"

    def session(self, milp, relax: bool = False) -> "HighsSession":
        return HighsSession(self, milp, relax)

    def solve(self, milp, **kwargs) -> SolveResult:
        return self.session(milp).solve(**kwargs)


class HighsSession:
    """One HiGHS instance holding ``milp`` (its LP relaxation when ``relax``)."""

    def __init__(self, backend: HighsBackend, milp, relax: bool = False):
        import highspy

        self._hs = highspy
        self.is_mip = bool(milp.integrality.any()) and not relax
        with quiet_native_stdout(not backend.verbose):  # HiGHS >= 1.16 prints a banner on construction
            h = self.h = highspy.Highs()
            h.setOptionValue("output_flag", backend.verbose)
        if backend.threads:
            h.setOptionValue("threads", int(backend.threads))
        for key, value in backend.options.items():
            h.setOptionValue(key, value)
        lp = highspy.HighsLp()
        A = milp.A.tocsc()
        lp.num_col_, lp.num_row_ = milp.num_vars, milp.num_rows
        lp.col_cost_ = np.zeros(milp.num_vars)
        lp.col_lower_, lp.col_upper_ = milp.col_lower, milp.col_upper
        lp.row_lower_, lp.row_upper_ = milp.row_lower, milp.row_upper
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = A.indptr, A.indices, A.data
        if self.is_mip:
            lp.integrality_ = [highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous
                               for i in milp.integrality]
        h.passModel(lp)
        self._stop = self._cancelled = False
        self._hooks = (None, None)
        self._sign, self._offset = 1.0, 0.0
        self.set_objective(milp.c, milp.offset, milp.sense)
        h.cbMipSolution.subscribe(self._on_solution)
        for event in (h.cbMipInterrupt, h.cbSimplexInterrupt, h.cbIpmInterrupt):
            event.subscribe(self._on_interrupt)

    def set_objective(self, c: np.ndarray, offset: float = 0.0, sense: str = "max") -> None:
        self._sign = -1.0 if sense == "max" else 1.0  # HiGHS minimises
        self._offset = float(offset)
        c = np.asarray(c, float)
        self.h.changeColsCost(c.size, np.arange(c.size, dtype=np.int32), self._sign * c)

    def set_column_bounds(self, columns: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        columns = np.asarray(columns, dtype=np.int32)
        self.h.changeColsBounds(columns.size, columns, np.asarray(lower, float), np.asarray(upper, float))

    def interrupt(self) -> None:
        """Stop a running ``solve`` (called from another thread); it returns with status STOPPED.

        Sticky: a session once interrupted stops every later ``solve`` at its first callback too.
        """
        self._cancelled = True

    # hooks -----------------------------------------------------------------------------------
    def _on_solution(self, event) -> None:
        incumbent = self._hooks[0]
        if incumbent is not None and incumbent(np.array(event.data_out.mip_solution)):
            self._stop = True

    def _on_interrupt(self, event) -> None:
        progress = self._hooks[1]
        if progress is not None and self.is_mip:
            out = event.data_out
            dual = self._sign * out.mip_dual_bound + self._offset
            primal = self._sign * out.mip_primal_bound + self._offset
            if progress(dual, primal):
                self._stop = True
        if self._stop or self._cancelled:
            event.interrupt()

    # solving ---------------------------------------------------------------------------------
    def solve(self, time_limit: float | None = None, incumbent=None, progress=None, start=None,
              stop_at: float | None = None, node_limit: int | None = None) -> SolveResult:
        """``node_limit``: branch-and-bound nodes of a MILP at most (a deterministic budget; reaching it is
        status ``TIME_LIMIT``, as a time limit is)."""
        hs, h = self._hs, self.h
        h.setOptionValue("time_limit", float(time_limit) if time_limit is not None else float("inf"))
        h.setOptionValue("mip_max_nodes", int(min(node_limit, _MAX_NODES)) if node_limit is not None else _MAX_NODES)
        h.setOptionValue("objective_target",
                         self._sign * (stop_at - self._offset) if stop_at is not None else float("-inf"))
        if start is not None and self.is_mip:
            h.setSolution(_solution(hs, start))
        self._stop, self._hooks, self._node_limited = False, (incumbent, progress), node_limit is not None
        t0 = time.perf_counter()
        try:
            self._run()
        finally:
            self._hooks = (None, None)
        return self._result(time.perf_counter() - t0)

    def _run(self) -> None:
        done = threading.Event()
        failure: list[BaseException] = []

        def work():
            try:
                self.h.run()
            except BaseException as exc:   # noqa: BLE001 - re-raised in the calling thread below
                failure.append(exc)
            finally:   # a hook that raises must not leave the caller waiting forever
                done.set()

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        try:
            while not done.wait(0.05):
                pass
        except KeyboardInterrupt:
            self._stop = True
            worker.join()
            raise
        worker.join()
        if failure:
            raise failure[0]

    def _result(self, seconds: float) -> SolveResult:
        hs, h = self._hs, self.h
        status = h.getModelStatus()
        info = h.getInfo()
        x = np.array(h.getSolution().col_value) if info.primal_solution_status == 2 else None
        objective = float(self._sign * info.objective_function_value + self._offset) if x is not None else None
        if self.is_mip:
            dual = self._sign * info.mip_dual_bound + self._offset
        else:
            dual = objective if status == hs.HighsModelStatus.kOptimal else None
        mapped = {
            hs.HighsModelStatus.kOptimal: SolveStatus.OPTIMAL,
            hs.HighsModelStatus.kInfeasible: SolveStatus.INFEASIBLE,
            hs.HighsModelStatus.kTimeLimit: SolveStatus.TIME_LIMIT,
            hs.HighsModelStatus.kObjectiveTarget: SolveStatus.STOPPED,
            hs.HighsModelStatus.kInterrupt: SolveStatus.STOPPED,
            hs.HighsModelStatus.kSolutionLimit: SolveStatus.TIME_LIMIT if self._node_limited else SolveStatus.STOPPED,
        }.get(status, SolveStatus.ERROR)
        dual = dual if dual is not None and np.isfinite(dual) else None
        nodes = int(getattr(info, "mip_node_count", 0) or 0) if self.is_mip else 0
        return SolveResult(mapped, objective, dual, x, seconds, nodes)


#: HiGHS's own "no node limit" (its largest int option value).
_MAX_NODES = 2 ** 31 - 1


def _solution(hs, values):
    sol = hs.HighsSolution()
    sol.col_value = list(np.asarray(values, float))
    sol.value_valid = True
    return sol
