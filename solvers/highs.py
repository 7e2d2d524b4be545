"""HiGHS back end (highspy), the default solver."""

from __future__ import annotations

import numpy as np

from . import SolveResult, SolveStatus


class HighsBackend:
    """Solves :class:`~exactcomp.formulations.milp.MILP` models with HiGHS."""

    name = "highs"
    capabilities = frozenset({"milp", "lp"})

    def __init__(self, threads: int | None = None, verbose: bool = False):
        self.threads = threads
        self.verbose = verbose

    def solve(self, milp, time_limit: float | None = None) -> SolveResult:
        """Optimise ``milp`` within ``time_limit`` seconds."""
        import highspy

        h = highspy.Highs()
        h.setOptionValue("output_flag", self.verbose)
        if self.threads:
            h.setOptionValue("threads", int(self.threads))
        if time_limit is not None:
            h.setOptionValue("time_limit", float(time_limit))
        sign = -1.0 if milp.sense == "max" else 1.0  # HiGHS minimises
        lp = highspy.HighsLp()
        A = milp.A.tocsc()
        lp.num_col_, lp.num_row_ = milp.num_vars, milp.num_rows
        lp.col_cost_ = sign * milp.c
        lp.col_lower_, lp.col_upper_ = milp.col_lower, milp.col_upper
        lp.row_lower_, lp.row_upper_ = milp.row_lower, milp.row_upper
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = A.indptr, A.indices, A.data
        if milp.integrality.any():
            lp.integrality_ = [highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous
                               for i in milp.integrality]
        h.passModel(lp)
        h.run()
        status = h.getModelStatus()
        info = h.getInfo()
        has_solution = info.primal_solution_status == 2
        x = np.array(h.getSolution().col_value) if has_solution else None
        objective = milp.objective_value(x) if x is not None else None
        is_mip = bool(milp.integrality.any())
        dual = sign * info.mip_dual_bound + milp.offset if is_mip else (objective if status == highspy.HighsModelStatus.kOptimal else None)
        mapped = {
            highspy.HighsModelStatus.kOptimal: SolveStatus.OPTIMAL,
            highspy.HighsModelStatus.kInfeasible: SolveStatus.INFEASIBLE,
            highspy.HighsModelStatus.kTimeLimit: SolveStatus.TIME_LIMIT,
            highspy.HighsModelStatus.kObjectiveTarget: SolveStatus.STOPPED,
            highspy.HighsModelStatus.kInterrupt: SolveStatus.STOPPED,
        }.get(status, SolveStatus.ERROR)
        return SolveResult(mapped, objective, dual if dual is not None and np.isfinite(dual) else None, x)
