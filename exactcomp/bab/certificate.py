"""The certificate of a branch-and-bound proof (:mod:`exactcomp.bab.engine`) and its independent check.

A certificate lists the closed leaves of the split tree: for each, the phases fixed on neurons of
the layers before the target, the slopes α and the multipliers β. Any ``α ∈ [0, 1]``, ``β >= 0``
gives a valid bound on its leaf (weak duality, :mod:`exactcomp.bab.split_bounds`), so the check trusts no
number the optimiser produced: it recomputes every leaf bound in float64 (widened for rounding),
requires each to be ``<= -margin``, and requires the leaves to cover the box (:func:`covers_box`).
The pre-activation bounds the certificate was made with are part of it (they are the proofs of the
earlier layers, checked when those were made).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from exactcomp.bab.split_bounds import split_bound


@dataclass
class Leaf:
    """A closed subdomain: ``splits[j]`` as (neuron indices, phases), α and β of layers < k (float32)."""

    splits: list
    alpha: list
    beta: list


@dataclass
class Certificate:
    """The closed leaves of a finished branch and bound; :meth:`check` re-verifies it."""

    target: tuple
    bounds: list
    margin: float
    leaves: list = field(default_factory=list)

    def check(self, net, box) -> bool:
        """Re-verify the proof in float64 from this certificate alone (:func:`check_certificate`)."""
        return check_certificate(net, box, self)



def check_certificate(net, box, certificate: Certificate, batch: int = 4096) -> bool:
    """Re-verify a branch-and-bound proof from its certificate alone, in float64: every leaf's bound
    (:func:`split_bound`, widened for rounding) is ``<= -margin``, and the leaves cover the box."""
    k = certificate.target[0]
    leaves = certificate.leaves
    if not leaves:
        return False
    widths = [len(lo) for lo, _ in certificate.bounds]
    if len(widths) != k:
        return False
    for start in range(0, len(leaves), batch):
        chunk = leaves[start:start + batch]
        splits = [np.zeros((len(chunk), w), dtype=np.int8) for w in widths]
        alpha = [np.zeros((len(chunk), w)) for w in widths]
        beta = [np.zeros((len(chunk), w)) for w in widths]
        for r, leaf in enumerate(chunk):
            for j in range(k):
                idx, phase = leaf.splits[j]
                splits[j][r, idx] = phase
                alpha[j][r] = leaf.alpha[j]
                beta[j][r, idx] = leaf.beta[j]
        bound = split_bound(net, box, certificate.bounds, certificate.target, splits, alpha, beta)
        if not np.all(bound <= -certificate.margin):
            return False
    return covers_box([{(j, int(i)): int(p) for j in range(k) for i, p in zip(*leaf.splits[j])} for leaf in leaves])


def covers_box(leaves: list[dict]) -> bool:
    """Whether subdomains (each a map ``neuron -> phase ±1``) cover the whole box: some leaf equals the
    current node, or a neuron that every remaining leaf fixes splits them into two covered halves."""
    from collections import Counter

    stack = [(list(range(len(leaves))), 0)]
    while stack:
        ids, depth = stack.pop()
        if not ids:
            return False
        if any(len(leaves[i]) == depth for i in ids):
            continue
        counts = Counter(key for i in ids for key in leaves[i])
        fixed_here = {key for key, n in counts.items() if n == len(ids)}
        # keys fixed on the path to this node are in every leaf too; the split key is one that is not
        # yet used on the path: the path's keys all have the same phase in every leaf of this node
        path = {key for key in fixed_here if len({leaves[i][key] for i in ids}) == 1}
        choices = sorted(fixed_here - path)
        if not choices:
            return False
        key = choices[0]
        stack.append(([i for i in ids if leaves[i][key] > 0], depth + 1))
        stack.append(([i for i in ids if leaves[i][key] < 0], depth + 1))
    return True
