"""Provers against independent oracles: exact activation-pattern ranges, dense sampling, and
certificates re-checked (and tampered with) independently of the prover that made them."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from exactcomp.analysis import AnalysisOptions, Status, analyze
from exactcomp.bab.engine import BabOptions, Certificate, Leaf, branch_and_bound, check_certificate, covers_box
from exactcomp.bounds.crown import compute_bounds
from exactcomp.domain import Box
from exactcomp.provers.state import Decision, Outcome
from exactcomp.bab.split_bounds import split_bound

from .conftest import random_network
from .oracles import CASES, WEAK_SCREEN, check_against_oracle
from .oracles import exact_ranges

SCHEDULES = {
    "bab": ("bounds", "witnesses", "bab"),
    "milp": ("bounds", "witnesses", "milp"),
    "portfolio": ("bounds", "witnesses", "portfolio"),
    "lp+network": ("bounds", "witnesses", "lp", "network-milp", "milp"),
    "input-split": ("bounds", "witnesses", "input-split"),
}


@pytest.mark.parametrize("sizes,seed,shift", CASES)
@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_every_prover_matches_the_exact_oracle(sizes, seed, shift, schedule):
    net = random_network(sizes, seed=seed, bias_shift=shift)
    box = Box(-np.ones(sizes[0]), np.linspace(0.5, 1.5, sizes[0]))
    lo, hi = exact_ranges(net, box)
    result = analyze(net, box, AnalysisOptions(provers=SCHEDULES[schedule], **WEAK_SCREEN))
    check_against_oracle(result, lo, hi)
    if schedule == "bab":
        assert sum(layer.methods().get("bab", 0) + layer.methods().get("alpha", 0) for layer in result.layers) > 0 \
            or all(not (layer.status == Status.UNKNOWN).any() for layer in result.layers)


@pytest.mark.parametrize("seed", range(8))
def test_no_prover_proves_a_neuron_that_sampling_shows_unstable(seed):
    rng = np.random.default_rng(seed)
    sizes = [int(rng.integers(2, 5)), int(rng.integers(5, 12)), int(rng.integers(5, 12)), int(rng.integers(3, 8)), 2]
    net = random_network(sizes, seed=100 + seed, bias_shift=float(rng.uniform(-1, 0.5)), scale=0.8)
    box = Box(-np.ones(sizes[0]), np.ones(sizes[0]))
    _, pre = net.forward(box.sample(200_000, np.random.default_rng(seed)), return_preactivations=True)
    for schedule in ("bab", "portfolio", "input-split"):
        result = analyze(net, box, AnalysisOptions(provers=SCHEDULES[schedule], **WEAK_SCREEN))
        for layer, g in zip(result.layers, pre):
            assert np.all(g[:, layer.status == Status.INACTIVE] <= 0), schedule
            assert np.all(g[:, layer.status == Status.ACTIVE] >= 0), schedule
        assert result.stats.get("certificates_rejected", 0) == 0


def _deep_case():
    """A net and a layer-3 neuron that branch and bound proves only after splits."""
    net = random_network([3, 10, 10, 8, 1], seed=11, bias_shift=-0.3, scale=0.8)
    box = Box(-np.ones(3), np.ones(3))
    bounds = [(b.lower, b.upper) for b in compute_bounds(net, box)]
    _, pre = net.forward(box.sample(100_000, np.random.default_rng(0)), return_preactivations=True)
    for k in (2, 1):
        for t in range(net.hidden[k].width):
            for sign in (1.0, -1.0):
                if (sign * pre[k][:, t]).max() > -0.02:   # (sampling only picks targets; proofs are checked)
                    continue
                r = branch_and_bound(net, box, bounds, (k, t, sign), 1e-4, deadline=time.perf_counter() + 20,
                                     options=BabOptions(batch=32, root_steps=0))
                if r.status == "proven" and len(r.certificate.leaves) >= 8:
                    return net, box, bounds, r, (k, t, sign)
    raise AssertionError("no multi-leaf proof found")


def test_certificates_recheck_and_tampering_is_caught():
    net, box, bounds, result, target = _deep_case()
    cert = result.certificate
    assert check_certificate(net, box, cert) and cert.check(net, box)
    # a missing leaf leaves part of the box uncovered
    assert not check_certificate(net, box, replace(cert, leaves=cert.leaves[1:]))
    # the same leaves do not prove the opposite sign, nor a much larger margin
    k, t, sign = target
    assert not check_certificate(net, box, replace(cert, target=(k, t, -sign)))
    assert not check_certificate(net, box, replace(cert, margin=10.0))
    # a leaf whose β was inflated into nonsense no longer proves its part (weak duality still holds: β >= 0 only)
    bad = list(cert.leaves)
    leaf = next(l for l in bad if any(len(idx) for idx, _ in l.splits))
    j = next(j for j, (idx, _) in enumerate(leaf.splits) if len(idx))
    betas = [b.copy() for b in leaf.beta]
    betas[j] = betas[j] + 1e6
    bad[bad.index(leaf)] = Leaf(leaf.splits, leaf.alpha, betas)
    assert not check_certificate(net, box, replace(cert, leaves=bad))


def test_leaf_bounds_hold_on_their_subdomain_by_sampling():
    """The numpy leaf bound is an upper bound of σ g over the leaf's region (points that satisfy
    its phases), checked on 200,000 samples: an oracle independent of the bound's derivation."""
    net, box, bounds, result, (k, t, sign) = _deep_case()
    X = box.sample(200_000, np.random.default_rng(3))
    _, pre = net.forward(X, return_preactivations=True)
    widths = [len(lo) for lo, _ in bounds[:k]]
    for leaf in result.certificate.leaves[:50]:
        inside = np.ones(len(X), bool)
        for j, (idx, phase) in enumerate(leaf.splits):
            for i, p in zip(idx, phase):
                inside &= (pre[j][:, i] >= 0) if p > 0 else (pre[j][:, i] <= 0)
        splits = [np.zeros((1, w), np.int8) for w in widths]
        alpha = [a[None].astype(float) for a in leaf.alpha]
        beta = [np.zeros((1, w)) for w in widths]
        for j, (idx, phase) in enumerate(leaf.splits):
            splits[j][0, idx] = phase
            beta[j][0, idx] = leaf.beta[j]
        bound = split_bound(net, box, bounds[:k], (k, t, sign), splits, alpha, beta)[0]
        if inside.any():
            assert (sign * pre[k][inside, t]).max() <= bound + 1e-12


def test_cover_check():
    assert covers_box([{}])
    assert covers_box([{(0, 1): 1}, {(0, 1): -1}])
    assert covers_box([{(0, 1): 1, (0, 2): 1}, {(0, 1): 1, (0, 2): -1}, {(0, 1): -1}])
    assert not covers_box([{(0, 1): 1}])
    assert not covers_box([{(0, 1): 1, (0, 2): 1}, {(0, 1): -1}])
    assert not covers_box([])


class _Bogus:
    """A prover that claims every candidate inactive with a certificate that does not check."""

    name = "bogus"

    def run(self, state, progress=None):
        fake = Certificate((0, 0, 1.0), [], state.margin, [])
        yield Outcome(decisions=[Decision(c.layer, c.neuron, int(Status.INACTIVE), "bogus", fake)
                                 for c in state.open_candidates() if c.sign > 0])


def test_schedule_withdraws_proofs_whose_certificates_fail():
    net = random_network([4, 12, 10, 6, 2], seed=3, bias_shift=-0.8, scale=0.7)
    box = Box(np.zeros(4), np.ones(4))
    result = analyze(net, box, AnalysisOptions(provers=("bounds", "witnesses", _Bogus()), **WEAK_SCREEN))
    withdrawn = sum(int((layer.method == "certificate_rejected").sum()) for layer in result.layers)
    assert withdrawn > 0 and result.stats["certificates_rejected"] == withdrawn
    assert not any((layer.method == "bogus").any() for layer in result.layers)


def test_time_budget_leaves_unknowns_and_a_sound_result():
    net = random_network([4, 12, 10, 6, 2], seed=3, bias_shift=-0.8, scale=0.7)
    box = Box(np.zeros(4), np.ones(4))
    t0 = time.perf_counter()
    result = analyze(net, box, AnalysisOptions(time_limit=1e-6, **WEAK_SCREEN))
    assert time.perf_counter() - t0 < 30
    reasons = {m for layer in result.layers for m in layer.method[layer.status == Status.UNKNOWN]}
    assert reasons <= {"time_limit"}


def test_input_split_certificates_recheck_and_tampering_is_caught():
    from exactcomp.provers.input_split import InputSplitCertificate

    net = random_network([3, 10, 10, 8, 1], seed=11, bias_shift=-0.3, scale=0.8)
    box = Box(-np.ones(3), np.ones(3))
    result = analyze(net, box, AnalysisOptions(provers=SCHEDULES["input-split"], **WEAK_SCREEN))
    assert sum(layer.methods().get("input_split", 0) for layer in result.layers) > 0
    assert result.stats["certificates_checked"] > 0 and result.stats.get("certificates_rejected", 0) == 0
    # rebuild one certificate through the prover to tamper with it
    from exactcomp.provers.state import ProofState

    state = ProofState.start(net, box, AnalysisOptions(**WEAK_SCREEN))
    from exactcomp.provers import get_prover

    for name in ("bounds", "witnesses"):
        for out in get_prover(name).run(state):
            state.apply(out)
    proofs = []
    for out in get_prover("input-split").run(state):
        proofs += [d.certificate for d in out.decisions if d.certificate is not None]
        state.apply(out)
    cert = next(c for c in proofs if len(c.leaves) >= 3)
    assert cert.check(net, box)
    assert not replace(cert, leaves=frozenset(list(cert.leaves)[1:])).check(net, box)     # a hole in the cover
    node, (dim, mid, left, right) = next(iter(cert.tree.items()))
    moved = dict(cert.tree)
    moved[node] = (dim, float(box.upper[dim]) + 1.0, left, right)                          # a split outside the box
    assert not replace(cert, tree=moved).check(net, box)
    dangling = dict(cert.tree)
    dangling[node] = (dim, mid, left, 10**9)                                              # a child nobody bounded
    assert not replace(cert, tree=dangling).check(net, box)
    k, t, sign = cert.target
    assert not replace(cert, target=(k, t, -sign)).check(net, box)
    assert not replace(cert, lower=cert.lower - 1).check(net, box)                       # another box
    assert isinstance(cert, InputSplitCertificate)
