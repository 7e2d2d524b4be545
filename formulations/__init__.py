"""Solver-neutral MILP formulations of ReLU networks (installed as ``exactcomp.formulations``).

The foundation release proves stability by bounds only; the big-M MILP container and
formulations registry live here (see the project issues for the roadmap).
"""

REGISTRY: dict[str, object] = {}
