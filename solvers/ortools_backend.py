"""OR-Tools MathOpt back end (``pip install 'exactcomp[ortools]'``).

``OrtoolsBackend(solver="scip")``: any MathOpt MILP solver (``scip``, ``highs``, ``cp_sat``, ``gurobi``
where licensed, ``glop``/``pdlp`` for LPs). The model is rebuilt at every solve. With SCIP (and
Gurobi) MathOpt calls back on every new incumbent (``Event.MIP_SOLUTION``), which feeds the
``incumbent`` hook; MathOpt's HiGHS ignores callbacks, so that back end declares no
``incumbent_callback`` and the strategies use the re-solve loop. ``stop_at`` is MathOpt's
``objective_limit`` where the solver supports it.

Each solve runs in a fresh child process: OR-Tools' wheels bundle their own HiGHS, whose symbols
clash with highspy's once both are loaded in one process (measured with ortools 9.12-9.15 and
highspy 1.15: whichever is loaded second fails to import). Incumbents travel to the parent over a
pipe, where the ``incumbent`` hook runs and answers whether to stop; ``interrupt()`` and Ctrl-C end
the child process.
"""

from __future__ import annotations

import datetime
import time

import numpy as np

from exactcomp.solvers import SolveResult, SolveStatus
from exactcomp.solvers.base import RebuildingSession, finite, require, rows_of

#: exactcomp name -> MathOpt SolverType member.
SOLVER_TYPES = {"scip": "GSCIP", "highs": "HIGHS", "cp_sat": "CP_SAT", "gurobi": "GUROBI", "glop": "GLOP",
                "pdlp": "PDLP", "glpk": "GLPK"}

#: Solvers whose MathOpt interface supports the MIP_SOLUTION callback.
CALLBACK_SOLVERS = {"scip", "gurobi"}


def _installed() -> None:
    """Raise a clear error if ortools is missing (without loading it into this process)."""
    import importlib.util

    from exactcomp.errors import ExactcompError

    if importlib.util.find_spec("ortools") is None:
        raise ExactcompError("solver 'ortools' needs ortools: pip install 'exactcomp[ortools]'")


def _library():
    return require("ortools.math_opt.python.mathopt", "ortools", "ortools")


class OrtoolsBackend:
    """Solves :class:`~exactcomp.formulations.milp.MILP` models with a solver behind OR-Tools MathOpt."""

    name = "ortools"

    def __init__(self, solver: str = "scip", threads: int | None = None, verbose: bool = False):
        from exactcomp.errors import ExactcompError

        _installed()
        if solver not in SOLVER_TYPES:
            raise ExactcompError(f"solver 'ortools': unknown MathOpt solver '{solver}'; "
                                 f"available: {', '.join(SOLVER_TYPES)}")
        self.solver = solver
        self.threads, self.verbose = threads, verbose
        callbacks = {"incumbent_callback"} if solver in CALLBACK_SOLVERS else set()
        self.capabilities = frozenset({"milp", "lp", "interrupt"} | callbacks)

    @staticmethod
    def version() -> str:
        from importlib.metadata import version

        _installed()
        return f"ortools {version('ortools')}"

    def session(self, milp, relax: bool = False) -> RebuildingSession:
        return RebuildingSession(self, milp, relax)

    def solve(self, milp, **kwargs) -> SolveResult:
        return self.session(milp).solve(**kwargs)

    # ------------------------------------------------------------------------------------------
    def _solve(self, milp, time_limit, incumbent, progress, start, stop_at, cancelled) -> SolveResult:
        import multiprocessing

        if cancelled.is_set():
            return SolveResult(SolveStatus.STOPPED, None, None, None, 0.0, 0)
        callback = incumbent is not None and "incumbent_callback" in self.capabilities
        job = dict(milp=milp, solver=self.solver, time_limit=time_limit, stop_at=stop_at, threads=self.threads,
                   verbose=self.verbose, callback=callback)
        parent, child = multiprocessing.get_context("spawn").Pipe()
        process = multiprocessing.get_context("spawn").Process(target=_child_main, args=(child, job), daemon=True)
        t0 = time.perf_counter()
        process.start()
        try:
            while True:
                if cancelled.is_set():
                    return SolveResult(SolveStatus.STOPPED, None, None, None, time.perf_counter() - t0, 0)
                if not parent.poll(0.05):
                    if not process.is_alive() and not parent.poll(0):
                        return SolveResult(SolveStatus.ERROR, None, None, None, time.perf_counter() - t0, 0)
                    continue
                kind, payload = parent.recv()
                if kind == "incumbent":
                    parent.send(bool(incumbent(payload)))
                elif kind == "error":
                    from exactcomp.errors import ExactcompError

                    raise ExactcompError(f"solver 'ortools' ({self.solver}): {payload}")
                else:
                    return payload
        finally:
            if process.is_alive():
                process.terminate()
            process.join()


def _child_main(conn, job) -> None:
    """Child process: build the MathOpt model, solve, send incumbents and the result over ``conn``."""
    import signal

    import os

    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent decides; it terminates us on Ctrl-C
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if not job["verbose"]:   # native solver output (banners, logs) never reaches the user's stdout
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    try:
        conn.send(("result", _solve_here(conn, **job)))
    except Exception as exc:   # reported by the parent as an ExactcompError
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


def _solve_here(conn, milp, solver, time_limit, stop_at, threads, verbose, callback) -> SolveResult:
    mo = _library()
    model, x = _model(mo, milp)
    params = mo.SolveParameters(enable_output=verbose)
    if time_limit is not None:
        params.time_limit = datetime.timedelta(seconds=max(float(time_limit), 0.0))
    if threads:
        params.threads = int(threads)
    kwargs = {}
    is_mip = bool(milp.integrality.any())
    if callback and is_mip:
        def on_solution(data):
            values = np.array([data.solution[v] for v in x])
            conn.send(("incumbent", values))
            stop = conn.recv() or (stop_at is not None and milp.objective_value(values) >= stop_at)
            return mo.CallbackResult(terminate=bool(stop))
        kwargs = {"callback_reg": mo.CallbackRegistration(events={mo.Event.MIP_SOLUTION}), "cb": on_solution}
    t0 = time.perf_counter()
    result = mo.solve(model, getattr(mo.SolverType, SOLVER_TYPES[solver]), params=params, **kwargs)
    return _result(mo, result, x, milp, time.perf_counter() - t0)


def _model(mo, milp):
    model = mo.Model(name="exactcomp")
    x = [model.add_variable(lb=float(lo), ub=float(hi), is_integer=bool(integer))
         for lo, hi, integer in zip(milp.col_lower, milp.col_upper, milp.integrality)]
    for (cols, vals), lo, hi in zip(rows_of(milp), milp.row_lower, milp.row_upper):
        expr = mo.fast_sum(float(v) * x[c] for c, v in zip(cols, vals))
        model.add_linear_constraint(lb=float(lo), ub=float(hi), expr=expr)
    nz = np.flatnonzero(milp.c)
    objective = mo.fast_sum(float(milp.c[j]) * x[j] for j in nz) + float(milp.offset)
    (model.maximize if milp.sense == "max" else model.minimize)(objective)
    return model, x


def _result(mo, result, x, milp, seconds: float) -> SolveResult:
    term = result.termination
    reason, limit = term.reason, term.limit
    if reason == mo.TerminationReason.OPTIMAL:
        status = SolveStatus.OPTIMAL
    elif reason == mo.TerminationReason.INFEASIBLE:
        status = SolveStatus.INFEASIBLE
    elif limit == mo.Limit.TIME:
        status = SolveStatus.TIME_LIMIT
    elif limit in (mo.Limit.OBJECTIVE, mo.Limit.INTERRUPTED, mo.Limit.SOLUTION):
        status = SolveStatus.STOPPED
    else:
        status = SolveStatus.ERROR
    values = objective = None
    if result.has_primal_feasible_solution():
        solution = result.variable_values()
        values = np.array([solution[v] for v in x])
        objective = milp.objective_value(values)
    dual = None
    if status == SolveStatus.OPTIMAL:
        dual = objective
    elif status != SolveStatus.INFEASIBLE:
        dual = finite(term.objective_bounds.dual_bound)
    nodes = int(getattr(result.solve_stats, "node_count", 0) or 0)
    return SolveResult(status, objective, dual, values, seconds, nodes)
