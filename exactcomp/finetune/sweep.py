"""``exactcomp stabilize --sweep N``: the accuracy/size trade-off in one run, beside the two baselines a user would
otherwise pick, every point compressed *exactly* (parameters counted after ``exactcomp compress``).

- **stabilize**: the rounds of :mod:`exactcomp.finetune.train` at ``N`` fractions evenly spread over
  [0.2, 0.94], run past the budget (``keep_all``); each round whose given-up units are proven dead is a point.
- **magnitude**: the same rounds and fine-tuning with the units of smallest incoming weight norm given up,
  the same fraction of each layer (structured magnitude pruning, gradual, made provably dead the same way):
  isolates the choice of units.
- **L1 from scratch** (the NeurIPS 2021 paper's recipe): the same graph reinitialised and trained with
  cross-entropy + ``l1 · Σ|W|`` for ``baseline_epochs`` epochs at ``N`` strengths ``l1`` spread
  geometrically over [1e-4, 3e-3] (without labels, on the original's predictions).

A point's metric is on the same validation rows as the budget; its size is ``parameters_after`` of an exact
compression over the domain with ``compress_time_limit`` seconds (its unknown neurons are kept, and counted).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

#: Range of the sweep's fractions of units given up, and of the L1 baseline's strengths.
FRACTIONS, L1_RANGE = (0.2, 0.94), (1e-4, 3e-3)


@dataclass(frozen=True)
class SweepPoint:
    """One model of the sweep: ``method`` (stabilize, magnitude, l1_scratch), its ``strength`` (fraction given up,
    or l1), ``metric`` on the validation rows, ``parameters`` after exact compression, ``unknown`` neurons."""

    method: str
    strength: float
    metric: float
    parameters: int
    unknown: int
    meets_budget: bool
    compress_seconds: float


def fractions(points: int) -> tuple:
    return tuple(float(f) for f in np.linspace(*FRACTIONS, points)) if points > 1 else (FRACTIONS[0],)


def l1_strengths(points: int) -> tuple:
    return tuple(float(v) for v in np.geomspace(*L1_RANGE, points)) if points > 1 else (1e-3,)


def sweep(model, data, labels, domain, *, points: int, val_data=None, val_labels=None, baseline_epochs: int = 10,
          compress_time_limit: float = 60.0, on_point=None, progress=None, **option_fields):
    """Run the three methods of the module doc. Returns ``(result, points)``: the stabilize
    :class:`~exactcomp.finetune.api.StabilizeResult` (its chosen round meets the budget, as without a sweep) and
    the list of :class:`SweepPoint` (``on_point(point)`` is called as each is measured)."""
    from exactcomp.finetune.api import stabilize

    score = option_fields.pop("score", None)          # the stabilize curve's; the magnitude curve's is "magnitude"
    allocation = option_fields.pop("allocation", None)   # likewise; weight norms of two layers do not compare
    common = dict(val_data=val_data, val_labels=val_labels, progress=progress, **option_fields)
    found = []

    def add(point):
        found.append(point)
        if on_point is not None:
            on_point(point)

    own = {k: v for k, v in (("score", score), ("allocation", allocation)) if v}
    result = stabilize(model, data, labels, domain, fractions=fractions(points), keep_all=True, **own, **common)
    _rounds(result, "stabilize", compress_time_limit, add)
    magnitude = stabilize(model, data, labels, domain, fractions=fractions(points), keep_all=True, score="magnitude",
                          **common)
    _rounds(magnitude, "magnitude", compress_time_limit, add)
    _l1_scratch(result, data, labels, val_data, val_labels, points, baseline_epochs, compress_time_limit, add)
    return result, found


def _floor(result) -> float:
    r, o = result.record, result.options
    return r.before - o.max_accuracy_drop / 100 if r.metric == "accuracy" else o.min_agreement


def _compressed(result, model, time_limit) -> tuple:
    """``(parameters after, unknown neurons, seconds)`` of the exact compression of ``model`` over the domain."""
    from exactcomp.api import compress
    from exactcomp.io.onnx_import import import_model

    t0 = time.perf_counter()
    small = compress(import_model(model, source="sweep point"), result.domain, time_limit=time_limit)
    return small.parameters_after, small.analysis.model_totals()["unknown"], time.perf_counter() - t0


def _rounds(result, method: str, time_limit, add) -> None:
    from exactcomp.finetune.graph import with_weights

    r = result.record
    for number, values in sorted(r.values.items()):
        entry = r.rounds[number - 1]
        parameters, unknown, seconds = _compressed(result, with_weights(result.original, values), time_limit)
        add(SweepPoint(method, entry["fraction"], entry[r.metric], parameters, unknown,
                       entry[r.metric] >= _floor(result) - 1e-12, seconds))


def _l1_scratch(result, data, labels, val_data, val_labels, points, epochs, time_limit, add) -> None:
    """Baseline (a): reinitialise and train with L1 on the stabilize run's training rows; measure on its validation."""
    import torch

    from exactcomp.finetune.api import checked_data
    from exactcomp.finetune.baselines import train_l1_from_scratch
    from exactcomp.finetune.graph import TorchGraph, with_weights
    from exactcomp.finetune.metrics import top1
    from exactcomp.finetune.train import split
    from exactcomp.io.onnx_import import import_model

    net = import_model(result.source or result.original)
    X, y = checked_data(net, result.domain, data, labels, "data")
    if val_data is not None:
        V, v = checked_data(net, result.domain, val_data, val_labels, "validation data")
        X, y = np.concatenate([X, V]), None if y is None else np.concatenate([y, v])
    train, val = split(len(X), result.options, None if val_data is None else len(V))
    X = X.reshape(-1, *net.input.shape)
    teacher = TorchGraph(result.original)
    with torch.no_grad():
        predicted = teacher(torch.as_tensor(X))[0].argmax(1).numpy()
    targets = predicted if y is None else y   # without labels: learn the original's predictions
    reference = torch.as_tensor(targets[val])
    for l1 in l1_strengths(points):
        values = train_l1_from_scratch(result.original, X[train], targets[train], l1, epochs,
                                       seed=result.options.seed, device=result.options.device)
        model = with_weights(result.original, values)
        with torch.no_grad():
            metric = top1(TorchGraph(model)(torch.as_tensor(X[val]))[0], reference)
        parameters, unknown, seconds = _compressed(result, model, time_limit)
        add(SweepPoint("l1_scratch", l1, metric, parameters, unknown, metric >= _floor(result) - 1e-12, seconds))


def table(points: list, metric: str, before: float, parameters_before: int) -> str:
    """The Pareto table (markdown), by method then size; ``*`` marks the points no other point beats in both
    size and metric."""
    front = {p for p in points if not any(q.parameters <= p.parameters and q.metric >= p.metric and
                                          (q.parameters, q.metric) != (p.parameters, p.metric) for q in points)}
    lines = [f"| method | strength | {metric} | parameters after exact compression | unknown | meets budget |",
             "|---|---|---|---|---|---|",
             f"| original | - | {100 * before:.2f} % | {parameters_before:,} | - | yes |"]
    for p in sorted(points, key=lambda p: (p.method, -p.parameters)):
        lines.append(f"| {p.method} | {p.strength:.3g} | {100 * p.metric:.2f} % | {p.parameters:,} "
                     f"({100 * (1 - p.parameters / parameters_before):.1f} % removed){' *' if p in front else ''} | "
                     f"{p.unknown} | {'yes' if p.meets_budget else 'no'} |")
    return "\n".join(lines)


def as_json(points: list) -> list:
    return [asdict(p) for p in points]
