"""Shared pieces of back ends that rebuild their model at every solve.

:class:`RebuildingSession` implements the session part of the protocol (``set_objective``,
``set_column_bounds``, ``interrupt``, ``solve``) for a back end whose ``_solve(milp, **hooks)`` takes
a whole :class:`~exactcomp.formulations.milp.MILP`; only HiGHS keeps a model loaded between solves.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np

from exactcomp.solvers import SolveResult


class RebuildingSession:
    """A MILP (or its LP relaxation) whose objective and column bounds may change between solves."""

    def __init__(self, backend, milp, relax: bool = False):
        self.backend = backend
        self.milp = replace(milp, integrality=np.zeros_like(milp.integrality)) if relax else milp
        self.cancelled = threading.Event()

    def set_objective(self, c: np.ndarray, offset: float = 0.0, sense: str = "max") -> None:
        self.milp = self.milp.with_objective(c, offset, sense)

    def set_column_bounds(self, columns, lower, upper) -> None:
        col_lower, col_upper = self.milp.col_lower.copy(), self.milp.col_upper.copy()
        col_lower[np.asarray(columns)] = lower
        col_upper[np.asarray(columns)] = upper
        self.milp = replace(self.milp, col_lower=col_lower, col_upper=col_upper)

    def interrupt(self) -> None:
        """Stop a running ``solve`` (from another thread) and every later one (sticky)."""
        self.cancelled.set()

    def solve(self, time_limit: float | None = None, incumbent=None, progress=None, start=None,
              stop_at: float | None = None, lazy=None) -> SolveResult:
        extra = {} if lazy is None else {"lazy": lazy}   # only back ends with "lazy_fixings" take it
        return self.backend._solve(self.milp, time_limit=time_limit, incumbent=incumbent, progress=progress,
                                   start=start, stop_at=stop_at, cancelled=self.cancelled, **extra)


def rows_of(milp):
    """``(columns, values)`` of every row of ``milp.A`` (CSR slices, no copies of the data)."""
    A = milp.A.tocsr()
    return [(A.indices[A.indptr[r]:A.indptr[r + 1]], A.data[A.indptr[r]:A.indptr[r + 1]]) for r in range(A.shape[0])]


def require(module: str, solver: str, extra: str):
    """Import ``module`` for back end ``solver``, or raise a one-line ExactcompError with the install hint."""
    from importlib import import_module

    from exactcomp.errors import ExactcompError

    try:
        return import_module(module)
    except ImportError as exc:
        raise ExactcompError(f"solver '{solver}' needs {module.split('.')[0]}: "
                             f"pip install 'exactcomp[{extra}]'") from exc


def finite_or_none(value: float) -> float | None:
    """A bound for APIs that spell "no bound" as None (pyscipopt, Pyomo)."""
    return float(value) if np.isfinite(value) else None


def finite(value: float) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None
