"""Solver back ends (installed as ``exactcomp.solvers``), chosen by name from :data:`REGISTRY`.

A back end has ``name``, ``capabilities`` and ``solve(milp, time_limit=None)``
returning a :class:`SolveResult`. ``dual_bound`` is a proven bound on the optimum in the model's own
sense (an upper bound when maximising); stability proofs rely only on it and on ``INFEASIBLE``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from importlib import import_module

import numpy as np


class SolveStatus(enum.Enum):
    OPTIMAL = "optimal"
    INFEASIBLE = "infeasible"
    TIME_LIMIT = "time_limit"
    STOPPED = "stopped"
    ERROR = "error"


@dataclass
class SolveResult:
    status: SolveStatus
    objective: float | None
    dual_bound: float | None
    x: np.ndarray | None


#: name -> "module:Class", imported lazily so optional libraries are loaded only when used.
REGISTRY: dict[str, str] = {"highs": "exactcomp.solvers.highs:HighsBackend"}


def get_solver(name_or_backend="highs", **options):
    """A back end by registry name, or a user's own object passed through unchanged."""
    if not isinstance(name_or_backend, str):
        return name_or_backend
    from exactcomp.errors import ExactcompError

    if name_or_backend not in REGISTRY:
        raise ExactcompError(f"unknown solver '{name_or_backend}'; available: {', '.join(sorted(REGISTRY))}")
    module, cls = REGISTRY[name_or_backend].split(":")
    return getattr(import_module(module), cls)(**options)
