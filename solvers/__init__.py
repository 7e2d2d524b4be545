"""Solver back ends (installed as ``exactcomp.solvers``), chosen by name from :data:`REGISTRY`.

The protocol every back end implements (see :class:`Backend`):

* ``name`` and ``capabilities`` (a frozenset of ``"lp"``, ``"milp"``, ``"incumbent_callback"``,
  ``"interrupt"``, ``"start_solution"``, ``"concurrent"``: sessions may solve in parallel threads,
  ``"lazy_fixings"``: ``solve(..., lazy=hook)`` where ``hook(x) -> (reject, columns)`` may reject a
  solution and fix columns to 0 for the rest of the search — the single-tree method);
* ``session(milp, relax=False)`` -> an object with ``set_objective(c, offset, sense)`` and
  ``solve(time_limit=None, incumbent=None, progress=None, start=None, stop_at=None)`` returning a
  :class:`SolveResult`; a session keeps the model loaded, so LPs re-solved with a new objective
  warm-start from the previous basis; with the ``"interrupt"`` capability, ``interrupt()`` (callable
  from another thread) stops a running ``solve``;
* ``solve(milp, **kwargs)``: a one-off ``session(milp).solve(**kwargs)``.

Hooks of ``solve``: ``incumbent(x) -> bool`` sees every new incumbent (a full solution vector) and
returns True to stop the solve; ``progress(dual_bound, primal_bound) -> bool`` is called when the
solver checks for interrupts and returns True to stop; ``start`` is a full solution to try first;
``stop_at`` stops as soon as an incumbent reaches that objective (in the model's sense).

``dual_bound`` is a proven bound on the optimum in the model's own sense (an upper bound when
maximising); stability proofs rely only on it and on ``INFEASIBLE``. Ctrl-C during a solve stops the
solver cleanly and is re-raised as ``KeyboardInterrupt`` once the solver has returned.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from exactcomp.registry import Registry


class SolveStatus(enum.Enum):
    OPTIMAL = "optimal"
    INFEASIBLE = "infeasible"
    TIME_LIMIT = "time_limit"
    STOPPED = "stopped"          # by a hook, ``stop_at`` or an interrupt
    ERROR = "error"


@dataclass
class SolveResult:
    status: SolveStatus
    objective: float | None
    dual_bound: float | None
    x: np.ndarray | None
    seconds: float = 0.0
    nodes: int = 0


class Backend(Protocol):
    name: str
    capabilities: frozenset

    def session(self, milp, relax: bool = False): ...

    def solve(self, milp, **kwargs) -> SolveResult: ...


#: name -> "module:Class", imported lazily so optional libraries are loaded only when used.
REGISTRY = Registry("solver", {
    "highs": "exactcomp.solvers.highs:HighsBackend",
    "scip": "exactcomp.solvers.scip:ScipBackend",
    "pyomo": "exactcomp.solvers.pyomo_backend:PyomoBackend",
    "ortools": "exactcomp.solvers.ortools_backend:OrtoolsBackend",
})


def available() -> dict[str, str]:
    """Registry name -> ``"<library versions>"`` if usable here, else ``"unavailable: <why>"``."""
    from exactcomp.errors import ExactcompError

    found = {}
    for name in REGISTRY:
        try:
            found[name] = REGISTRY.load(name).version()
        except (ExactcompError, ImportError) as exc:
            found[name] = f"unavailable: {exc}"
    return found


def get_solver(name_or_backend="highs", **options):
    """A back end by registry name, or a user's own object passed through unchanged.

    ``"name:inner"`` picks the inner solver of a back end that reaches several (``"ortools:highs"``,
    ``"pyomo:gurobi"``), passed as its ``solver`` argument.
    """
    if not isinstance(name_or_backend, str):
        return name_or_backend
    name, _, inner = name_or_backend.partition(":")
    backend = REGISTRY.load(name)
    if inner:
        return backend(solver=inner, **options)
    return backend(**options)
