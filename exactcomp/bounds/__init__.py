"""Sound pre-activation bounds over a box: interval arithmetic and CROWN-style back-substitution
(:mod:`exactcomp.bounds.crown`)."""

from exactcomp.bounds.crown import (ROUNDING_SLACK, LayerBounds, backsubstitute, compute_bounds, interval_bounds,
                                    interval_step, relu_relaxation)

__all__ = ["ROUNDING_SLACK", "LayerBounds", "backsubstitute", "compute_bounds", "interval_bounds", "interval_step",
           "relu_relaxation"]
