"""Solver-neutral MILP formulations of ReLU networks (installed as ``exactcomp.formulations``).

* :mod:`.milp` — the :class:`~.milp.MILP` container (objective, scipy.sparse rows, bounds, integrality,
  variable blocks and the map from binaries back to neurons);
* :mod:`.bigm` — the big-M formulation of a ReLU trunk over a box.

:data:`REGISTRY` maps formulation names to their builders.
"""

from .bigm import build_bigm
from .milp import MILP

REGISTRY = {"bigm": build_bigm}

__all__ = ["MILP", "REGISTRY", "build_bigm"]
