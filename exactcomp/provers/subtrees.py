"""One stubborn neuron's branch and bound as several work units: subtrees of its split tree.

The root is split on the ``d`` unstable neurons that branch and bound's own score ranks first; each of
the ``2^d`` phase combinations is a :class:`SubtreeUnit` (the network, box, bounds, target and its root
splits) run on an executor (:mod:`exactcomp.executors`) with ``branch_and_bound(..., root_splits=...)``.
The neuron is proven when every subtree is: the merged certificate (all subtrees' leaves, each carrying
its root splits) covers the box and is re-checked in float64 like any other. A witness or a near-zero
value in any subtree holds for the neuron, and stops the other subtrees; otherwise it stays open.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np

from exactcomp.results import BabStatus


@dataclass
class SubtreeUnit:
    net: object
    box: object
    bounds: list
    target: tuple
    margin: float
    root_splits: tuple
    seconds: float | None
    device: str = "cpu"


def root_split_neurons(net, box, bounds, target, depth: int, device: str = "cpu") -> list[tuple[int, int]]:
    """The ``depth`` unstable neurons (layer, index) with the highest branching scores at the root."""
    import torch

    from exactcomp.bab.torch_bound import BoundEngine, initial_alpha

    k = target[0]
    engine = BoundEngine(net, box, bounds, target, device)
    dev = engine.device
    splits = [torch.zeros((1, len(lo)), dtype=torch.int8, device=dev) for lo, _ in bounds[:k]]
    alpha = [torch.as_tensor(a[None], device=dev) for a in initial_alpha(bounds, k)]
    beta = [torch.zeros((1, len(lo)), dtype=torch.float64, device=dev) for lo, _ in bounds[:k]]
    with torch.no_grad():
        _, _, scores = engine.bound(splits, alpha, beta, want_scores=True)
    ranked = sorted(((float(s[0, i]), j, int(i)) for j, s in enumerate(scores)
                     for i in np.flatnonzero(s[0].cpu().numpy() >= 0)), reverse=True)
    return [(j, i) for _, j, i in ranked[:depth]]


def subtree_units(net, box, bounds, target, margin, depth: int, seconds, device: str = "cpu") -> list[SubtreeUnit]:
    """The ``2^d`` subtrees of one target (fewer levels when fewer neurons can be split)."""
    neurons = root_split_neurons(net, box, bounds, target, depth, device)
    return [SubtreeUnit(net, box, bounds, target, margin, tuple((j, i, p) for (j, i), p in zip(neurons, phases)),
                        seconds, device)
            for phases in itertools.product((1, -1), repeat=len(neurons))]


def prove_subtree(unit: SubtreeUnit):
    """Run one subtree (in a worker); returns its :class:`~exactcomp.bab.engine.BabResult`."""
    from exactcomp.bab.engine import BabOptions, branch_and_bound

    deadline = float("inf") if unit.seconds is None else time.perf_counter() + unit.seconds
    return branch_and_bound(unit.net, unit.box, unit.bounds, unit.target, unit.margin, deadline=deadline,
                            options=BabOptions(device=unit.device), root_splits=unit.root_splits)


def merge_subtrees(target, bounds, margin, results):
    """``(status, certificate, points)`` of a target from its subtrees' results (see module doc)."""
    from exactcomp.bab.certificate import Certificate

    points = [r.points for r in sorted(results, key=lambda r: -r.best_value) if len(r.points)]   # best first
    points = np.vstack(points) if points else np.empty((0, 0))
    statuses = {r.status for r in results}
    for status in (BabStatus.WITNESS, BabStatus.NEAR_ZERO, BabStatus.OPEN):
        if status in statuses:
            return status, None, points
    leaves = [leaf for r in results for leaf in r.certificate.leaves]
    return BabStatus.PROVEN, Certificate(target, [tuple(map(np.asarray, b)) for b in bounds[:target[0]]], margin, leaves), points


def run_subtrees(executor, units, timeout=None) -> list:
    """The subtrees' results; once one is not proven (a witness, a near-zero value, out of time) the neuron
    cannot be proven, so the others are cancelled and only the results so far are returned."""
    results = []
    runs = executor.map_unordered(prove_subtree, units, timeout=timeout)
    try:
        for _, result in runs:
            results.append(result)
            if result.status != BabStatus.PROVEN:
                break
    finally:
        runs.close()   # cancels the subtrees still running
    return results


def prove_by_subtrees(executor, net, box, bounds, target, margin, depth: int, seconds, timeout=None, device="cpu"):
    """Split ``target``'s branch and bound into subtrees, run them on ``executor``, merge the results."""
    units = subtree_units(net, box, bounds, target, margin, depth, seconds, device)
    return merge_subtrees(target, bounds, margin, run_subtrees(executor, units, timeout))
