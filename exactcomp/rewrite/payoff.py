"""What deciding a neuron can still buy: the parameters of the written model that its proof could remove.

Issue 23's rule. Let ``S`` be the statuses known now and ``O ⊆`` the *open* neurons (undecided, not shown
unstable by witnesses). The **optimistic** statuses ``S*`` decide every open neuron the way its witnesses
still allow (stably inactive if no input showed ``g > 0``, else stably active); ``P(S*)`` is the parameter
count of :func:`~exactcomp.rewrite.rules.compress_network` under them, the smallest model the proofs still
to come could give. A group ``G`` of open neurons is **needed** when leaving it undecided costs parameters
even in that best case: ``P(S* with G undecided) != P(S*)``. Groups:

* a convolution (or a pooled convolution): one group per output channel (a channel is removed, or folded,
  only whole, so once one of its positions is unstable or stays unknown, its other positions can buy
  nothing, unless a dense reader drops the columns of single constant positions: then the test says so);
* any other hidden layer: its open neurons that ``S*`` makes inactive, and those it makes active (a stably
  active dense neuron pays only through the active-rank reduction or a layer merge). The inactive side of a
  dense layer read by a dense layer, away from skips, is needed without a test: a stably inactive neuron there
  always loses its row and column (:func:`~exactcomp.rewrite.rules.remove_neurons`).

A group that is not needed holds neurons whose decision cannot change the written model, whichever way the
other open neurons go — up to interactions between groups, which the test does not follow (it is a guide to
where proofs pay, never a soundness matter: a neuron that is not needed is kept, as an unknown one is).
Comparison neurons of a max pooling (``auxiliary`` layers) are never open here.

The whole of what is left is ``gain = P(S with the open neurons undecided) - P(S*)``: no proof still to come can
remove more (up to the same interactions). :class:`Payoff` (the ``AnalysisOptions.payoff`` of ``exactcomp
compress``) stops the proofs once ``gain < min_gain * P(original)`` (``--min-gain``), and records ``P`` over time
(the anytime size record).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from exactcomp.ir.pool import conv_of

#: ``exactcomp compress``'s ``--min-gain``: stop once what is left could remove less than this fraction of the
#: original's parameters.
DEFAULT_MIN_GAIN = 0.005


def _analysis_of(net, box, statuses):
    """An :class:`~exactcomp.results.Analysis` carrying only ``statuses`` (what the rewriter reads)."""
    from exactcomp.results import Analysis, LayerAnalysis

    empty = np.empty(0)
    layers = tuple(LayerAnalysis(layer.layer_id, s, empty, empty, empty, empty, empty)
                   for layer, s in zip(net.hidden, statuses))
    return Analysis(net, box, layers, np.empty((0, net.input_size)))


def written_size(net, box, statuses) -> int:
    """Parameters of ``net`` compressed exactly under ``statuses`` (one int8 array per hidden layer)."""
    from exactcomp.rewrite.rules import compress_network

    return compress_network(net, _analysis_of(net, box, statuses)).parameter_count


def _plain_dense(net, k: int) -> bool:
    """Hidden layer ``k`` is dense, read by a dense layer, and no skip connection touches it."""
    from exactcomp.ir.network import Dense
    from exactcomp.rewrite.skips import touches_skip

    return type(net.layers[k]) is Dense and type(net.layers[k + 1]) is Dense and not touches_skip(net, k)


def _groups(net, k: int, open_: np.ndarray, optimistic_inactive: np.ndarray):
    """The neuron groups of hidden layer ``k`` whose payoff is tested together (see module doc), and those
    needed without a test."""
    conv = conv_of(net.layers[k])
    if conv is not None and open_.size == conv.channels * conv.positions:
        per_channel = open_.reshape(conv.channels, conv.positions)
        for c in np.flatnonzero(per_channel.any(axis=1)):
            group = np.zeros_like(per_channel)
            group[c] = per_channel[c]
            yield group.ravel(), False
        return
    inactive, active = open_ & optimistic_inactive, open_ & ~optimistic_inactive
    if inactive.any():
        yield inactive, _plain_dense(net, k)
    if active.any():
        yield active, False


def optimistic(statuses, open_masks, can_be_inactive) -> list[np.ndarray]:
    """``S*``: every open neuron decided the way its witnesses still allow (inactive unless seen positive)."""
    from exactcomp.results import Status

    best = [np.array(s, dtype=np.int8, copy=True) for s in statuses]
    for s, open_, inactive in zip(best, open_masks, can_be_inactive):
        s[open_ & inactive] = Status.INACTIVE
        s[open_ & ~inactive] = Status.ACTIVE
    return best


@dataclass(frozen=True)
class Assessment:
    """What the open neurons can still buy: ``needed`` (per hidden layer, the open neurons whose decision can
    change the written model), ``size_now`` (parameters written if no open neuron were decided),
    ``size_best`` (``P(S*)``, if each were decided the way its witnesses allow) and ``worth`` (per hidden
    layer, each needed neuron's share of what its group buys: ``(P(S* with the group undecided) - P(S*)) /
    |group|``, the order and the time shares of the proofs; None without the group tests)."""

    needed: list
    size_now: int
    size_best: int
    worth: list | None = None

    @property
    def gain(self) -> int:
        """At most what the proofs still to come can remove (parameters)."""
        return self.size_now - self.size_best


def assess(net, box, statuses, open_masks, can_be_inactive, groups: bool = True) -> Assessment:
    """The :class:`Assessment` of the open neurons (module doc); ``groups=False`` skips the per-group tests
    (every open neuron counts as needed): two compressions instead of one per group."""
    from exactcomp.results import Status

    best = optimistic(statuses, open_masks, can_be_inactive)
    size = written_size(net, box, best)
    anything_open = any(np.any(m) for m in open_masks)
    now = written_size(net, box, [np.array(s, dtype=np.int8) for s in statuses]) if anything_open else size
    if not groups:
        return Assessment([np.asarray(m, bool).copy() for m in open_masks], now, size)
    needed = [np.zeros(np.shape(m), dtype=bool) for m in open_masks]
    worth = [np.zeros(np.shape(m)) for m in open_masks]
    for k in range(len(net.hidden)):
        for group, certain in _groups(net, k, np.asarray(open_masks[k], bool), np.asarray(can_be_inactive[k], bool)):
            if certain:
                needed[k] |= group
                worth[k][group] = _dense_row_and_column(net, k)
                continue
            trial = list(best)
            trial[k] = best[k].copy()
            trial[k][group] = Status.UNKNOWN
            bought = written_size(net, box, trial) - size
            if bought != 0:
                needed[k] |= group
                worth[k][group] = max(bought, 0) / group.sum()
    return Assessment(needed, now, size, worth)


def _dense_row_and_column(net, k: int) -> int:
    """What a stably inactive neuron of a plain dense hidden layer ``k`` takes with it: its row and bias, and
    its column in the next layer."""
    return net.layers[k].W.shape[1] + 1 + net.layers[k + 1].W.shape[0]


def needed_masks(net, box, statuses, open_masks, can_be_inactive) -> list[np.ndarray]:
    """Per hidden layer, the open neurons whose decision can still change the written model (module doc).

    ``statuses``: the known :class:`~exactcomp.results.Status` arrays; ``open_masks``: the open neurons;
    ``can_be_inactive``: those no input has shown positive (the others can only be proven active)."""
    return assess(net, box, statuses, open_masks, can_be_inactive).needed


@dataclass(frozen=True)
class Payoff:
    """The payoff policy of an analysis (``AnalysisOptions.payoff``), called like :func:`assess`.

    ``skip_unneeded``: provers skip neurons whose decision cannot change the written model (they end
    ``not_needed``); False decides every neuron (``--complete``) and only records the size over time.
    ``min_gain``: a fraction of the original's parameters; once all the open neurons together can remove less
    (:attr:`Assessment.gain`), the proofs stop and those neurons end unknown with reason ``low_gain``
    (0: never)."""

    skip_unneeded: bool = True
    min_gain: float = 0.0

    def __call__(self, net, box, statuses, open_masks, can_be_inactive) -> Assessment:
        return assess(net, box, statuses, open_masks, can_be_inactive, groups=self.skip_unneeded)
