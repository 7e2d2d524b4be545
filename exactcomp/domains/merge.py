"""The union rule: one analysis per box of a :class:`~exactcomp.domains.union.Domain`, merged into one.

For neuron ``j`` with statuses ``s_1 .. s_k`` on the ``k`` boxes:

* stably active (inactive) iff every ``s_i`` is stably active (inactive): then ``g_j >= τ`` (``<= -τ``) holds
  on every box, so on the union; the method is the parts' methods joined with ``+`` where they differ;
* unstable iff some ``s_i`` is unstable (that box's witnesses), or one box proves it active and another
  inactive: the centres of those boxes are its witnesses, re-checked by a float64 forward pass;
* not needed iff no box says unknown and some box says not needed (its decision could not change the model
  written for that box, whose kept channels the union keeps too): kept;
* unknown otherwise (the first unknown box's reason): kept.

Bounds are the hull of the boxes' bounds; times and statistics add up.
"""

from __future__ import annotations

import numpy as np

from exactcomp.results import Analysis, LayerAnalysis, Reason, Status


def _joined_methods(methods: np.ndarray) -> np.ndarray:
    """Per neuron (column), the parts' methods, joined with ``+`` when they differ."""
    out = methods[0].copy()
    differ = np.any(methods != methods[0], axis=0)
    for j in np.flatnonzero(differ):
        out[j] = "+".join(sorted(set(methods[:, j])))
    return out


def _merge_layer(k, las, offsets, centre_base, pre_centres):
    S = np.array([la.status for la in las])
    M = np.array([la.method for la in las], dtype=object)
    active, inactive = S == Status.ACTIVE, S == Status.INACTIVE
    status = np.full(S.shape[1], Status.UNKNOWN, dtype=np.int8)
    method = M[np.argmax(S == Status.UNKNOWN, axis=0), np.arange(S.shape[1])]
    stable_a, stable_i = active.all(axis=0), inactive.all(axis=0)
    status[stable_a], status[stable_i] = Status.ACTIVE, Status.INACTIVE
    joined = _joined_methods(M)
    method[stable_a | stable_i] = joined[stable_a | stable_i]
    pos = np.full(S.shape[1], -1, dtype=np.int64)
    neg = np.full(S.shape[1], -1, dtype=np.int64)
    unstable = (S == Status.UNSTABLE).any(axis=0)
    part = np.argmax(S == Status.UNSTABLE, axis=0)
    for p, la in enumerate(las):
        mine = unstable & (part == p)
        pos[mine], neg[mine] = la.witness_pos[mine] + offsets[p], la.witness_neg[mine] + offsets[p]
    mixed = ~unstable & active.any(axis=0) & inactive.any(axis=0)
    a_part, i_part = np.argmax(active, axis=0), np.argmax(inactive, axis=0)
    columns = np.arange(S.shape[1])
    checked = mixed & (pre_centres[a_part, columns] > 0) & (pre_centres[i_part, columns] < 0)
    pos[checked], neg[checked] = centre_base + a_part[checked], centre_base + i_part[checked]
    unstable = unstable | checked
    spared = ~(stable_a | stable_i | unstable | mixed) & (S == Status.NOT_NEEDED).any(axis=0) \
        & ~(S == Status.UNKNOWN).any(axis=0)
    status[spared] = Status.NOT_NEEDED
    method[spared] = M[np.argmax(S == Status.NOT_NEEDED, axis=0), np.arange(S.shape[1])][spared]
    status[unstable] = Status.UNSTABLE
    method[unstable] = "witness"
    method[mixed & ~checked] = Reason.UNION_CHECK   # cannot happen for sound proofs; kept unknown if it does
    lower = np.min([la.lower for la in las], axis=0)
    upper = np.max([la.upper for la in las], axis=0)
    return LayerAnalysis(las[0].layer_id, status, method, lower, upper, pos, neg)


def merge_analyses(network, domain, analyses) -> Analysis:
    """One :class:`Analysis` of ``network`` over the union of ``domain``'s boxes (see module doc) from
    ``analyses[i]`` over box ``i``."""
    if len(analyses) == 1:
        return analyses[0]
    centres = np.array([(p.lower + p.upper) / 2 for p in domain.parts])
    _, pre = network.forward(centres, return_preactivations=True)
    sizes = [len(a.witnesses) for a in analyses]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    centre_base = int(sum(sizes))
    layers = tuple(_merge_layer(k, las, offsets, centre_base, pre[k]) for k, las in enumerate(zip(*(a.layers for a in analyses))))
    witnesses = np.vstack([*(a.witnesses.reshape(-1, domain.size) for a in analyses), centres])
    times, stats = {}, {}
    for a in analyses:
        for key, value in a.times.items():
            times[key] = times.get(key, 0.0) + value
        for key, value in a.stats.items():
            stats[key] = stats.get(key, 0) + value
    stats["domain_parts"] = len(analyses)
    schedule = tuple(dict.fromkeys(name for a in analyses for name in a.schedule))   # every prover that ran, first seen first
    return Analysis(network, domain.hull, layers, witnesses, times, any(a.interrupted for a in analyses), stats,
                    analyses[0].options, schedule=schedule)
