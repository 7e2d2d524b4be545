"""Stability analysis: every hidden neuron ends stably active, stably inactive, unstable or unknown.

* stably inactive: a proof that ``g <= 0`` on the whole box (``upper <= 0``), so ``relu(g) = 0``;
* stably active: a proof that ``g >= 0`` on the box (``lower >= 0``), so ``relu(g) = g``;
* unstable: two witness inputs inside the box with ``g > 0`` and ``g < 0`` (float64 forward pass);
* unknown: neither (for example, a time limit or an interrupt); unknown neurons are kept.

``method`` records how each neuron was decided: ``interval`` or ``symbolic`` bounds, ``witness``.
A neuron whose bounds are exactly ``[0, 0]`` is reported inactive.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

import numpy as np

from .bounds import LayerBounds, compute_bounds
from .domain import Box
from .network import Network
from .witnesses import WitnessTracker, gradient_search, sign_corners


class Status(enum.IntEnum):
    UNKNOWN = 0
    ACTIVE = 1
    INACTIVE = 2
    UNSTABLE = 3

    @property
    def label(self) -> str:
        return {0: "unknown", 1: "stably_active", 2: "stably_inactive", 3: "unstable"}[int(self)]


@dataclass(frozen=True, eq=False)
class LayerAnalysis:
    """Per-neuron results for one hidden layer (arrays indexed by original neuron index).

    ``witness_pos/neg`` index rows of :attr:`Analysis.witnesses` (``-1`` when none).
    """

    layer_id: int
    status: np.ndarray
    method: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    witness_pos: np.ndarray
    witness_neg: np.ndarray

    def count(self, status: Status) -> int:
        return int(np.sum(self.status == status))

    @property
    def neurons(self) -> int:
        return self.status.size

    def methods(self) -> dict[str, int]:
        names, counts = np.unique(self.method[self.method != ""], return_counts=True)
        return {str(n): int(c) for n, c in zip(names, counts)}


@dataclass(frozen=True, eq=False)
class Analysis:
    """The stability of every hidden neuron of ``network`` over ``box``, with witness points."""

    network: Network
    box: Box
    layers: tuple[LayerAnalysis, ...]
    witnesses: np.ndarray
    times: dict = field(default_factory=dict)
    interrupted: bool = False

    def totals(self) -> dict[str, int]:
        return {s.label: sum(layer.count(s) for layer in self.layers) for s in Status}

    def layer(self, layer_id: int) -> LayerAnalysis:
        return self.layers[layer_id - 1]


@dataclass
class AnalysisOptions:
    """Knobs of :func:`analyze`; the defaults suit networks of a few thousand neurons."""

    symbolic: bool = True
    random_points: int = 2048
    gradient_steps: int = 40
    gradient_restarts: int = 2
    seed: int = 0
    samples: np.ndarray | None = None


def decide_by_bounds(bounds: LayerBounds):
    """Initial ``(status, method)`` arrays of a layer from its bounds (undecided neurons: UNKNOWN, "")."""
    status = np.full(bounds.lower.size, Status.UNKNOWN, dtype=np.int8)
    method = np.full(bounds.lower.size, "", dtype=object)
    inactive, active = bounds.upper <= 0, (bounds.lower >= 0) & ~(bounds.upper <= 0)
    status[inactive], status[active] = Status.INACTIVE, Status.ACTIVE
    by_interval = (bounds.interval_upper <= 0) | (bounds.interval_lower >= 0)
    method[(inactive | active) & by_interval] = "interval"
    method[(inactive | active) & ~by_interval] = "symbolic"
    return status, method


def analyze(net: Network, box: Box, options: AnalysisOptions | None = None, progress=None) -> Analysis:
    """Prove stability by bounds and find witnesses of instability for the rest.

    ``progress``, when given, is an object with ``phase(name, total)`` returning a callable
    ``advance(done, total, note="")``; the CLI passes a rich display. Ctrl-C during the witness
    search stops it and returns the sound partial result (remaining neurons unknown).
    """
    options = options or AnalysisOptions()
    rng = np.random.default_rng(options.seed)
    times = {}
    t0 = time.perf_counter()
    report = progress.phase("bounds", len(net.hidden)) if progress else None
    bounds = compute_bounds(net, box, symbolic=options.symbolic,
                            progress=(lambda d, t: report(d, t)) if report else None)
    decided = [decide_by_bounds(b) for b in bounds]
    times["bounds"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    tracker = WitnessTracker(net, box)
    undecided = [status == Status.UNKNOWN for status, _ in decided]
    interrupted = False
    try:
        if any(u.any() for u in undecided):
            tracker.offer(box.sample(options.random_points, rng))
            tracker.offer(sign_corners(net, box))
            for b, u in zip(bounds, undecided):
                if b.corner_max is not None and len(b.corner_max):
                    tracker.offer(b.corner_max)
                    tracker.offer(b.corner_min)
            if options.samples is not None:
                tracker.offer(options.samples)
            report = progress.phase("witness search", options.gradient_restarts) if progress else None
            gradient_search(
                net, box, tracker, undecided, steps=options.gradient_steps, restarts=options.gradient_restarts,
                rng=rng, progress=(lambda d, t, open_: report(d, t, f"{open_} open")) if report else None,
            )
    except KeyboardInterrupt:
        interrupted = True
    times["witnesses"] = time.perf_counter() - t0

    layers, witness_pool = collect(net, bounds, decided, tracker)
    return Analysis(net, box, tuple(layers), witness_pool, times, interrupted)


def collect(net, bounds, decided, tracker: WitnessTracker):
    """Final per-layer results: undecided neurons the tracker saw take both signs become unstable,
    and the witness points they cite are gathered into one array."""
    pool = tracker.pool()
    used: dict[int, int] = {}
    layers = []
    for k, ((status, method), b) in enumerate(zip(decided, bounds)):
        status, method = status.copy(), method.copy()
        unstable = (status == Status.UNKNOWN) & tracker.unstable(k)
        status[unstable] = Status.UNSTABLE
        method[unstable] = "witness"
        pos = np.where(unstable, tracker.max_point[k], -1)
        neg = np.where(unstable, tracker.min_point[k], -1)
        for arr in (pos, neg):
            for i in np.flatnonzero(arr >= 0):
                arr[i] = used.setdefault(int(arr[i]), len(used))
        layers.append(LayerAnalysis(net.hidden[k].layer_id, status, method, b.lower, b.upper, pos, neg))
    order = sorted(used, key=used.get)
    witnesses = pool[order] if order else np.empty((0, net.input_size))
    return layers, witnesses
