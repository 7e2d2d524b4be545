"""Which units to give up first: importance scores per unit of every ReLU node (low = given up first).

``logit_change`` (the default of ``exactcomp stabilize``): the first-order estimate of how much the logits
move when the unit is zeroed, ``Σ_x Σ_c (Σ_positions a_u(x) · ∂z_c(x)/∂a_u(x))²`` over up to 2,048 training
rows. Units already dead on the data cost nothing and go first. (The gradient of the distillation loss
vanishes at the start, where student = teacher, so a Taylor score of the loss would rank every unit alike.)

``magnitude``: the L2 norm of the unit's incoming weights (structured magnitude pruning, the baseline a user
would otherwise pick; :mod:`exactcomp.finetune.baselines`).
"""

from __future__ import annotations

import numpy as np
import torch

from exactcomp.registry import Registry


def logit_change_scores(graph, X: torch.Tensor, batch: int = 128, rows: int = 2048) -> dict:
    """``{relu node: score per unit}`` as the module doc says, over the first ``rows`` rows of ``X``."""
    totals = {}
    graph.keep_activations = True
    try:
        for i in range(0, min(len(X), rows), batch):
            logits = graph(X[i:i + batch])[0]
            acts = list(graph.activations)
            for c in range(logits.shape[1]):
                grads = torch.autograd.grad(logits[:, c].sum(), acts, retain_graph=c + 1 < logits.shape[1],
                                            allow_unused=True)
                for name, a, g in zip(graph.relu_names, acts, grads):
                    if g is None:
                        continue
                    change = (a * g).reshape(a.shape[0], a.shape[1], -1).sum(dim=2)   # per row and unit
                    totals[name] = totals.get(name, 0) + (change ** 2).sum(dim=0).detach().cpu().numpy()
    finally:
        graph.keep_activations = False
        graph.activations = []
    return {name: totals.get(name, np.zeros(1)) for name in graph.relu_names}


def magnitude_scores(graph, X: torch.Tensor, batch: int = 128, rows: int = 2048) -> dict:
    from exactcomp.finetune.baselines import magnitude_scores as scores

    return scores(graph, X[:rows])


SCORES = Registry("unit score", {"logit_change": logit_change_scores, "magnitude": magnitude_scores})
