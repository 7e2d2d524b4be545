"""Solver back ends (installed as ``exactcomp.solvers``), chosen by name from :data:`REGISTRY`."""

REGISTRY: dict[str, object] = {}
