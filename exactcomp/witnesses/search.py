"""Witness search: inputs inside the box that show a neuron takes both signs.

A hidden neuron is *unstable* once two points of the box are known with ``g > 0`` and ``g < 0``
(strictly, in a float64 forward pass). :class:`WitnessTracker` keeps, per neuron, the largest and
smallest pre-activation seen and the point attaining it; points are kept in a small pool only
while they are the best witness of some neuron.

Sources, in order: uniform random points, box corners (from the signs of each neuron's symbolic
bound), user samples inside the box, and projected sign-gradient ascent on ``±g`` for every neuron
still missing a sign (:func:`gradient_search`, vectorised over candidates).
"""

from __future__ import annotations

import numpy as np

from exactcomp.interrupts import held
from exactcomp.domain import Box
from exactcomp.ir.network import Network


#: Most pre-activation values (points x hidden neurons) one forward pass of :meth:`WitnessTracker.offer` holds.
MAX_BATCH_ENTRIES = 20_000_000


class WitnessTracker:
    """Extremes of every hidden pre-activation over all points offered so far."""

    def __init__(self, net: Network, box: Box):
        self.net = net
        self.box = box
        widths = [layer.width for layer in net.hidden]
        self.max_value = [np.full(w, -np.inf) for w in widths]
        self.min_value = [np.full(w, np.inf) for w in widths]
        self.max_point = [np.full(w, -1) for w in widths]
        self.min_point = [np.full(w, -1) for w in widths]
        self._pool: list[np.ndarray] = []
        self._pool_size = 0
        self.evaluated = 0

    def offer(self, points: np.ndarray) -> int:
        """Evaluate ``points`` (rows inside the box) and keep those that improve an extreme.

        Returns the number of neurons that became unstable (both signs now seen).
        """
        points = np.asarray(points, dtype=np.float64).reshape(-1, self.box.size)
        if not len(points):
            return 0
        inside = self.box.contains(points)
        points = points[inside]
        if not len(points):
            return 0
        chunk = max(64, MAX_BATCH_ENTRIES // max(1, sum(len(v) for v in self.max_value)))
        if len(points) > chunk:  # bounded memory: pre-activations of at most MAX_BATCH_ENTRIES at once
            return sum(self.offer(points[i:i + chunk]) for i in range(0, len(points), chunk))
        self.evaluated += len(points)
        before = self.unstable_count()
        _, pre = self.net.forward(points, return_preactivations=True)
        with held():   # the extremes, their point indices and the pool change together, never half-way
            self._record(pre, points)
        return self.unstable_count() - before

    def _record(self, pre: list, points: np.ndarray) -> None:
        """Keep the points of ``points`` (pre-activations ``pre``) that improve an extreme."""
        keep: dict[int, int] = {}
        for k, g in enumerate(pre):
            for values, points_idx, reducer, better in (
                (self.max_value, self.max_point, np.argmax, np.greater),
                (self.min_value, self.min_point, np.argmin, np.less),
            ):
                best = reducer(g, axis=0)
                vals = g[best, np.arange(g.shape[1])]
                improved = better(vals, values[k])
                if improved.any():
                    values[k][improved] = vals[improved]
                    for row in np.unique(best[improved]):
                        keep.setdefault(int(row), self._pool_size + len(keep))
                    points_idx[k][improved] = [keep[int(r)] for r in best[improved]]
        if keep:
            rows = sorted(keep, key=keep.get)
            self._pool.append(points[rows])
            self._pool_size += len(rows)
            if self._pool_size > 4 * sum(len(v) for v in self.max_value) + 1024:
                self._compact()

    def offer_random(self, count: int, rng: np.random.Generator, batch: int = 4096, progress=None) -> None:
        """Offer ``count`` uniform random points of the box, ``batch`` at a time (bounded memory)."""
        for start in range(0, count, batch):
            self.offer(self.box.sample(min(batch, count - start), rng))
            if progress is not None:
                progress(min(start + batch, count), count)

    def _compact(self) -> None:
        """Drop pool points that are no longer the best witness of any neuron (bounded storage)."""
        pool = self.pool()
        used = np.unique(np.concatenate([idx[idx >= 0] for idx in (*self.max_point, *self.min_point)]))
        remap = np.full(len(pool), -1)
        remap[used] = np.arange(used.size)
        for idx in (*self.max_point, *self.min_point):
            idx[idx >= 0] = remap[idx[idx >= 0]]
        self._pool, self._pool_size = [pool[used]], int(used.size)

    def seen_positive(self, k: int) -> np.ndarray:
        return self.max_value[k] > 0

    def seen_negative(self, k: int) -> np.ndarray:
        return self.min_value[k] < 0

    def unstable(self, k: int) -> np.ndarray:
        return self.seen_positive(k) & self.seen_negative(k)

    def unstable_count(self) -> int:
        return int(sum(self.unstable(k).sum() for k in range(len(self.max_value))))

    def pool(self) -> np.ndarray:
        if not self._pool:
            return np.empty((0, self.box.size))
        return np.vstack(self._pool)

    def best_points(self, k: int, neurons: np.ndarray, maximise: np.ndarray) -> np.ndarray:
        """Best known point for each (neuron, direction); random points where none is known."""
        pool = self.pool()
        idx = np.where(maximise, self.max_point[k][neurons], self.min_point[k][neurons])
        out = np.empty((len(neurons), self.box.size))
        known = idx >= 0
        out[known] = pool[idx[known]]
        out[~known] = self.box.sample(int((~known).sum()), np.random.default_rng(k))
        return out


def sign_corners(net: Network, box: Box) -> np.ndarray:
    """Corners maximising and minimising each first-layer neuron (exact for layer 1)."""
    W = net.layers[0].rows(np.arange(net.layers[0].width))
    return np.vstack([np.where(W > 0, box.upper, box.lower), np.where(W < 0, box.upper, box.lower)])


def open_candidates(tracker: WitnessTracker, undecided: list[np.ndarray]):
    """Per layer: neurons undecided by bounds that still miss a positive or a negative witness."""
    layers, neurons, dirs = [], [], []
    for k, mask in enumerate(undecided):
        for direction, seen in ((1, tracker.seen_positive(k)), (-1, tracker.seen_negative(k))):
            idx = np.flatnonzero(mask & ~seen)
            layers.append(np.full(idx.size, k))
            neurons.append(idx)
            dirs.append(np.full(idx.size, direction))
    if not layers:
        return np.empty(0, int), np.empty(0, int), np.empty(0, int)
    return np.concatenate(layers), np.concatenate(neurons), np.concatenate(dirs)


def _gradients(net: Network, X: np.ndarray, layer: int, neurons: np.ndarray, direction: np.ndarray,
               pre: list[np.ndarray]) -> np.ndarray:
    """d(direction * g_{layer, neuron})/dx at each row of X, by back-propagation through ReLUs."""
    g = np.zeros((len(neurons), net.layers[layer].width))
    g[np.arange(len(neurons)), neurons] = direction
    return net.backpropagate(layer, g, pre)


def gradient_search(net: Network, box: Box, tracker: WitnessTracker, undecided: list[np.ndarray],
                    steps: int = 40, restarts: int = 2, rng: np.random.Generator | None = None,
                    progress=None, batch: int = 2048) -> None:
    """Projected sign-gradient ascent of ``±g`` for each open candidate; all iterates are offered.

    Step sizes decay geometrically from 1/4 to 1/100 of the box width. Restart 0 starts at each
    candidate's best known point, later restarts at random points.
    """
    rng = rng or np.random.default_rng(0)
    width = box.upper - box.lower
    for restart in range(restarts):
        layers, neurons, dirs = open_candidates(tracker, undecided)
        if progress is not None:
            progress(restart, restarts, len(neurons))
        if not len(neurons):
            return
        for start in range(0, len(neurons), batch):
            sl = slice(start, start + batch)
            _ascend(net, box, tracker, layers[sl], neurons[sl], dirs[sl], steps, restart, rng, width)
    if progress is not None:
        progress(restarts, restarts, int(len(open_candidates(tracker, undecided)[0])))


def _ascend(net, box, tracker, layers, neurons, dirs, steps, restart, rng, width):
    X = np.empty((len(neurons), box.size))
    for k in np.unique(layers):
        sel = layers == k
        if restart == 0:
            X[sel] = tracker.best_points(int(k), neurons[sel], dirs[sel] > 0)
        else:
            X[sel] = box.sample(int(sel.sum()), rng)
    for t in range(steps):
        step = 0.25 * (0.04 ** (t / max(steps - 1, 1)))
        _, pre = net.forward(X, return_preactivations=True)
        grad = np.zeros_like(X)
        for k in np.unique(layers):
            sel = np.flatnonzero(layers == k)
            grad[sel] = _gradients(net, X[sel], int(k), neurons[sel], dirs[sel].astype(float),
                                   [p[sel] for p in pre])
        stuck = ~grad.any(axis=1)
        if stuck.any():
            grad[stuck] = rng.standard_normal((int(stuck.sum()), box.size))
        X = box.clip(X + step * width * np.sign(grad))
        tracker.offer(X)
