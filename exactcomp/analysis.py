"""Stability analysis: the strategy dispatcher. Every hidden neuron ends stably active, stably inactive,
unstable or unknown (:mod:`exactcomp.results`), with the options of :mod:`exactcomp.options`.

The strategies (:data:`STRATEGIES`, chosen with ``AnalysisOptions.strategy``):

* ``bounds``: bounds and witness search only (fast, may leave unknowns);
* ``auto`` (default): bounds, witnesses, LP bound tightening, then the portfolio of branch and
  bound and per-neuron MILPs for the last candidates;
* ``network``: bounds, witnesses, LP tightening, the single network-wide MILP (NeurIPS 2021);
* ``per-neuron``: the CPAIOR 2020 baseline, two MILPs per neuron (:mod:`exactcomp.provers.per_neuron`).

The first three are schedules of *provers* (:mod:`exactcomp.provers`); ``AnalysisOptions.provers``
replaces a strategy's schedule with any list of registered (or your own) provers.

The names of :mod:`exactcomp.results` and :mod:`exactcomp.options` are importable from here too.
"""

from __future__ import annotations

from dataclasses import replace

from exactcomp.domain import Box
from exactcomp.errors import ExactcompError
from exactcomp.ir.network import Network
from exactcomp.options import (DEFAULT_JOBS, DEFAULT_MARGIN, DEFAULT_TIME_LIMIT, AnalysisOptions,
                               check_device, check_options)
from exactcomp.provers.per_neuron import per_neuron_strategy
from exactcomp.provers.schedule import analyze_with_schedule
from exactcomp.provers.screening import decide_by_bounds
from exactcomp.registry import Registry
from exactcomp.results import UNTIMED_PHASES, Analysis, LayerAnalysis, Status, assemble

__all__ = ["DEFAULT_JOBS", "DEFAULT_MARGIN", "DEFAULT_TIME_LIMIT", "STRATEGIES", "UNTIMED_PHASES", "Analysis",
           "AnalysisOptions", "LayerAnalysis", "Status", "analyze", "assemble", "check_device", "check_options",
           "decide_by_bounds"]

#: strategy name -> function(net, box, options, progress) -> Analysis
STRATEGIES = Registry("strategy", {
    "bounds": analyze_with_schedule,
    "network": analyze_with_schedule,
    "auto": analyze_with_schedule,
    "per-neuron": per_neuron_strategy,
})


def analyze(net: Network, box: Box, options: AnalysisOptions | None = None, progress=None) -> Analysis:
    """Classify every hidden neuron with the strategy ``options.strategy`` (see :data:`STRATEGIES`).

    ``progress``, when given, is an object with ``phase(name, total)`` returning a callable
    ``advance(done, total, note="")``; the CLI passes a rich display. Ctrl-C stops the current
    phase and returns the sound partial result (undecided neurons unknown, ``interrupted`` set).
    A network with an input selection is analysed as :meth:`Network.with_full_input`.
    """
    from exactcomp.formulations import get_formulation
    from exactcomp.validity import Validity

    options = options or AnalysisOptions()
    strategy = STRATEGIES.load(options.strategy)
    check_options(options)
    if options.strategy == "per-neuron" and (options.provers or options.resume is not None):
        raise ExactcompError("the per-neuron baseline runs no provers: --provers and --resume need the strategy "
                             "auto, network or bounds")
    get_formulation(options.formulation)   # unknown names fail here, before any work
    net = net.with_full_input()  # bounds, witnesses and MILPs read the whole input box
    result = strategy(net, box, options, progress)
    return replace(result, options=options, valid_for=Validity.of(net, (box,), options.margin))
