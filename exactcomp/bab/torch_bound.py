"""The bound of one branch-and-bound subdomain batch in torch (:class:`BoundEngine`): the linear relaxation of
:mod:`exactcomp.bab.split_bounds` with slopes α and split multipliers β, differentiable in both, for many
subdomains at once (float64; CPU or GPU). :func:`initial_alpha` gives the CROWN slopes to start from."""

from __future__ import annotations

import numpy as np

from exactcomp.bab.split_bounds import phases_of
from exactcomp.bab.torch_operators import torch_operator


class BoundEngine:
    """The bound of :mod:`exactcomp.bab.split_bounds` in torch, for a batch, with gradients in α and β.
    Layers are used only through their torch operators (bias and ``apply_transpose``)."""

    def __init__(self, net, box, bounds, target, device="cpu"):
        import torch

        self.torch = torch
        k, t, sign = target
        self.k, self.sign = k, float(sign)
        dev = torch.device(device)
        as_t = lambda a: torch.as_tensor(np.array(a, dtype=np.float64), device=dev)
        self.ops = [torch_operator(net.layers[j], dev) for j in range(k)]
        self.skip_ops = {j: [(s.source, torch_operator(s.op, dev)) for s in net.skips_into(j)] for j in range(k)}
        # the objective's coefficients on h_{k-1} and on the sources of skips into layer k
        self.obj = [(k - 1, as_t(sign * net.layers[k].rows([t])[0]))]
        self.obj += [(s.source, as_t(sign * s.op.rows([t])[0])) for s in net.skips_into(k)]
        self.obj_b = float(sign * net.layers[k].b[t])
        self.lx, self.ux = as_t(box.lower), as_t(box.upper)
        self.lower, self.upper, self.active, self.unstable, self.slope = [], [], [], [], []
        for lo, hi in bounds[:k]:
            act, _, unst, slope = phases_of(lo, hi)
            self.lower.append(as_t(lo))
            self.upper.append(as_t(hi))
            self.active.append(torch.as_tensor(act, device=dev))
            self.unstable.append(torch.as_tensor(unst, device=dev))
            self.slope.append(as_t(slope))
        self.device = dev

    def bound(self, splits, alpha, beta, want_scores: bool = False):
        """``(bound (B,), corner (B, n0), scores per layer or None)``; α, β used as given."""
        torch = self.torch
        B = splits[0].shape[0] if self.k else 1
        pending = {}   # j -> coefficients on h_j (every path, skips included)

        def add(key, value):
            pending[key] = value if key not in pending else pending[key] + value

        for source, row in self.obj:
            add(source, row.expand(B, -1))
        const = torch.full((B,), self.obj_b, dtype=torch.float64, device=self.device)
        scores = [None] * self.k
        for j in range(self.k - 1, -1, -1):
            if j not in pending:
                continue
            a = pending.pop(j)
            S, act, unst, slope, lo = splits[j], self.active[j], self.unstable[j], self.slope[j], self.lower[j]
            on, off = unst & (S > 0), unst & (S < 0)
            free = unst & (S == 0)
            up = a >= 0
            lam = torch.where(act | on, a, torch.zeros_like(a))
            lam = lam + torch.where(free & up, a * slope, torch.zeros_like(a))
            lam = lam + torch.where(free & ~up, a * alpha[j], torch.zeros_like(a))
            lam = lam + beta[j] * (on.to(a.dtype) - off.to(a.dtype))
            intercept = torch.where(free & up, -a * slope * lo, torch.zeros_like(a))
            if want_scores:
                scores[j] = torch.where(free, intercept, torch.full_like(a, -1.0))
            const = const + intercept.sum(dim=1) + lam @ self.ops[j].b
            add(j - 1, self.ops[j].apply_transpose(lam))
            for source, op in self.skip_ops[j]:
                add(source, op.apply_transpose(lam))
        a = pending[-1] if -1 in pending else torch.zeros((B, len(self.lx)), dtype=torch.float64, device=self.device)
        bound = const + torch.maximum(a * self.lx, a * self.ux).sum(dim=1)
        corner = torch.where(a > 0, self.ux, self.lx)
        return bound, corner, scores


def initial_alpha(bounds, k):
    return [(hi >= -lo).astype(np.float64) for lo, hi in bounds[:k]]
