"""``input-split``: bisect a low-dimensional input box until bounds decide the candidates.

When at most ``max_free`` input coordinates are free (``lower < upper``), the box is split in two
along the coordinate with the largest influence on the open candidates (its width times the summed
``|∂g/∂x_i|`` of those candidates at the sub-box centre) until, in every sub-box, the bounds of
:func:`exactcomp.bounds.crown.compute_bounds` (interval + CROWN, widened for rounding) show ``σ g <= -τ``
for the candidate; sub-boxes are taken largest bound first, and each sub-box's centre and corners are
tried as witnesses. All candidates share one split tree. A candidate is proven (method
``input_split``) when no open sub-box still holds it; its certificate is the split tree with its
closed leaves, which :meth:`InputSplitCertificate.check` re-verifies from scratch: the children of
every split are exactly the two halves of their parent, every leaf's bounds are recomputed.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass

import numpy as np

from exactcomp.results import Reason, Status
from exactcomp.bounds.crown import compute_bounds
from exactcomp.domain import Box
from exactcomp.provers.milp import proven_edge
from exactcomp.provers.state import Decision, Outcome


@dataclass
class InputSplitCertificate:
    """``tree``: node id -> ``(dim, mid, left, right)`` for split nodes (node 0 is the box);
    ``leaves``: the node ids where the candidate was closed; ``target = (layer, neuron, sign)``."""

    target: tuple
    lower: np.ndarray
    upper: np.ndarray
    margin: float
    tree: dict
    leaves: frozenset

    def check(self, net, box, cache: dict | None = None) -> bool:
        """Re-verify from scratch (see module doc); ``cache`` shares leaf bounds between certificates
        of one tree (keyed by the leaf's box, so a different tree can never reuse a wrong entry)."""
        if not (np.array_equal(self.lower, box.lower) and np.array_equal(self.upper, box.upper)):
            return False
        cache = {} if cache is None else cache
        k, t, sign = self.target
        stack = [(0, self.lower, self.upper)]
        while stack:
            node, lo, hi = stack.pop()
            if node in self.leaves:
                key = (lo.tobytes(), hi.tobytes())
                if key not in cache:
                    cache[key] = compute_bounds(net, Box(lo, hi))
                b = cache[key][k]
                if (b.upper[t] if sign > 0 else -b.lower[t]) > -self.margin:
                    return False
            elif node in self.tree:
                dim, mid, left, right = self.tree[node]
                if not lo[dim] < mid < hi[dim]:
                    return False
                lo_right, hi_left = lo.copy(), hi.copy()
                hi_left[dim], lo_right[dim] = mid, mid
                stack += [(left, lo, hi_left), (right, lo_right, hi)]
            else:
                return False   # a part of the box nobody bounded
        return True

    @staticmethod
    def check_many(net, box, certificates) -> list[bool]:
        cache: dict = {}
        return [c.check(net, box, cache) for c in certificates]


#: Input splitting gives up when no candidate was resolved for this long (or for half of its time so
#: far, if longer): measured on a 5-input controller whose last few candidates the split tree could not
#: close, 72,656 boxes in 30 s decided nothing that LP and the portfolio then decided in 2.3 s.
STALL_SECONDS = 3.0


class InputSplit:
    name = "input-split"

    def __init__(self, max_free: int = 16, share: float = 0.5, corners: int = 8):
        self.max_free, self.share, self.corners = max_free, share, corners

    def run(self, state, progress=None):
        box = state.box
        free = np.flatnonzero(box.upper > box.lower)
        todo = state.open_candidates()
        if not todo or not 0 < free.size <= self.max_free:
            return
        left = state.remaining()
        budget = state.budget
        stop = float("inf") if left is None else budget.now() + self.share * left
        report = progress.phase("input splitting", len(todo)) if progress else None
        search = _Search(state, todo, free, self.corners)
        start = last_progress = budget.now()
        resolved = 0
        while search.heap and budget.now() < stop:
            state.remaining()
            out = search.step()
            budget.charge("input_boxes")
            if out is not None:
                yield out
            now = budget.now()
            if search.resolved > resolved:
                resolved, last_progress = search.resolved, now
            elif now - last_progress > max(budget.span(STALL_SECONDS), 0.5 * (now - start)):
                break   # nothing resolved for a while: leave the rest to LP and the portfolio
            if report:
                report(search.resolved, len(todo), f"{len(search.heap)} boxes; {state.candidate_count()} open")


class _Search:
    def __init__(self, state, todo, free, corners):
        self.state, self.free, self.corners = state, free, corners
        self.todo = todo
        self.tree: dict = {}
        self.leaves = [set() for _ in todo]
        self.open_boxes = np.zeros(len(todo), dtype=np.int64)   # queued boxes holding each candidate
        self.done = np.zeros(len(todo), dtype=bool)
        self.failed = np.zeros(len(todo), dtype=bool)      # a sub-box too small to split still holds it
        self.resolved = 0
        self.ids = itertools.count(1)
        self.rng = np.random.default_rng(0)
        self.heap = []
        self._push(0, state.box.lower, state.box.upper, np.arange(len(todo)), 0.0)

    def _push(self, node, lo, hi, members, priority):
        self.open_boxes[members] += 1
        heapq.heappush(self.heap, (-priority, node, lo, hi, members))

    def step(self):
        state = self.state
        _, node, lo, hi, members = heapq.heappop(self.heap)
        self.open_boxes[members] -= 1
        members = members[[not (self.done[i] or self.failed[i]) and state.is_open(self.todo[i]) for i in members]]
        points = self._points(lo, hi)
        out = Outcome(points=points, stats={"input_boxes": 1})
        members = self._near_zero(points, members, out)
        if members.size:
            bounds = compute_bounds(state.net, Box(lo, hi))
            worst = np.array([self._value(bounds, self.todo[i]) for i in members])
            closed = worst <= -state.margin
            for i in members[closed]:
                self.leaves[i].add(node)
            members, worst = members[~closed], worst[~closed]
            if members.size:
                self._split(node, lo, hi, members, float(worst.max()))
        decisions, out.bounds = self._finished()
        out.decisions += decisions
        return out

    def _near_zero(self, points, members, out):
        """Candidates for which a real input gives ``-τ <= σ g <= 0``: no proof with margin τ can
        exist, so they end as ``near_zero`` (a value above 0 is a witness the tracker records)."""
        if not members.size:
            return members
        _, pre = self.state.net.forward(points, return_preactivations=True)
        keep = np.ones(members.size, dtype=bool)
        for n, i in enumerate(members):
            c = self.todo[i]
            best = float((c.sign * pre[c.layer][:, c.neuron]).max())
            if -self.state.margin <= best <= 0:
                out.decisions.append(Decision(c.layer, c.neuron, Status.UNKNOWN, Reason.NEAR_ZERO))
                self.done[i] = True
                self.resolved += 1
                keep[n] = False
        return members[keep]

    @staticmethod
    def _value(bounds, c) -> float:
        b = bounds[c.layer]
        return float(b.upper[c.neuron] if c.sign > 0 else -b.lower[c.neuron])

    def _points(self, lo, hi):
        centre = (lo + hi) / 2
        bits = self.rng.integers(0, 2, size=(self.corners, lo.size)).astype(bool)
        return np.vstack([centre[None], np.where(bits, hi, lo)])

    def _split(self, node, lo, hi, members, worst):
        net = self.state.net
        centre = (lo + hi) / 2
        _, pre = net.forward(centre[None], return_preactivations=True)
        influence = np.zeros(lo.size)
        for i in members:
            c = self.todo[i]
            influence += np.abs(_input_gradient(net, pre, c.layer, c.neuron))
        score = (hi - lo) * (influence + 1e-12)
        score[(hi - lo) <= 1e-12 * np.maximum(1.0, np.abs(hi))] = -1.0
        dim = int(np.argmax(score))
        mid = float(centre[dim])
        if score[dim] < 0 or not lo[dim] < mid < hi[dim]:   # too small to split: left to later provers
            self.failed[members] = True
            return
        left, right = next(self.ids), next(self.ids)
        self.tree[node] = (dim, mid, left, right)
        hi_left, lo_right = hi.copy(), lo.copy()
        hi_left[dim], lo_right[dim] = mid, mid
        self._push(left, lo, hi_left, members, worst)
        self._push(right, lo_right, hi, members, worst)

    def _finished(self):
        """Decisions for candidates that no queued box holds any more (proven), plus their bounds."""
        state, decisions, bounds = self.state, [], []
        for i in np.flatnonzero(~self.done & (self.open_boxes == 0)):
            self.done[i] = True
            self.resolved += 1
            c = self.todo[i]
            if not state.is_open(c) or not self.leaves[i] or self.failed[i]:
                continue
            certificate = InputSplitCertificate((c.layer, c.neuron, c.sign), state.box.lower.copy(),
                                                state.box.upper.copy(), state.margin, dict(self.tree),
                                                frozenset(self.leaves[i]))
            status = c.sign.status
            decisions.append(Decision(c.layer, c.neuron, int(status), "input_split", certificate))
            bounds.append(proven_edge(c, state.margin))
        for i in np.flatnonzero(~self.done):
            if not state.is_open(self.todo[i]):   # witnessed meanwhile
                self.done[i] = True
                self.resolved += 1
        return decisions, bounds


def _input_gradient(net, pre, layer: int, neuron: int) -> np.ndarray:
    """``∂g_{layer, neuron} / ∂x`` at the point whose pre-activations are ``pre`` (one row)."""
    g = np.zeros((1, net.layers[layer].width))
    g[0, neuron] = 1.0
    return net.backpropagate(layer, g, [p.reshape(1, -1) for p in pre])[0]
