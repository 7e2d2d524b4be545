"""Which units to give up first: importance scores per unit of every ReLU node (low = given up first).

``logit_change`` (the default of ``exactcomp stabilize``): the first-order estimate of how much the logits
move when the unit is zeroed, ``Σ_x Σ_c (Σ_positions a_u(x) · ∂z_c(x)/∂a_u(x))²`` over up to 2,048 training
rows. Units already dead on the data cost nothing and go first. (The gradient of the distillation loss
vanishes at the start, where student = teacher, so a Taylor score of the loss would rank every unit alike.)

``ablation``: what zeroing the unit really does, one unit at a time: ``Σ_x ‖z(x) - z_u(x)‖²`` over up to 512 training
rows, ``z_u`` the logits with unit ``u`` masked as well (one forward pass per unit still alive; exact where
``logit_change`` is a first-order estimate, and it sees units whose effect only shows past a ReLU kink).

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


@torch.no_grad()
def ablation_scores(graph, X: torch.Tensor, batch: int = 128, rows: int = 512) -> dict:
    """``{relu node: score per unit}``: the squared change of the logits over the first ``rows`` rows of ``X`` when
    the unit is masked too (module doc); units masked already score 0."""
    X = X[:rows]
    reference = torch.cat([graph(X[i:i + batch])[0] for i in range(0, len(X), batch)])
    out = {}
    for name in graph.relu_names:
        original = graph.masks[name]           # set by the caller, one entry per unit
        scores = np.zeros(original.numel())
        try:
            for u in np.flatnonzero(original.cpu().numpy() > 0):
                trial = original.clone()
                trial[u] = 0.0
                graph.masks[name] = trial
                changed = torch.cat([graph(X[i:i + batch])[0] for i in range(0, len(X), batch)])
                scores[u] = float(((changed - reference) ** 2).sum())
        finally:
            graph.masks[name] = original
        out[name] = scores
    return out


SCORES = Registry("unit score", {"logit_change": logit_change_scores, "ablation": ablation_scores,
                                 "magnitude": magnitude_scores})
