"""Provers and the schedule that runs them (the analysis of every strategy but the baseline).

A *prover* decides open questions about neurons. Protocol (see :mod:`exactcomp.provers.state`):

* ``name``: its registry name, also the ``method`` of its proofs (``bab`` also reports ``alpha``);
* ``run(state, progress) -> iterator of Outcome``: reads the :class:`~exactcomp.provers.state.ProofState`
  (bounds, statuses, open candidates, deadline, solver back end, formulation) and yields outcomes —
  decisions with evidence (a proof method and, where it has one, a certificate; or an unknown reason
  such as ``near_zero``), tightened bounds, inputs to try as witnesses. It never writes the state;
  the schedule applies each outcome as it arrives. It may raise
  :class:`~exactcomp.provers.state.OutOfTime` (via ``state.remaining()``) or let ``KeyboardInterrupt``
  through: what was applied stays.

:data:`PROVERS` (a :class:`~exactcomp.registry.Registry`) maps names to ``"module:Class"`` (imported lazily);
:func:`get_prover` also accepts
your own object. A schedule is a list of provers run from cheap to expensive
(``AnalysisOptions.provers`` / ``--provers``); :data:`SCHEDULES` gives each strategy's default.
"""

from __future__ import annotations

from exactcomp.registry import Registry

PROVERS = Registry("prover", {
    "bounds": "exactcomp.provers.screening:BoundsProver",
    "witnesses": "exactcomp.provers.screening:WitnessProver",
    "lp": "exactcomp.provers.lp:LpTightening",
    "network-milp": "exactcomp.provers.network_milp:NetworkMilp",
    "milp": "exactcomp.provers.milp:PerNeuronMilp",
    "bab": "exactcomp.provers.bab:BabProver",
    "portfolio": "exactcomp.provers.portfolio:Portfolio",
    "distributed": "exactcomp.provers.distributed:DistributedProver",
    "input-split": "exactcomp.provers.input_split:InputSplit",
    "region-walk": "exactcomp.provers.walk:RegionWalk",
    "resume": "exactcomp.provers.resumed:ResumedProofs",
})

#: strategy -> its schedule (``per-neuron``, the CPAIOR 2020 baseline, is not a schedule).
SCHEDULES: dict[str, tuple[str, ...]] = {
    "auto": ("bounds", "witnesses", "input-split", "lp", "portfolio"),
    "network": ("bounds", "witnesses", "lp", "network-milp", "milp"),
    "bounds": ("bounds", "witnesses"),
}


def get_prover(name_or_prover):
    """A prover by registry name, or a user's own object (anything with ``name`` and ``run``) as it is."""
    if not isinstance(name_or_prover, str):
        return name_or_prover
    return PROVERS.load(name_or_prover)()
