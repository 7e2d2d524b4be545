"""Pyomo back end (``pip install 'exactcomp[pyomo]'``): any MILP solver Pyomo can reach.

``PyomoBackend(solver="appsi_highs")`` (the default, HiGHS through Pyomo's APPSI interface) or any
name of ``pyomo.environ.SolverFactory`` a user has installed: ``gurobi``, ``gurobi_direct``,
``cplex``, ``scip``, ``cbc``, ``glpk``, ... The model is rebuilt at every solve. No incumbent
callbacks or interrupts: the strategies then wait for each solve to end (``stop_at`` and the cutoff
rows keep them correct, just slower). ``time_limit`` is passed with the option name each solver
expects (:data:`TIME_LIMIT_OPTION`).
"""

from __future__ import annotations

import time

import numpy as np

from exactcomp.solvers import SolveResult, SolveStatus
from exactcomp.solvers.base import RebuildingSession, finite, finite_or_none, require, rows_of
from exactcomp.solvers.quiet import quiet_native_stdout

#: Option name of the time limit for SolverFactory solvers (APPSI solvers use ``config.time_limit``).
TIME_LIMIT_OPTION = {"gurobi": "TimeLimit", "gurobi_direct": "TimeLimit", "gurobi_persistent": "TimeLimit",
                     "cplex": "timelimit", "cplex_direct": "timelimit", "cbc": "sec", "glpk": "tmlim",
                     "scip": "limits/time", "highs": "time_limit"}


def _library():
    return require("pyomo.environ", "pyomo", "pyomo")


class PyomoBackend:
    """Solves :class:`~exactcomp.formulations.milp.MILP` models with a solver reached through Pyomo."""

    name = "pyomo"
    capabilities = frozenset({"milp", "lp"})

    def __init__(self, solver: str = "appsi_highs", threads: int | None = None, verbose: bool = False,
                 options: dict | None = None):
        from exactcomp.errors import ExactcompError

        self.pyo = _library()
        self.solver, self.threads, self.verbose = solver, threads, verbose
        self.options = dict(options or {})
        with quiet_native_stdout(not verbose):
            opt = self._solver()
        if not (opt.available() if self._appsi() else opt.available(exception_flag=False)):
            raise ExactcompError(f"solver 'pyomo': Pyomo cannot find the solver '{solver}' on this machine")

    @staticmethod
    def version() -> str:
        import pyomo.version

        return f"pyomo {pyomo.version.version}"

    def session(self, milp, relax: bool = False) -> RebuildingSession:
        return RebuildingSession(self, milp, relax)

    def solve(self, milp, **kwargs) -> SolveResult:
        return self.session(milp).solve(**kwargs)

    # ------------------------------------------------------------------------------------------
    def _appsi(self) -> bool:
        return self.solver.startswith("appsi_")

    def _solver(self):
        if self._appsi():
            from pyomo.contrib import appsi

            classes = {"appsi_highs": "Highs", "appsi_gurobi": "Gurobi", "appsi_cplex": "Cplex",
                       "appsi_cbc": "Cbc", "appsi_ipopt": "Ipopt"}
            return getattr(appsi.solvers, classes.get(self.solver, self.solver[6:].capitalize()))()
        return self.pyo.SolverFactory(self.solver)

    def _model(self, milp):
        pyo = self.pyo
        from pyomo.core.expr.numeric_expr import LinearExpression

        m = pyo.ConcreteModel()
        n = milp.num_vars
        m.x = pyo.Var(range(n), domain=pyo.Reals)
        for i in range(n):
            v = m.x[i]
            v.setlb(finite_or_none(milp.col_lower[i]))
            v.setub(finite_or_none(milp.col_upper[i]))
            if milp.integrality[i]:
                v.domain = pyo.Integers
        m.rows = pyo.ConstraintList()
        for (cols, vals), lo, hi in zip(rows_of(milp), milp.row_lower, milp.row_upper):
            if not len(cols):
                if lo <= 0 <= hi:
                    continue
                raise ValueError("empty row with bounds excluding 0: the model is infeasible")
            expr = LinearExpression(constant=0.0, linear_coefs=[float(v) for v in vals],
                                    linear_vars=[m.x[int(c)] for c in cols])
            m.rows.add((finite_or_none(lo), expr, finite_or_none(hi)))
        nz = np.flatnonzero(milp.c)
        objective = LinearExpression(constant=float(milp.offset), linear_coefs=[float(milp.c[j]) for j in nz],
                                     linear_vars=[m.x[int(j)] for j in nz])
        m.obj = pyo.Objective(expr=objective, sense=pyo.maximize if milp.sense == "max" else pyo.minimize)
        return m

    def _solve(self, milp, time_limit, incumbent, progress, start, stop_at, cancelled) -> SolveResult:
        if cancelled.is_set():
            return SolveResult(SolveStatus.STOPPED, None, None, None, 0.0, 0)
        m = self._model(milp)
        t0 = time.perf_counter()
        solve = self._solve_appsi if self._appsi() else self._solve_factory
        with quiet_native_stdout(not self.verbose):   # e.g. the HiGHS banner of appsi_highs
            status, values, dual = solve(m, milp, time_limit)
        objective = float(milp.c @ values + milp.offset) if values is not None else None
        if status == SolveStatus.OPTIMAL and dual is None:
            dual = objective
        return SolveResult(status, objective, dual, values, time.perf_counter() - t0, 0)

    def _solve_appsi(self, m, milp, time_limit):
        from pyomo.contrib.appsi.base import TerminationCondition as T

        opt = self._solver()
        opt.config.load_solution = False
        opt.config.stream_solver = self.verbose
        if time_limit is not None:
            opt.config.time_limit = max(float(time_limit), 1e-3)
        for key, value in self.options.items():
            setattr(opt.highs_options if hasattr(opt, "highs_options") else opt.config, key, value)
        res = opt.solve(m)
        status = {T.optimal: SolveStatus.OPTIMAL, T.infeasible: SolveStatus.INFEASIBLE,
                  T.maxTimeLimit: SolveStatus.TIME_LIMIT, T.interrupted: SolveStatus.STOPPED,
                  T.objectiveLimit: SolveStatus.STOPPED}.get(res.termination_condition, SolveStatus.ERROR)
        values = None
        if res.best_feasible_objective is not None:
            res.solution_loader.load_vars()
            values = np.array([m.x[i].value for i in range(milp.num_vars)], float)
        dual = finite(res.best_objective_bound) if status != SolveStatus.INFEASIBLE else None
        return status, values, dual

    def _solve_factory(self, m, milp, time_limit):
        from pyomo.opt import TerminationCondition as T

        opt = self._solver()
        options = dict(self.options)
        if time_limit is not None and self.solver in TIME_LIMIT_OPTION:
            options[TIME_LIMIT_OPTION[self.solver]] = float(time_limit)
        results = opt.solve(m, load_solutions=False, tee=self.verbose, options=options)
        cond = results.solver.termination_condition
        status = {T.optimal: SolveStatus.OPTIMAL, T.infeasible: SolveStatus.INFEASIBLE,
                  T.maxTimeLimit: SolveStatus.TIME_LIMIT, T.userInterrupt: SolveStatus.STOPPED}.get(cond, SolveStatus.ERROR)
        values = None
        if len(results.solution) and status != SolveStatus.INFEASIBLE:
            m.solutions.load_from(results)
            values = np.array([m.x[i].value for i in range(milp.num_vars)], float)
        bound = results.problem.upper_bound if milp.sense == "max" else results.problem.lower_bound
        dual = finite(bound) if status not in (SolveStatus.INFEASIBLE, SolveStatus.ERROR) else None
        return status, values, dual
