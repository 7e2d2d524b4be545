"""How a round of :mod:`exactcomp.finetune.train` spreads the units it gives up over the ReLU nodes.

``uniform``: every ReLU node gives up the same ``fraction`` of its units, those of lowest score (at least one
unit of each node stays).

``cost`` (layer-wise budgets chosen by the scores, as a knapsack): a unit ``u`` *holds* ``c_u`` parameters, the
entries of the model that only matter through it: its incoming weights and bias (a row of a dense layer, a
channel's kernel, its batch-norm entries) and its outgoing ones (a column of the next dense layer, the slices of
the next convolution, a dense reader's columns for every position). ``c_u`` is measured, for any graph, as the
number of parameter entries whose gradient on a batch of training rows is nonzero with the unit alive and zero
with it masked (one backward pass per unit). The round gives up units, over all nodes at once, in increasing
order of ``s_u / c_u`` (the score, an estimate of the loss the unit's loss costs, per parameter it frees) until
the units given up so far held ``fraction`` of what all units held at the start. A first dense layer on 784
inputs holds ~8 times what a second one of 100 units does per unit, so it gives up more of its units for the
same accuracy. Scores must be comparable across nodes (``logit_change``, ``ablation``; not ``magnitude``,
whose weight norms live on each layer's own scale: that score keeps ``uniform``). At least one unit of each
node stays.
"""

from __future__ import annotations

import numpy as np
import torch

from exactcomp.registry import Registry

#: Training rows of the batch that measures what each unit holds.
COST_ROWS = 256


def give_up_uniform(masks: dict, units: dict, fraction: float, scores: dict, costs) -> None:
    """Mask the units of lowest score until ``fraction`` of each ReLU node's units are given up (``costs``
    unused)."""
    for name, mask in masks.items():
        alive = np.flatnonzero(mask.cpu().numpy() > 0)
        target = min(int(fraction * units[name]), units[name] - 1)
        give_up = max(0, target - (units[name] - alive.size))
        if give_up:
            mask[alive[np.argsort(scores[name][alive], kind="stable")[:give_up]]] = 0.0


def give_up_by_cost(masks: dict, units: dict, fraction: float, scores: dict, costs) -> None:
    """The ``cost`` rule of the module doc; ``costs()`` gives ``(now, at_start)``: ``{node: parameters each unit
    holds}`` with the current masks, and with none (what ``fraction`` is a fraction of)."""
    now, start = costs()
    total = sum(float(c.sum()) for c in start.values())
    freed = sum(float(start[name][mask.cpu().numpy() == 0].sum()) for name, mask in masks.items())
    candidates = []
    for name, mask in masks.items():
        alive = np.flatnonzero(mask.cpu().numpy() > 0)
        ratio = np.asarray(scores[name], float)[alive] / np.maximum(now[name][alive], 1.0)
        candidates += [(r, name, int(u)) for r, u in zip(ratio, alive)]
    left = {name: int((mask > 0).sum()) for name, mask in masks.items()}
    for _, name, u in sorted(candidates, key=lambda c: c[0]):
        if freed >= fraction * total:
            break
        if left[name] <= 1:
            continue
        masks[name][u] = 0.0
        left[name] -= 1
        freed += float(start[name][u])


def unit_costs(graph, X: torch.Tensor, masks: dict) -> dict:
    """``{relu node: parameters each unit holds}`` under ``masks`` (module doc), on the first :data:`COST_ROWS`
    rows of ``X``; a masked unit holds 0."""
    X = X[:COST_ROWS]
    params = list(graph.parameters())
    saved = graph.masks
    try:
        graph.masks = {name: m.clone() for name, m in masks.items()}
        rng = np.random.default_rng(0)
        weights = []

        def support() -> list:
            out = graph(X)[0].reshape(len(X), -1)
            if not weights:   # a fixed random direction, so that no output's gradient cancels another's
                weights.append(torch.as_tensor(rng.standard_normal(out.shape[1]), dtype=out.dtype, device=out.device))
            loss = (out * weights[0]).sum()
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            return [torch.zeros_like(p, dtype=torch.bool) if g is None else g != 0 for p, g in zip(params, grads)]

        base = support()
        costs = {}
        for name in graph.relu_names:
            mask = graph.masks[name]
            cost = np.zeros(mask.numel())
            for u in np.flatnonzero(mask.cpu().numpy() > 0):
                mask[u] = 0.0
                cost[u] = sum(int((b & ~g).sum()) for b, g in zip(base, support()))
                mask[u] = 1.0
            costs[name] = cost
        return costs
    finally:
        graph.masks = saved


ALLOCATIONS = Registry("allocation", {"uniform": give_up_uniform, "cost": give_up_by_cost})
