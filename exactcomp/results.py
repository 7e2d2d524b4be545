"""What an analysis finds, as plain immutable data: the :class:`Status` of each hidden neuron (stably
active, stably inactive, unstable, unknown), per-layer arrays (:class:`LayerAnalysis`) and the whole
:class:`Analysis` with its witness points; :func:`assemble` builds it from a finished proof run.

* stably inactive: a proof that ``g <= 0`` on the whole box (``upper <= 0``), so ``relu(g) = 0``;
* stably active: a proof that ``g >= 0`` on the box (``lower >= 0``), so ``relu(g) = g``;
* unstable: two witness inputs inside the box with ``g > 0`` and ``g < 0`` (float64 forward pass);
* unknown: neither (for example, a time limit or an interrupt); unknown neurons are kept;
* not needed: undecided, but no decision on it could change the written model (its convolution channel stays
  anyway, say; :mod:`exactcomp.rewrite.payoff`), so the analysis did not spend time on it; kept, like an unknown
  neuron, and never counted as stable. Only analyses run with a payoff (``AnalysisOptions.payoff``: the default
  of ``exactcomp compress``, not of ``--complete`` or :func:`exactcomp.analyze`) report it.

``method`` records how each neuron was decided: ``interval`` or ``symbolic`` bounds, ``lp``
(LP bound tightening), ``milp`` (a MILP proof), ``witness``; for unknown neurons it says why:
``near_zero`` (its extreme lies within the margin τ of zero), ``time_limit``, ``interrupted``,
``solver_error``, or empty (not attempted: strategy ``bounds``). A neuron whose bounds are exactly
``[0, 0]`` is reported inactive.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from exactcomp.domain import Box
from exactcomp.ir.network import Network

if TYPE_CHECKING:
    from exactcomp.options import AnalysisOptions
    from exactcomp.validity import Validity


class Status(enum.IntEnum):
    UNKNOWN = 0
    ACTIVE = 1
    INACTIVE = 2
    UNSTABLE = 3
    NOT_NEEDED = 4

    @property
    def label(self) -> str:
        return {0: "unknown", 1: "stably_active", 2: "stably_inactive", 3: "unstable", 4: "not_needed"}[int(self)]


class Side(enum.IntEnum):
    """The stability a candidate may still have, as the sign of its proof goal ``side * g <= -τ``: ``INACTIVE``
    (no input showed ``g > 0``; prove ``g <= -τ``) or ``ACTIVE`` (no input showed ``g < 0``; prove ``g >= τ``)."""

    INACTIVE = 1
    ACTIVE = -1

    @property
    def status(self) -> Status:
        """The status a proof on this side gives."""
        return Status.INACTIVE if self > 0 else Status.ACTIVE


class Reason(enum.StrEnum):
    """Why an undecided neuron is left: the ``method`` of an unknown (or not needed) neuron. ``NONE`` (``""``): not
    attempted yet; ``DEFERRED``: a prover handed it to a later one (never final: the schedule's end gives it
    ``TIME_LIMIT`` (``WORK_LIMIT`` under a work budget) or ``INTERRUPTED``); ``COMPARISON``: a max pooling's comparison neuron, which provers skip;
    ``NO_PAYOFF``: no decision on it could change the written model; ``LOW_GAIN``: the proofs stopped because
    all the open neurons together could remove less than ``--min-gain``; ``UNION_CHECK``: boxes of a union disagree
    in a way sound proofs cannot (kept)."""

    NONE = ""
    DEFERRED = "deferred"
    NEAR_ZERO = "near_zero"
    TIME_LIMIT = "time_limit"
    WORK_LIMIT = "work_limit"
    INTERRUPTED = "interrupted"
    SOLVER_ERROR = "solver_error"
    CERTIFICATE_REJECTED = "certificate_rejected"
    COMPARISON = "comparison"
    NO_PAYOFF = "no_payoff"
    LOW_GAIN = "low_gain"
    UNION_CHECK = "union_check"


#: Reasons of neurons still open to provers (the others are final).
OPEN_REASONS = (Reason.NONE, Reason.DEFERRED)


class BabStatus(enum.StrEnum):
    """How a branch-and-bound run on one candidate ended: ``PROVEN`` (every leaf bounded beyond τ: a
    certificate), ``WITNESS`` (an input with the other sign), ``NEAR_ZERO`` (its extreme lies within τ of zero),
    ``OPEN`` (out of time or subdomains)."""

    PROVEN = "proven"
    WITNESS = "witness"
    NEAR_ZERO = "near_zero"
    OPEN = "open"


@dataclass(frozen=True, eq=False)
class LayerAnalysis:
    """Per-neuron results for one hidden layer, arrays in the analysed layer's order (for an imported network
    that is the original neuron index; :meth:`Analysis.status_of` maps original ids in general).

    ``witness_pos/neg`` index rows of :attr:`Analysis.witnesses` (``-1`` when none).
    """

    layer_id: int
    status: np.ndarray
    method: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    witness_pos: np.ndarray
    witness_neg: np.ndarray

    def count(self, status: Status) -> int:
        """Neurons of this layer with ``status``, e.g. ``layer.count(Status.INACTIVE)``."""
        return int(np.sum(self.status == status))

    @property
    def counts(self) -> dict[str, int]:
        """``{"unknown": .., "stably_active": .., "stably_inactive": .., "unstable": ..}`` for this layer."""
        return {s.label: self.count(s) for s in Status}

    @property
    def neurons(self) -> int:
        return self.status.size

    def methods(self) -> dict[str, int]:
        """How the decided neurons were decided: ``{method: count}``."""
        decided = (self.status != Status.UNKNOWN) & (self.status != Status.NOT_NEEDED) & (self.method != "")
        return _tally(self.method[decided])

    def unknown_reasons(self) -> dict[str, int]:
        """Why the unknown neurons are unknown: ``{reason: count}`` (``not_attempted`` if no reason)."""
        reasons = self.method[self.status == Status.UNKNOWN]
        return _tally(np.where(reasons == "", "not_attempted", reasons))


def _tally(values: np.ndarray) -> dict[str, int]:
    names, counts = np.unique(values.astype(str), return_counts=True)
    return {str(n): int(c) for n, c in zip(names, counts)}


@dataclass(frozen=True, eq=False)
class Analysis:
    """The stability of every hidden neuron of ``network`` over ``box``, with witness points."""

    network: Network
    box: Box
    layers: tuple[LayerAnalysis, ...]
    witnesses: np.ndarray
    times: dict = field(default_factory=dict)
    interrupted: bool = False
    stats: dict = field(default_factory=dict)
    options: "AnalysisOptions | None" = None
    valid_for: "Validity | None" = None   # network hash, boxes, margin (exactcomp.validity); set by analyze
    sizes: tuple = ()                     # ((seconds, parameters written if stopped then), ...): with a payoff
    gain_left: int | None = None          # at most what deciding the undecided neurons could remove (payoff)
    schedule: tuple = ()                  # the provers that ran, in order (empty: not a schedule of provers)

    def totals(self) -> dict[str, int]:
        return {s.label: sum(layer.count(s) for layer in self.layers) for s in Status}

    def model_totals(self) -> dict[str, int]:
        """:meth:`totals` over the model's own neurons, without the comparison neurons of its max poolings
        (``auxiliary`` layers: not neurons of the model, and never proof targets)."""
        auxiliary = {x.layer_id for x in self.network.hidden if getattr(x, "auxiliary", False)}
        return {s.label: sum(la.count(s) for la in self.layers if la.layer_id not in auxiliary) for s in Status}

    @property
    def proof_seconds(self) -> float:
        """Seconds spent in the proof phases, the part that ``time_limit`` bounds (every phase but the
        screening ones: resume, bounds, witnesses, and the final certificate re-check and payoff test)."""
        return float(sum(v for k, v in self.times.items() if k not in UNTIMED_PHASES))

    def layer(self, layer_id: int) -> LayerAnalysis:
        """The results of hidden layer ``layer_id`` (ids need not be consecutive: rewriting removes layers)."""
        for la in self.layers:
            if la.layer_id == layer_id:
                return la
        raise KeyError(f"no hidden layer {layer_id} in this analysis")

    def status_of(self, layer_id: int, neuron_ids) -> np.ndarray:
        """Statuses of the neurons with original ids ``neuron_ids`` of layer ``layer_id``. The result arrays
        follow the analysed network's positions, which are the original ids only for an imported network:
        a network that was already compressed keeps original ids on fewer positions."""
        la = self.layer(layer_id)
        ids = next(np.asarray(x.neuron_ids) for x in self.network.hidden if x.layer_id == layer_id)
        lookup = np.full(int(max(ids.max(initial=-1), np.max(neuron_ids, initial=-1))) + 1, -1, dtype=np.int64)
        lookup[ids] = np.arange(ids.size)
        where = lookup[np.asarray(neuron_ids, dtype=np.int64)]
        if np.any(where < 0):
            raise KeyError(f"layer {layer_id}: neurons {np.asarray(neuron_ids)[where < 0][:5].tolist()} were not analysed")
        return la.status[where]


#: Phases outside the time budget (see :attr:`Analysis.proof_seconds`).
UNTIMED_PHASES = frozenset({"import", "resume", "bounds", "witnesses", "recheck", "payoff"})


def assemble(net: Network, box: Box, statuses, methods, lowers, uppers, tracker, times: dict, interrupted: bool,
             stats: dict | None = None, auxiliary=frozenset(), not_needed=None, sizes: tuple = (),
             gain_left: int | None = None, schedule: tuple = ()) -> Analysis:
    """The immutable :class:`Analysis` of a finished run: per hidden layer ``k`` its status and method arrays
    (copied), bounds, and ``tracker`` (a :class:`~exactcomp.witnesses.search.WitnessTracker`): undecided
    neurons it saw take both signs become unstable (method ``witness``) and the witness points they cite are
    gathered, renumbered in order of first citation, into :attr:`Analysis.witnesses`. In the layers of
    ``auxiliary`` (comparisons inside a max pooling) undecided neurons without a reason get ``comparison``.
    ``not_needed`` (per layer, optional): undecided neurons that become :attr:`Status.NOT_NEEDED` (method
    ``no_payoff`` where they had no reason yet). ``sizes`` and ``gain_left``: the payoff's anytime record;
    ``schedule``: the provers that ran."""
    pool = tracker.pool()
    used: dict[int, int] = {}
    layers = []
    for k, net_layer in enumerate(net.hidden):
        status, method = np.array(statuses[k], copy=True), np.array(methods[k], copy=True)
        unstable = (status == Status.UNKNOWN) & tracker.unstable(k)
        status[unstable] = Status.UNSTABLE
        method[unstable] = "witness"
        if k in auxiliary:
            method[(status == Status.UNKNOWN) & np.isin(method, OPEN_REASONS)] = Reason.COMPARISON
        elif not_needed is not None:
            spared = (status == Status.UNKNOWN) & np.asarray(not_needed[k], bool)
            status[spared] = Status.NOT_NEEDED
            method[spared & np.isin(method, OPEN_REASONS)] = Reason.NO_PAYOFF
        pos = np.where(unstable, tracker.max_point[k], -1)
        neg = np.where(unstable, tracker.min_point[k], -1)
        for arr in (pos, neg):
            for i in np.flatnonzero(arr >= 0):
                arr[i] = used.setdefault(int(arr[i]), len(used))
        layers.append(LayerAnalysis(net_layer.layer_id, status, method, np.array(lowers[k], copy=True),
                                    np.array(uppers[k], copy=True), pos, neg))
    order = sorted(used, key=used.get)
    witnesses = pool[order] if order else np.empty((0, net.input_size))
    return Analysis(net, box, tuple(layers), witnesses, dict(times), interrupted, dict(stats or {}),
                    sizes=tuple(sizes), gain_left=gain_left, schedule=tuple(schedule))
