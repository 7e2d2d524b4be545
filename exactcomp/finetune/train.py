"""Fine-tuning for provable stability: give up the least important units, make them provably dead over the
domain, and keep the accuracy (issue 21; the method is a first version, to be measured and improved).

A *unit* is what exact compression can remove: a feature of a dense ReLU layer, a whole channel of a
convolutional one (a channel is removed only when every position is dead). Rounds ``r = 1, 2, ...`` give up a
growing fraction ``f_r`` of the units of every ReLU node, those of lowest importance (the first-order
estimate of the logits' change when the unit is zeroed, ``Σ_x Σ_c (Σ_positions a_u(x) ∂z_c(x)/∂a_u(x))²`` on
the training data: units already dead on the data cost nothing and go first), and fine-tune with

    loss = ‖z - z_teacher‖² / var(z_teacher) [+ cross-entropy with labels] + λ Σ_{u given up} relu(ū_u + δ)

where the student's given-up units are masked to zero in its forward pass, ``ū_u`` is the interval upper
bound of unit ``u``'s pre-activations over the domain (:mod:`exactcomp.finetune.bounds`, maximal over a
channel's positions), δ a small margin and λ doubled while some given-up unit is not yet proven dead. Once
every given-up unit has ``ū_u <= -δ`` the mask changes nothing on the domain: the unmasked network, the
ONNX model written, computes the masked function there, and ``exactcomp compress`` removes those units
exactly. A round is accepted when that holds and the validation metric (accuracy with labels, top-1
agreement with the original without) stays within the budget; the last accepted round is the result.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from exactcomp.cli.signals import held
from exactcomp.finetune.bounds import relu_bounds
from exactcomp.finetune.graph import TorchGraph


@dataclass
class StabilizeOptions:
    """``max_accuracy_drop`` (points, with labels) or ``min_agreement`` (fraction, without) on the validation
    split (``val_fraction`` of the data, drawn with ``seed``); ``fractions``: the share of units given up in
    each round; ``epochs`` per round (at least ``min_steps`` optimiser steps, for small data sets);
    ``time_limit`` seconds for everything (None: none)."""

    max_accuracy_drop: float = 0.5
    min_agreement: float = 0.99
    val_fraction: float = 0.2
    seed: int = 0
    fractions: tuple = (0.2, 0.35, 0.5, 0.6, 0.7, 0.78, 0.85, 0.9, 0.94)
    epochs: int = 3
    min_steps: int = 150
    lr: float = 1e-3
    batch: int = 128
    margin: float = 1e-3
    penalty: float = 1e-2
    time_limit: float | None = 300.0


@dataclass
class StabilizeRecord:
    """What happened: the metric before, one entry per round, the round chosen (None: none met the budget)."""

    metric: str
    before: float
    rounds: list = field(default_factory=list)
    chosen: int | None = None
    seconds: float = 0.0
    interrupted: bool = False


def _unit_upper(bounds) -> torch.Tensor:
    """Per unit (feature, or channel: max over positions) the interval upper bound over the domain's boxes."""
    upper = bounds.upper
    return upper.reshape(upper.shape[0], upper.shape[1], -1).amax(dim=(0, 2))


def _metric(logits: torch.Tensor, reference: torch.Tensor) -> float:
    return float((logits.argmax(1) == reference).double().mean())


def stabilize_graph(model, lower: np.ndarray, upper: np.ndarray, data: np.ndarray, labels: np.ndarray | None = None,
                    options: StabilizeOptions | None = None, progress=None, validation=None):
    """Fine-tune ``model`` (an onnx ModelProto whose first output is the logits) on ``data`` (rows shaped like its
    input, inside the boxes ``lower``/``upper``, one box per row of those arrays) as the module doc says.
    Returns ``(values, record)``: the trained float initializers of the chosen round (None if none met the
    budget) and the :class:`StabilizeRecord`. An interrupt (``KeyboardInterrupt``) ends the rounds and returns
    the last accepted one (``record.interrupted``). ``validation``: ``(data, labels or None)`` to measure the budget
    on instead of a split of ``data`` (e.g. held-out images the original model never saw)."""
    options = options or StabilizeOptions()
    t0 = time.perf_counter()
    deadline = math.inf if options.time_limit is None else t0 + options.time_limit
    rng = np.random.default_rng(options.seed)
    order = rng.permutation(len(data))
    n_val = max(1, int(round(options.val_fraction * len(data))))
    val, train = order[:n_val], order[n_val:]
    if validation is not None:
        data = np.concatenate([np.asarray(data), np.asarray(validation[0])])
        if labels is not None:
            labels = np.concatenate([np.asarray(labels), np.asarray(validation[1])])
        val, train = np.arange(len(data) - len(validation[0]), len(data)), np.arange(len(data) - len(validation[0]))
    graph = TorchGraph(model)
    X = torch.as_tensor(np.asarray(data, np.float64))
    lo, hi = torch.as_tensor(np.asarray(lower, np.float64)), torch.as_tensor(np.asarray(upper, np.float64))
    with torch.no_grad():
        teacher = torch.cat([graph(X[i:i + 1024])[0] for i in range(0, len(X), 1024)])
    y = torch.as_tensor(labels) if labels is not None else None
    reference = y if y is not None else teacher.argmax(1)
    before = _metric(teacher[val], reference[val])
    floor = before - options.max_accuracy_drop / 100 if y is not None else options.min_agreement
    record = StabilizeRecord("accuracy" if y is not None else "agreement", before)
    relus = graph.relu_names
    with torch.no_grad():
        units = {name: b.upper.shape[1] for name, b in relu_bounds(graph, lo, hi).items()}
    masks = {name: torch.ones(units[name], dtype=torch.float64) for name in relus}
    best = None
    opt = torch.optim.Adam(graph.parameters(), lr=options.lr)
    y_train = y[train] if y is not None else None
    try:   # Ctrl-C / SIGTERM (KeyboardInterrupt): the last accepted round stands
        for r, fraction in enumerate(options.fractions):
            if time.perf_counter() > deadline:
                break
            graph.masks = masks
            scores = _scores(graph, X[train], teacher[train], y_train, options)
            for name in relus:
                alive = np.flatnonzero(masks[name].numpy() > 0)
                target = min(int(fraction * units[name]), units[name] - 1)
                give_up = max(0, target - (units[name] - alive.size))
                if give_up:
                    masks[name][alive[np.argsort(scores[name][alive])[:give_up]]] = 0.0
            proven = _fine_tune(graph, masks, X[train], teacher[train], y_train, lo, hi, opt, options, deadline)
            graph.masks = {}   # the real function, which the ONNX model written computes
            with torch.no_grad():
                metric = _metric(graph(X[val])[0], reference[val])
            entry = {"round": r + 1, "fraction": fraction,
                     "units_given_up": int(sum(int((m == 0).sum()) for m in masks.values())),
                     "units": int(sum(units.values())), "proven_dead": bool(proven), record.metric: metric,
                     "seconds": time.perf_counter() - t0}
            record.rounds.append(entry)
            if progress is not None:
                progress(entry)
            if not (proven and metric >= floor - 1e-12):
                break
            with held():   # the weights and the round they belong to change together
                best, record.chosen = graph.initializer_values(), r + 1
    except KeyboardInterrupt:
        record.interrupted = True
    graph.masks = {}
    record.seconds = time.perf_counter() - t0
    return best, record


def _scores(graph, X, teacher, y, options) -> dict:
    """Importance of each unit: the first-order estimate of how much the logits move when the unit is zeroed,
    ``Σ_x Σ_c (Σ_positions a_u(x) · ∂z_c(x)/∂a_u(x))²`` over up to 2,048 training rows. (The gradient of the
    distillation loss vanishes at the start, where the student is the teacher, so a Taylor score of the loss
    would rank every unit alike.)"""
    totals = {}
    graph.keep_activations = True
    try:
        for i in range(0, min(len(X), 2048), options.batch):
            logits = graph(X[i:i + options.batch])[0]
            acts = list(graph.activations)
            for c in range(logits.shape[1]):
                grads = torch.autograd.grad(logits[:, c].sum(), acts, retain_graph=c + 1 < logits.shape[1],
                                            allow_unused=True)
                for name, a, g in zip(graph.relu_names, acts, grads):
                    if g is None:
                        continue
                    change = (a * g).reshape(a.shape[0], a.shape[1], -1).sum(dim=2)   # per row and unit
                    totals[name] = totals.get(name, 0) + (change ** 2).sum(dim=0).detach().numpy()
    finally:
        graph.keep_activations = False
    return {name: totals.get(name, np.zeros(1)) for name in graph.relu_names}


def _task_loss(logits, teacher, y, scale: float = 1.0):
    """Distillation: the squared distance to the teacher's logits over their variance ``scale`` (scale-free, and
    not flat where the logits are small, as a softmax KL is), plus cross-entropy with labels."""
    loss = ((logits - teacher) ** 2).mean() / scale
    return loss + F.cross_entropy(logits, y) if y is not None else loss


def _fine_tune(graph, masks, X, teacher, y, lo, hi, opt, options, deadline) -> bool:
    """At least ``options.epochs`` epochs and ``options.min_steps`` steps of the loss of the module doc; then,
    while some given-up unit is not proven dead by interval bounds, up to 4 more such stretches with λ doubled.
    True when every given-up unit is proven dead."""
    penalty = options.penalty
    scale = float(teacher.var()) or 1.0
    gen = torch.Generator().manual_seed(options.seed)
    steps_per_epoch = max(1, math.ceil(len(X) / options.batch))
    epochs = max(options.epochs, math.ceil(options.min_steps / steps_per_epoch))
    for stretch in range(5):
        for _ in range(epochs):
            perm = torch.randperm(len(X), generator=gen)
            for i in range(0, len(X), options.batch):
                idx = perm[i:i + options.batch]
                loss = _task_loss(graph(X[idx])[0], teacher[idx], None if y is None else y[idx], scale)
                loss = loss + penalty * _dead_penalty(graph, masks, lo, hi, options.margin)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if time.perf_counter() > deadline:
                    return _all_dead(graph, masks, lo, hi, options.margin)
        if _all_dead(graph, masks, lo, hi, options.margin):
            return True
        penalty *= 2
    return False


def _dead_penalty(graph, masks, lo, hi, margin):
    total = 0.0
    for name, b in relu_bounds(graph, lo, hi).items():
        gone = masks[name] == 0
        if gone.any():
            total = total + torch.relu(_unit_upper(b)[gone] + margin).sum()
    return total


def _all_dead(graph, masks, lo, hi, margin) -> bool:
    with torch.no_grad():
        return all(bool((_unit_upper(b)[masks[name] == 0] <= -margin).all())
                   for name, b in relu_bounds(graph, lo, hi).items())
