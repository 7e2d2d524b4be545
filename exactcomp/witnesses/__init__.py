"""Witness search: inputs inside the box that show neurons unstable (random points, symbolic-bound
corners, gradient ascent: :mod:`exactcomp.witnesses.search`; LPs over activation regions:
:mod:`exactcomp.witnesses.region_walk`). Nothing here proves anything; every point is a float64 forward pass."""

from exactcomp.witnesses.search import WitnessTracker, gradient_search, open_candidates, sign_corners

__all__ = ["WitnessTracker", "gradient_search", "open_candidates", "sign_corners"]
