"""One round's fine-tuning of :mod:`exactcomp.finetune.train`: epochs of

    loss = ‖z - z_teacher‖² / var(z_teacher) [+ cross-entropy with labels] + λ Σ_{u given up} relu(ū_u + δ)

with the given-up units masked, ``ū_u`` the interval upper bound of unit ``u``'s pre-activations over the
domain (:mod:`exactcomp.finetune.bounds`, maximal over a channel's positions), until every given-up unit has
``ū_u <= -δ`` (λ doubled while it does not)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from exactcomp.finetune.bounds import relu_bounds
from exactcomp.finetune.metrics import top1


def steps_per_epoch(run, options) -> int:
    return max(1, math.ceil(len(run.train) / options.batch))


def epochs_per_stretch(run, options) -> int:
    return max(options.epochs, math.ceil(options.min_steps / steps_per_epoch(run, options)))


def task_loss(logits, teacher, y, scale: float = 1.0):
    """Distillation: the squared distance to the teacher's logits over their variance ``scale`` (scale-free, and
    not flat where the logits are small, as a softmax KL is), plus cross-entropy with labels."""
    loss = ((logits - teacher) ** 2).mean() / scale
    return loss + F.cross_entropy(logits, y) if y is not None else loss


def fine_tune(run, masks, opt, options, deadline, advance) -> tuple:
    """At least ``options.epochs`` epochs and ``options.min_steps`` steps of the loss of the module doc; then,
    while some given-up unit is not proven dead by interval bounds, up to 4 more such stretches with λ doubled.
    Returns (every given-up unit proven dead, epochs run)."""
    graph, X, teacher, y = run.graph, run.X[run.train], run.teacher[run.train], run.y
    y = None if y is None else y[run.train]
    penalty = options.penalty
    scale = float(teacher.var()) or 1.0
    gen = torch.Generator().manual_seed(options.seed)
    per_epoch, epochs = steps_per_epoch(run, options), epochs_per_stretch(run, options)
    done = 0
    for stretch in range(5):
        for _ in range(epochs):
            perm = torch.randperm(len(X), generator=gen).to(X.device)
            for i in range(0, len(X), options.batch):
                idx = perm[i:i + options.batch]
                loss = task_loss(graph(X[idx])[0], teacher[idx], None if y is None else y[idx], scale)
                loss = loss + penalty * dead_penalty(graph, masks, run.lo, run.hi, options.margin)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if time.perf_counter() > deadline:
                    return all_dead(graph, masks, run.lo, run.hi, options.margin), done // per_epoch + 1
            done += per_epoch
            if advance is not None:
                advance(done, (stretch + 1) * epochs * per_epoch, progress_note(run, masks, options))
        if all_dead(graph, masks, run.lo, run.hi, options.margin):
            return True, done // per_epoch
        penalty *= 2
    return False, done // per_epoch


def progress_note(run, masks, options) -> str:
    """The bar's note: the masked validation metric and how many given-up units are proven dead so far."""
    with torch.no_grad():
        metric = top1(run.graph(run.X[run.val])[0], run.reference[run.val])
        given = dead = 0
        for name, b in relu_bounds(run.graph, run.lo, run.hi).items():
            gone = masks[name] == 0
            given += int(gone.sum())
            dead += int((unit_upper(b)[gone] <= -options.margin).sum())
    return f"val {metric:.4f}, dead {dead}/{given}"


def unit_upper(bounds) -> torch.Tensor:
    """Per unit (feature, or channel: max over positions) the interval upper bound over the domain's boxes."""
    upper = bounds.upper
    return upper.reshape(upper.shape[0], upper.shape[1], -1).amax(dim=(0, 2))


def dead_penalty(graph, masks, lo, hi, margin):
    total = 0.0
    for name, b in relu_bounds(graph, lo, hi).items():
        gone = masks[name] == 0
        if gone.any():
            total = total + torch.relu(unit_upper(b)[gone] + margin).sum()
    return total


def all_dead(graph, masks, lo, hi, margin) -> bool:
    with torch.no_grad():
        return all(bool((unit_upper(b)[masks[name] == 0] <= -margin).all())
                   for name, b in relu_bounds(graph, lo, hi).items())


@dataclass
class Snapshot:
    """The weights and masks of the last accepted round (or the start), to back off to."""

    weights: dict
    masks: dict
    fraction: float

    @classmethod
    def of(cls, graph, masks, fraction) -> "Snapshot":
        return cls({k: p.detach().clone() for k, p in graph.weights.items()},
                   {k: m.clone() for k, m in masks.items()}, fraction)

    def restore(self, graph, masks) -> None:
        with torch.no_grad():
            for k, p in graph.weights.items():
                p.copy_(self.weights[k])
        for k, m in masks.items():
            m.copy_(self.masks[k])
