"""Fine-tuning for provable stability: give up the least important units, make them provably dead over the
domain, and keep the accuracy (issue 21; the method is a first version, to be measured and improved).

A *unit* is what exact compression can remove: a feature of a dense ReLU layer, a whole channel of a
convolutional one (a channel is removed only when every position is dead). Rounds ``r = 1, 2, ...`` give up a
growing fraction ``f_r`` of the units of every ReLU node, those of lowest importance
(:mod:`exactcomp.finetune.scores`: by default the first-order estimate of the logits' change when the unit
is zeroed), and fine-tune with

    loss = ‖z - z_teacher‖² / var(z_teacher) [+ cross-entropy with labels] + λ Σ_{u given up} relu(ū_u + δ)

where the student's given-up units are masked to zero in its forward pass, ``ū_u`` is the interval upper
bound of unit ``u``'s pre-activations over the domain (:mod:`exactcomp.finetune.bounds`, maximal over a
channel's positions), δ a small margin and λ doubled while some given-up unit is not yet proven dead. Once
every given-up unit has ``ū_u <= -δ`` the mask changes nothing on the domain: the unmasked network, the
ONNX model written, computes the masked function there, and ``exactcomp compress`` removes those units
exactly. A round is accepted when that holds and the validation metric (accuracy with labels, top-1
agreement with the original without) stays within the budget; the last accepted round is the result. A
round that misses the budget sends the schedule back to the last accepted round (weights and masks) with
half the step, up to ``retries`` times. Units proven dead are written as structurally dead
(:mod:`exactcomp.finetune.prune`: incoming weights 0, pre-activation -1), which any verifier sees at once.
The record holds, per round, the validation metric, the per-class recall and the units and neurons stable
by interval bounds (:mod:`exactcomp.finetune.metrics`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from exactcomp.interrupts import held
from exactcomp.errors import DomainError
from exactcomp.finetune.allocation import ALLOCATIONS, unit_costs
from exactcomp.finetune.bounds import relu_bounds
from exactcomp.finetune.graph import TorchGraph
from exactcomp.finetune.metrics import paired_change_se, per_class_recall, stable_counts, top1, worst_class
from exactcomp.finetune.prune import make_dead_checked
from exactcomp.finetune.scores import SCORES
from exactcomp.finetune.tune import Snapshot, epochs_per_stretch, fine_tune, steps_per_epoch


@dataclass
class StabilizeOptions:
    """``max_accuracy_drop`` (points, with labels) or ``min_agreement`` (fraction, without) on the validation
    split (``val_fraction`` of the data, drawn with ``seed``); ``fractions``: the share of units given up in
    each round; ``epochs`` per round (at least ``min_steps`` optimiser steps, for small data sets);
    ``time_limit`` seconds for everything (None: none); ``score``: a name of
    :data:`exactcomp.finetune.scores.SCORES`; ``allocation``: a name of
    :data:`exactcomp.finetune.allocation.ALLOCATIONS` (how a round's units spread over the ReLU nodes); ``device``: torch device (``"cuda"`` where a GPU is);
    ``keep_all``: go on past the budget and keep every proven round's weights (``record.values``, for sweeps);
    ``retries``: after a round that misses the budget, go back to the last accepted round and try half the step
    (at most this many times in a row, and not for steps under 4 %); ``recovery``: before that, fine-tune a round
    whose units are proven dead but that misses the budget for up to this many more stretches of epochs (the
    network often recovers the accuracy the units took with them)."""

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
    score: str = "logit_change"
    allocation: str = "uniform"
    device: str = "cpu"
    keep_all: bool = False
    retries: int = 2
    recovery: int = 2


@dataclass
class StabilizeRecord:
    """What happened: the metric before (``recall_before`` per class, ``stable_before`` by interval bounds), one
    entry per round, the round chosen (None: none met the budget), ``values``: each round's weights when kept."""

    metric: str
    before: float
    classes: int
    recall_before: list
    stable_before: dict
    rounds: list = field(default_factory=list)
    chosen: int | None = None
    seconds: float = 0.0
    interrupted: bool = False
    stopped_by: str = "last round"
    warnings: list = field(default_factory=list)
    values: dict = field(default_factory=dict)


@dataclass
class _Run:
    """The tensors of one run, on the options' device."""

    graph: TorchGraph
    X: torch.Tensor
    teacher: torch.Tensor
    y: torch.Tensor | None
    reference: torch.Tensor
    train: np.ndarray
    val: np.ndarray
    lo: torch.Tensor
    hi: torch.Tensor
    start_costs: dict | None = None


def stabilize_graph(model, lower: np.ndarray, upper: np.ndarray, data: np.ndarray, labels: np.ndarray | None = None,
                    options: StabilizeOptions | None = None, progress=None, validation=None, on_round=None):
    """Fine-tune ``model`` (an onnx ModelProto whose first output is the logits) on ``data`` (rows shaped like its
    input, inside the boxes ``lower``/``upper``, one box per row of those arrays) as the module doc says.
    Returns ``(values, record)``: the trained float initializers of the chosen round (None if none met the
    budget) and the :class:`StabilizeRecord`. An interrupt (``KeyboardInterrupt``) ends the rounds and returns
    the last accepted one (``record.interrupted``). ``validation``: ``(data, labels or None)`` to measure the budget
    on instead of a split of ``data`` (e.g. held-out images the original model never saw). ``progress``: an
    object with ``phase(name, total) -> advance(done, total, note)`` (a bar per round, advanced every epoch);
    ``on_round(entry)`` is called after each round."""
    options = options or StabilizeOptions()
    t0 = time.perf_counter()
    deadline = math.inf if options.time_limit is None else t0 + options.time_limit
    run = _prepare(model, lower, upper, data, labels, options, validation)
    record = _record_before(run, options)
    floor = record.before - options.max_accuracy_drop / 100 if run.y is not None else options.min_agreement
    graph = run.graph
    with torch.no_grad():
        units = {name: b.upper.shape[1] for name, b in relu_bounds(graph, run.lo, run.hi).items()}
    masks = {name: torch.ones(units[name], dtype=torch.float64, device=run.X.device) for name in graph.relu_names}
    best, accepted = None, Snapshot.of(graph, masks, 0.0)
    opt = torch.optim.Adam(graph.parameters(), lr=options.lr)
    schedule, retries = list(options.fractions), 0
    try:   # Ctrl-C / SIGTERM (KeyboardInterrupt): the last accepted round stands
        while schedule:
            fraction = schedule.pop(0)
            if time.perf_counter() > deadline:
                record.stopped_by = "time limit"
                break
            r = len(record.rounds)
            entry = _play_round(run, options, record, (masks, units), fraction, (opt, progress, deadline, t0), floor)
            proven = entry["proven_dead"]
            meets = proven and entry[record.metric] >= floor - 1e-12
            if proven and options.keep_all:
                record.values[r + 1] = graph.initializer_values()
            if meets:
                with held():   # the weights and the round they belong to change together
                    best, record.chosen = graph.initializer_values(), r + 1
                accepted, retries = Snapshot.of(graph, masks, fraction), 0
            if on_round is not None:   # after the round is settled: a line that says it met the budget holds
                on_round(entry)
            if time.perf_counter() > deadline:
                record.stopped_by = "time limit"
                break
            if meets or (proven and options.keep_all):
                continue
            step = fraction - accepted.fraction
            if retries < options.retries and step > 0.04:   # back off: half the step, from the last accepted round
                retries += 1
                accepted.restore(graph, masks)
                opt = torch.optim.Adam(graph.parameters(), lr=options.lr)
                schedule.insert(0, accepted.fraction + step / 2)
                continue
            record.stopped_by = "budget" if proven else "units not proven dead"
            break
    except KeyboardInterrupt:
        record.interrupted, record.stopped_by = True, "interrupt"
    graph.masks = {}
    record.seconds = time.perf_counter() - t0
    return best, record


def _play_round(run, options, record, masks_units, fraction, context, floor: float) -> dict:
    """Give up ``fraction`` of the units, fine-tune, write the proven-dead ones; while the metric is under
    ``floor``, up to ``options.recovery`` more stretches of fine-tuning; the round's record entry."""
    (masks, units), (opt, progress, deadline, t0) = masks_units, context
    r = len(record.rounds)
    _give_up(run.graph, masks, units, fraction, options, run)
    advance = _phase(progress, f"round {r + 1}: {fraction:.0%} of units", run, options)
    proven, epochs = fine_tune(run, masks, opt, options, deadline, advance)
    for attempt in range(options.recovery + 1):
        if proven:
            _write_dead(run, masks, record)
        entry = _round_entry(run, options, record, r, fraction, masks, units, proven, epochs, t0)
        if (not proven or attempt == options.recovery or entry[record.metric] >= floor - 1e-12
                or time.perf_counter() > deadline):
            break
        advance = _phase(progress, f"round {r + 1}: recovery {attempt + 1}", run, options)
        proven, more = fine_tune(run, masks, opt, options, deadline, advance)
        epochs += more
    record.rounds.append(entry)
    return entry


def _give_up(graph, masks, units, fraction, options, run) -> None:
    """Mask the units of lowest score as the allocation rule (:mod:`exactcomp.finetune.allocation`) says."""
    graph.masks = masks
    scores = SCORES.load(options.score)(graph, run.X[run.train], options.batch)

    def costs() -> tuple:
        X = run.X[run.train]
        if run.start_costs is None:
            run.start_costs = unit_costs(graph, X, {name: torch.ones_like(m) for name, m in masks.items()})
        return unit_costs(graph, X, masks), run.start_costs

    ALLOCATIONS.load(options.allocation)(masks, units, fraction, scores, costs)


def _prepare(model, lower, upper, data, labels, options, validation) -> _Run:
    """The split (seeded ``val_fraction`` of the data, or the validation data given), the teacher's logits."""
    if validation is not None:
        data = np.concatenate([np.asarray(data), np.asarray(validation[0])])
        if labels is not None:
            labels = np.concatenate([np.asarray(labels), np.asarray(validation[1])])
    train, val = split(len(data), options, None if validation is None else len(validation[0]))
    device = torch.device(options.device)
    graph = TorchGraph(model).to(device)
    X = torch.as_tensor(np.asarray(data, np.float64), device=device)
    with torch.no_grad():
        teacher = torch.cat([graph(X[i:i + 1024])[0] for i in range(0, len(X), 1024)])
    y = torch.as_tensor(np.asarray(labels), device=device) if labels is not None else None
    lo = torch.as_tensor(np.asarray(lower, np.float64), device=device)
    hi = torch.as_tensor(np.asarray(upper, np.float64), device=device)
    return _Run(graph, X, teacher, y, y if y is not None else teacher.argmax(1), train, val, lo, hi)


def split(rows: int, options, given: int | None = None) -> tuple:
    """``(training rows, validation rows)``: the last ``given`` rows when validation data was given (appended to
    the data), else a seeded ``options.val_fraction`` of them."""
    if given is not None:
        return np.arange(rows - given), np.arange(rows - given, rows)
    order = np.random.default_rng(options.seed).permutation(rows)
    n_val = max(1, int(round(options.val_fraction * rows)))
    return order[n_val:], order[:n_val]


def _record_before(run: _Run, options) -> StabilizeRecord:
    """The original's validation metric, recall and stable counts; refuse labels the model does not follow."""
    classes = int(run.teacher.shape[1])
    before = top1(run.teacher[run.val], run.reference[run.val])
    if run.y is not None and before <= 1.5 / classes:
        raise DomainError(f"the original model's accuracy on the validation labels is {100 * before:.1f} %, at chance "
                          f"level for {classes} classes: labels that do not match the model's outputs?")
    reference = run.reference[run.val].cpu().numpy()
    recall = per_class_recall(run.teacher[run.val].argmax(1).cpu().numpy(), reference, classes)
    with torch.no_grad():
        stable = stable_counts(relu_bounds(run.graph, run.lo, run.hi), options.margin)
    record = StabilizeRecord("accuracy" if run.y is not None else "agreement", before, classes, recall, stable)
    if run.y is not None and before >= 0.995 and len(run.val) < len(run.X) and not _held_out(run):
        record.warnings.append(f"the original is {100 * before:.1f} % right on the validation split: if --data is "
                               "what it was trained on, the budget is measured on memorised rows and is hard to meet; "
                               "pass held-out inputs as validation data")
    return record


def _held_out(run: _Run) -> bool:
    """Validation rows given apart from the data (they are the last rows, in order)."""
    return bool(run.val[0] == len(run.X) - len(run.val) and np.all(np.diff(run.val) == 1))


def _phase(progress, name, run, options):
    if progress is None:
        return None
    return progress.phase(name, epochs_per_stretch(run, options) * steps_per_epoch(run, options))


def _round_entry(run, options, record, r, fraction, masks, units, proven, epochs, t0) -> dict:
    """The round's line of the record, on the real function (no masks), which the ONNX model written computes."""
    graph = run.graph
    graph.masks = {}
    with torch.no_grad():
        predicted = torch.cat([graph(run.X[run.val][i:i + 1024])[0] for i in range(0, len(run.val), 1024)]).argmax(1)
        stable = stable_counts(relu_bounds(graph, run.lo, run.hi), options.margin)
    reference = run.reference[run.val]
    recall = per_class_recall(predicted.cpu().numpy(), reference.cpu().numpy(), record.classes)
    worst = worst_class(recall)
    original = run.teacher[run.val].argmax(1)
    change_se = paired_change_se((original == reference).cpu().numpy(), (predicted == reference).cpu().numpy())
    return {"round": r + 1, "fraction": fraction,
            "units_given_up": int(sum(int((m == 0).sum()) for m in masks.values())),
            "units": int(sum(units.values())), "proven_dead": bool(proven), "epochs": epochs,
            record.metric: float((predicted == reference).double().mean()), "change_se": change_se, "recall": recall,
            "worst_class": {"class": worst[0], "recall": worst[1]}, "stable": stable,
            "seconds": time.perf_counter() - t0}


def _write_dead(run: _Run, masks, record) -> None:
    """The given-up units written as structurally dead (:func:`exactcomp.finetune.prune.make_dead_checked`)."""
    graph = run.graph
    graph.masks = {}
    warning = make_dead_checked(graph, masks, run.X[run.val])
    if warning:
        record.warnings.append(warning)
    graph.masks = masks
