"""Branch and bound over ReLU splits for one neuron (β-CROWN / BaBSR style), batched in torch.

Question: is ``σ g_{k,t} <= -τ`` on the whole box (``σ = +1``: the neuron is stably inactive with
margin τ; ``σ = -1``: stably active)? Subdomains fix the phase of unstable neurons of layers ``< k``;
each gets the bound of :mod:`exactcomp.bab.split_bounds` with its own slopes α and split multipliers β,
optimised by projected Adam (warm-started from the parent, β of the new split from 0), many
subdomains at a time in one batch (float64). The open subdomain with the largest bound is split on
the neuron with the largest BaBSR intercept score ``a⁺ s (-l)`` (how much its triangle relaxation
adds to the bound). Every subdomain's maximising box corner is run through the network in float64:
a point with ``σ g > 0`` is a witness (the neuron is unstable), one with ``σ g >= -τ`` means the
maximum is within τ of zero (``near_zero``).

A subdomain is closed only when the float64 recomputation of its bound
(:func:`exactcomp.bab.split_bounds.split_bound`, widened for rounding) is ``<= -τ``; the closed leaves
(phases, α, β) form the certificate (:mod:`exactcomp.bab.certificate`), re-verified independently:
every leaf bound again, and that the leaves cover the box (a complete split tree).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from exactcomp.bab.certificate import Certificate, Leaf, check_certificate, covers_box  # noqa: F401 (re-exported)
from exactcomp.bab.split_bounds import split_bound
from exactcomp.bab.torch_bound import BoundEngine, initial_alpha  # noqa: F401 (re-exported)
from exactcomp.results import BabStatus


@dataclass(frozen=True)
class BabOptions:
    """Knobs of :func:`branch_and_bound` (defaults measured on the MNIST benchmark networks)."""

    batch: int = 1024              # children bounded per iteration
    root_steps: int = 100          # Adam steps on α at the root
    steps: int = 20                # Adam steps per child
    lr_alpha: float = 0.1
    lr_beta: float = 0.002
    max_leaves: int = 2_000_000    # safety cap on the certificate's size
    device: str = "cpu"


@dataclass
class BabResult:
    status: BabStatus
    certificate: Certificate | None
    points: np.ndarray                   # inputs worth offering to the witness tracker
    best_value: float                    # largest σ g seen at a real input
    subdomains: int = 0
    seconds: float = 0.0
    root_bound: float = float("nan")


def branch_and_bound(net, box, bounds, target, margin: float, deadline: float = float("inf"),
                     options: BabOptions | None = None, cancelled=None, root_splits=(), budget=None) -> BabResult:
    """Decide ``σ g_{k,t} <= -margin`` on ``box`` for ``target = (k, t, σ)`` (see module doc).

    ``bounds``: pre-activation bounds ``[(l_j, u_j)]`` of (at least) the hidden layers ``< k``, valid
    on the whole box. Stops at ``deadline`` (``time.perf_counter()`` seconds) or when ``cancelled``
    (an object with ``is_set()``) is set, returning ``open``. ``root_splits`` (``(layer, neuron, ±1)``
    triples) restrict the search to one subtree: its leaves all carry them, so the certificates of
    subtrees that partition the phases of the same neurons together cover the box. ``budget``: a
    :class:`~exactcomp.provers.budget.Budget` whose clock ``deadline`` is on (instead of ``time.perf_counter()``),
    charged one ``bab_bounds`` per subdomain bounded (every bound pass over a batch counts its rows).
    """
    import torch

    options = options or BabOptions()
    t0 = time.perf_counter()
    k = target[0]
    if k == 0:   # a first-layer neuron: the bound over the box is exact, nothing to split
        return _first_layer(net, box, target, margin, t0)
    engine = BoundEngine(net, box, bounds, target, options.device)
    dev = engine.device
    zeros = [torch.zeros((1, len(lo)), dtype=torch.int8, device=dev) for lo, _ in bounds[:k]]
    for j, i, phase in root_splits:
        zeros[j][0, i] = int(phase)
    alpha = [torch.as_tensor(a[None], device=dev) for a in initial_alpha(bounds, k)]
    beta = [torch.zeros((1, len(lo)), dtype=torch.float64, device=dev) for lo, _ in bounds[:k]]
    run = _Run(net, box, bounds, target, margin, engine, options, deadline, cancelled, t0)
    run.budget = budget
    alpha, beta = run.optimise(zeros, alpha, beta, options.root_steps)
    return run.search(zeros, alpha, beta)


class _Run:
    """State of one branch and bound: the open subdomains (batched tensors) and the closed leaves."""

    def __init__(self, net, box, bounds, target, margin, engine, options, deadline, cancelled, t0):
        self.net, self.box, self.bounds, self.target, self.margin = net, box, bounds, target, margin
        self.engine, self.options, self.deadline, self.cancelled, self.t0 = engine, options, deadline, cancelled, t0
        self.certificate = Certificate(target, [tuple(map(np.asarray, b)) for b in bounds[:target[0]]], margin)
        self.best_value, self.best_point, self.subdomains = -np.inf, None, 0
        self.budget = None

    def _bound(self, splits, alpha, beta, want_scores: bool = False):
        """The engine's bounds of a batch, charged to the budget (one unit of ``bab_bounds`` per row)."""
        if self.budget is not None:
            self.budget.charge("bab_bounds", len(splits[0]) if splits else 1)
        return self.engine.bound(splits, alpha, beta, want_scores=want_scores)

    # -- optimisation -----------------------------------------------------------------------
    def optimise(self, splits, alpha, beta, steps: int):
        """Projected Adam on α ∈ [0, 1], β >= 0 minimising the batch's bounds (each independently)."""
        torch = self.engine.torch
        if not self.engine.k or steps <= 0:
            return alpha, beta
        best_alpha = [a.clone() for a in alpha]
        best_beta = [b.clone() for b in beta]
        best = None
        alpha = [a.clone().requires_grad_(True) for a in alpha]
        beta = [b.clone().requires_grad_(True) for b in beta]
        opt = torch.optim.Adam([{"params": alpha, "lr": self.options.lr_alpha},
                                {"params": beta, "lr": self.options.lr_beta}])
        for step in range(steps + 1):
            opt.zero_grad()
            bound, _, _ = self._bound(splits, alpha, beta)
            with torch.no_grad():   # keep each subdomain's best parameters (Adam's steps can overshoot)
                better = torch.ones_like(bound, dtype=torch.bool) if best is None else bound < best
                best = bound.detach().clone() if best is None else torch.where(better, bound.detach(), best)
                for keep, cur in zip(best_alpha + best_beta, alpha + beta):
                    keep[better] = cur.detach()[better]
            if step == steps:
                break
            bound.sum().backward()
            opt.step()
            with torch.no_grad():
                for a in alpha:
                    a.clamp_(0.0, 1.0)
                for b in beta:
                    b.clamp_(min=0.0)
        return best_alpha, best_beta

    # -- the search -------------------------------------------------------------------------
    def search(self, splits, alpha, beta) -> BabResult:
        torch = self.engine.torch
        open_ = self._evaluate(splits, alpha, beta)
        root_bound = float(open_[3].max()) if open_ is not None and len(open_[3]) else -np.inf
        while True:
            status = self._status(open_)
            if status is not None:
                return self._result(status, root_bound)
            splits, alpha, beta, bound = open_
            take = torch.argsort(bound, descending=True)[: max(1, self.options.batch // 2)]
            rest = torch.ones(len(bound), dtype=torch.bool, device=bound.device)
            rest[take] = False
            children = self._branch([s[take] for s in splits], [a[take] for a in alpha], [b[take] for b in beta])
            kept = ([s[rest] for s in splits], [a[rest] for a in alpha], [b[rest] for b in beta], bound[rest])
            if children is None:   # nothing left to split in the hardest subdomains
                return self._result(BabStatus.OPEN, root_bound)
            child_splits, child_alpha, child_beta = children
            child_alpha, child_beta = self.optimise(child_splits, child_alpha, child_beta, self.options.steps)
            open_ = _concat(kept, self._evaluate(child_splits, child_alpha, child_beta), torch)

    def _status(self, open_) -> BabStatus | None:
        if self.best_value > 0:
            return BabStatus.WITNESS
        if self.best_value >= -self.margin:
            return BabStatus.NEAR_ZERO
        if open_ is None or not len(open_[3]):
            return BabStatus.PROVEN
        now = time.perf_counter() if self.budget is None else self.budget.now()
        if ((self.cancelled is not None and self.cancelled.is_set()) or now >= self.deadline
                or len(self.certificate.leaves) >= self.options.max_leaves):
            return BabStatus.OPEN
        return None

    def _branch(self, splits, alpha, beta):
        """Two children per subdomain, split on its highest-scoring unsplit unstable neuron."""
        torch = self.engine.torch
        with torch.no_grad():
            _, _, scores = self._bound(splits, alpha, beta, want_scores=True)
        flat = torch.cat(scores, dim=1)
        best, where = flat.max(dim=1)
        ok = best >= 0
        if not bool(ok.all()):   # a subdomain with every earlier neuron split: branching cannot go on
            return None
        offsets = np.cumsum([0] + [s.shape[1] for s in scores]).tolist()
        where = where[ok]
        splits = [s[ok] for s in splits]
        alpha, beta = [a[ok] for a in alpha], [b[ok] for b in beta]
        on = [s.clone() for s in splits]
        off = [s.clone() for s in splits]
        for j in range(len(splits)):
            in_layer = (where >= offsets[j]) & (where < offsets[j + 1])
            idx = (where - offsets[j])[in_layer]
            r = torch.arange(len(where), device=where.device)[in_layer]
            on[j][r, idx] = 1
            off[j][r, idx] = -1
        children = [torch.cat([a, b]) for a, b in zip(on, off)]
        return children, [torch.cat([a, a]) for a in alpha], [torch.cat([b, b]) for b in beta]

    def _evaluate(self, splits, alpha, beta):
        """Bound a batch, try its corners as witnesses, close the subdomains whose float64
        re-checked bound is <= -τ; returns the still-open ones."""
        torch = self.engine.torch
        with torch.no_grad():
            bound, corner, _ = self._bound(splits, alpha, beta)
        self.subdomains += len(bound)
        self._try_points(corner.cpu().numpy())
        candidates = (bound <= -self.margin).cpu().numpy()
        closed = np.zeros(len(bound), dtype=bool)
        if candidates.any():
            idx = np.flatnonzero(candidates)
            rows = torch.as_tensor(idx, device=bound.device)
            np_s = [s[rows].cpu().numpy() for s in splits]
            np_a = [a[rows].cpu().numpy().astype(np.float32) for a in alpha]
            np_b = [b[rows].cpu().numpy().astype(np.float32) for b in beta]
            exact = split_bound(self.net, self.box, self.certificate.bounds, self.target, np_s, np_a, np_b)
            good = exact <= -self.margin
            closed[idx[good]] = True
            for i in np.flatnonzero(good):
                self.certificate.leaves.append(_leaf(np_s, np_a, np_b, i))
        keep = torch.as_tensor(~closed, device=bound.device)
        return [s[keep] for s in splits], [a[keep] for a in alpha], [b[keep] for b in beta], bound[keep]

    def _try_points(self, points: np.ndarray) -> None:
        k, t, sign = self.target
        _, pre = self.net.forward(points, return_preactivations=True)
        values = sign * pre[k][:, t]
        i = int(np.argmax(values))
        if values[i] > self.best_value:
            self.best_value, self.best_point = float(values[i]), points[i]

    def _result(self, status: BabStatus, root_bound: float) -> BabResult:
        points = np.empty((0, self.box.size)) if self.best_point is None else self.best_point[None, :]
        certificate = self.certificate if status == BabStatus.PROVEN else None
        return BabResult(status, certificate, points, self.best_value, self.subdomains,
                         time.perf_counter() - self.t0, root_bound)


def _leaf(splits, alpha, beta, i) -> Leaf:
    """The ``i``-th subdomain of a numpy batch as a compact leaf (split indices and phases only)."""
    pairs = []
    for s in splits:
        idx = np.flatnonzero(s[i])
        pairs.append((idx.astype(np.int32), s[i][idx].astype(np.int8)))
    return Leaf(pairs, [a[i] for a in alpha], [b[i][p[0]] for b, p in zip(beta, pairs)])


def _concat(kept, new, torch):
    return ([torch.cat([a, b]) for a, b in zip(kept[0], new[0])], [torch.cat([a, b]) for a, b in zip(kept[1], new[1])],
            [torch.cat([a, b]) for a, b in zip(kept[2], new[2])], torch.cat([kept[3], new[3]]))


def _first_layer(net, box, target, margin, t0) -> BabResult:
    k, t, sign = target
    bound, corner = split_bound(net, box, [], target, [], [], [], return_corner=True)
    _, pre = net.forward(corner, return_preactivations=True)
    value = float(sign * pre[0][0, t])
    certificate = Certificate(target, [], margin, [Leaf([], [], [])])
    status = (BabStatus.PROVEN if bound[0] <= -margin else BabStatus.WITNESS if value > 0 else
              BabStatus.NEAR_ZERO if value >= -margin else BabStatus.OPEN)
    return BabResult(status, certificate if status == BabStatus.PROVEN else None, corner, value, 1,
                     time.perf_counter() - t0, float(bound[0]))
