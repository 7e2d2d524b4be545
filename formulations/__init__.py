"""Solver-neutral MILP formulations of ReLU networks (installed as ``exactcomp.formulations``).

* :mod:`.milp` — the :class:`~.milp.MILP` container (objective, scipy.sparse rows, bounds, integrality,
  variable blocks and the map from binaries back to neurons);
* :mod:`.bigm` — the big-M formulation of a ReLU trunk over a box;
* :mod:`.ideal` — big-M plus the ideal single-neuron cuts of Anderson et al. (2020), separated in rounds.

A formulation is an object with ``name``, ``build(net, box, bounds, depth, stable_inactive,
stable_active, relax_inactive=None, relax_active=None, margin=0.0) -> MILP`` (the variable blocks of
:func:`~.bigm.build_bigm`) and ``strengthen(milp, net, backend, time_limit=None) -> MILP`` (extra valid
rows for the model's objective; identity for plain big-M). :data:`REGISTRY` maps names to them;
:func:`get_formulation` also passes a user's own object through.
"""

from exactcomp.formulations.bigm import build_bigm
from exactcomp.formulations.ideal import BigM, IdealCuts, separate_ideal_cuts
from exactcomp.formulations.milp import MILP
from exactcomp.registry import Registry

REGISTRY = Registry("formulation", {"bigm": BigM(), "bigm-ideal": IdealCuts()})


def get_formulation(name_or_formulation="bigm"):
    """A formulation by registry name, or a user's own object passed through unchanged."""
    if not isinstance(name_or_formulation, str):
        return name_or_formulation
    return REGISTRY.load(name_or_formulation)


__all__ = ["MILP", "REGISTRY", "BigM", "IdealCuts", "build_bigm", "get_formulation", "separate_ideal_cuts"]
