"""Research probe for ``exactcomp stabilize`` (issue 21): fine-tune an ordinarily trained ReLU MLP so that many
neurons become provably dead over the whole input box, then compress it exactly with exactcomp.

    python benchmarks/stabilize_probe.py --out DIR [--methods NAME ...] [--targets 0.45 0.55 ...] [--quick]

Standalone (not imported by the package or the tests). Trains the MNIST MLP 784-100-100-10 *without* L1 on the
first 8,000 images of ``../shared/data/mnist`` (models/train.py's recipe, l1=0, 20 epochs, seed 0), holds out the
last 2,000, and for each method and target parameter fraction:

1. repeatedly scores the neurons still alive, kills the cheapest ones (incoming weights 0, bias -1: dead over
   any box, so exactcomp proves it by interval bounds and removes the neuron with its in- and outgoing weights),
   optionally compensates in the next layer, and fine-tunes (Adam) with the dead neurons masked;
2. exports the stabilized model to ONNX, runs ``exactcomp.compress`` over [0,1]^784 (time_limit 60 s), and
   measures held-out accuracy with onnxruntime *on the compressed model*.

Methods (see ``METHODS``): ``naive`` (score = mean activation x outgoing-weight norm, one shot, CE fine-tune; the
earlier baseline), and the improved ones: per-parameter ablation scores measured as the increase of the
distillation loss, least-squares refit of the next layer after each kill, gradual rounds, distillation (KL to
the original's logits) on shifted training images. Results: DIR/results.json and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "models"))
from train import accuracy, export, load_mnist, mlp, train  # noqa: E402

SIZES = [784, 100, 100, 10]


# ----------------------------------------------------------------------------------------------- model
class Masked(torch.nn.Module):
    """784-n1-n2-10 ReLU MLP whose hidden neurons can be killed (mask 0 = dead)."""

    def __init__(self, seq: torch.nn.Sequential):
        super().__init__()
        lin = [m for m in seq if isinstance(m, torch.nn.Linear)]
        self.lins = torch.nn.ModuleList([torch.nn.Linear(l.in_features, l.out_features) for l in lin])
        for a, b in zip(self.lins, lin):
            a.load_state_dict(b.state_dict())
        self.register_buffer("m1", torch.ones(lin[0].out_features))
        self.register_buffer("m2", torch.ones(lin[1].out_features))

    def hidden(self, x):
        x = x.flatten(1)
        h1 = F.relu(self.lins[0](x)) * self.m1
        z2 = self.lins[1](h1)
        h2 = F.relu(z2) * self.m2
        return h1, z2, h2

    def forward(self, x):
        return self.lins[2](self.hidden(x)[2])

    def params_kept(self) -> int:
        n1, n2 = int(self.m1.sum()), int(self.m2.sum())
        return n1 * (784 + 1) + n2 * (n1 + 1) + 10 * (n2 + 1)

    def to_sequential(self) -> torch.nn.Sequential:
        """Plain Sequential in which every killed neuron is provably dead on any box: zero incoming weights,
        bias -1, zero outgoing weights (it outputs 0 anyway)."""
        seq = mlp(SIZES)
        lin = [m for m in seq if isinstance(m, torch.nn.Linear)]
        with torch.no_grad():
            for a, b in zip(lin, self.lins):
                a.weight.copy_(b.weight)
                a.bias.copy_(b.bias)
            for k, m in enumerate((self.m1, self.m2)):
                dead = m == 0
                lin[k].weight[dead] = 0.0
                lin[k].bias[dead] = -1.0
                lin[k + 1].weight[:, dead] = 0.0
        return seq.eval()


TOTAL = Masked(mlp(SIZES)).params_kept()


# ----------------------------------------------------------------------------------------------- losses
def kd_loss(s, t, T=2.0):
    return F.kl_div(F.log_softmax(s / T, 1), F.log_softmax(t / T, 1), log_target=True, reduction="batchmean") * T * T


def shift(x, gen, max_shift=2):
    """Random integer translations of 28x28 images (zero fill): extra inputs for distillation."""
    n = x.shape[0]
    out = torch.zeros_like(x)
    dx = torch.randint(-max_shift, max_shift + 1, (n,), generator=gen)
    dy = torch.randint(-max_shift, max_shift + 1, (n,), generator=gen)
    img = x.view(n, 28, 28)
    o = out.view(n, 28, 28)
    for sx in range(-max_shift, max_shift + 1):
        for sy in range(-max_shift, max_shift + 1):
            sel = (dx == sx) & (dy == sy)
            if not sel.any():
                continue
            src = img[sel]
            src = torch.roll(src, (sy, sx), (1, 2))
            if sy > 0: src[:, :sy] = 0
            if sy < 0: src[:, sy:] = 0
            if sx > 0: src[:, :, :sx] = 0
            if sx < 0: src[:, :, sx:] = 0
            o[sel] = src
    return out


def finetune(net, teacher, X, y, epochs, loss, lr0=1e-3, lr1=1e-4, aug=False, seed=0, batch=64):
    if epochs <= 0:
        return
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr0)
    steps = epochs * math.ceil(len(X) / batch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (lr1 / lr0) + (1 - lr1 / lr0) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(X), generator=gen)
        for i in range(0, len(X), batch):
            idx = perm[i:i + batch]
            xb, yb = X[idx], y[idx]
            if aug:
                xb = torch.cat([xb, shift(xb, gen)])
            out = net(xb)
            if loss == "ce":
                l = F.cross_entropy(out[:len(yb)], yb)
            else:
                with torch.no_grad():
                    t = teacher(xb)
                l = kd_loss(out, t)
                if loss == "kd+ce":
                    l = l + 0.5 * F.cross_entropy(out[:len(yb)], yb)
            opt.zero_grad()
            l.backward()
            opt.step()
            sched.step()
    net.eval()


# ----------------------------------------------------------------------------------------------- scores
@torch.no_grad()
def naive_scores(net, X):
    h1, _, h2 = net.hidden(X)
    s1 = h1.mean(0) * net.lins[1].weight.norm(dim=0)
    s2 = h2.mean(0) * net.lins[2].weight.norm(dim=0)
    return s1, s2


@torch.no_grad()
def ablation_scores(net, teacher, X, per_param=True):
    """Increase of the distillation loss (KL to the original) when a neuron is killed and its mean output is
    folded into the next bias, optionally divided by the parameters its removal saves."""
    t = teacher(X)
    h1, z2, h2 = net.hidden(X)
    W2, W3 = net.lins[1].weight, net.lins[2].weight
    n1, n2 = int(net.m1.sum()), int(net.m2.sum())
    s1 = torch.full((h1.shape[1],), float("inf"))
    s2 = torch.full((h2.shape[1],), float("inf"))
    base = kd_loss(net.lins[2](h2), t).item()
    for j in torch.nonzero(net.m1).flatten().tolist():
        d = h1[:, j:j + 1] - h1[:, j].mean()
        z = z2 - d * W2[:, j]
        s1[j] = kd_loss(net.lins[2](F.relu(z) * net.m2), t).item() - base
    for j in torch.nonzero(net.m2).flatten().tolist():
        d = h2[:, j:j + 1] - h2[:, j].mean()
        s2[j] = kd_loss(net.lins[2](h2) - d * W3[:, j], t).item() - base
    if per_param:
        s1 = s1 / (785 + n2)
        s2 = s2 / (n1 + 11)
    return s1, s2


@torch.no_grad()
def refit(net, teacher_net, X, layer, ridge=1e-3):
    """Least-squares refit of the weights after ``layer`` (1: W2,b2 to the original's layer-2 pre-activations;
    2: W3,b3 to the original's logits) from the student's kept activations."""
    h1, _, h2 = net.hidden(X)
    th1, tz2, _ = teacher_net.hidden(X)
    if layer == 1:
        A, target, m, lin = h1, tz2, net.m1, net.lins[1]
    else:
        A, target, m, lin = h2, teacher_net(X), net.m2, net.lins[2]
    keep = torch.nonzero(m).flatten()
    A = torch.cat([A[:, keep], torch.ones(len(A), 1)], 1).double()
    G = A.T @ A + ridge * len(A) * torch.eye(A.shape[1], dtype=torch.float64)
    sol = torch.linalg.solve(G, A.T @ target.double()).float()
    lin.weight.zero_()
    lin.weight[:, keep] = sol[:-1].T
    lin.bias.copy_(sol[-1])


@torch.no_grad()
def kill(net, which, j, X, fold_mean=True):
    h1, _, h2 = net.hidden(X)
    if which == 1:
        if fold_mean:
            net.lins[1].bias += net.lins[1].weight[:, j] * h1[:, j].mean()
        net.m1[j] = 0
    else:
        if fold_mean:
            net.lins[2].bias += net.lins[2].weight[:, j] * h2[:, j].mean()
        net.m2[j] = 0


# ----------------------------------------------------------------------------------------------- methods
#: name -> options. score: naive | ablation; rounds: kill in this many steps (fine-tuning between);
#: ft: epochs per round; final: extra epochs at the end; loss: ce | kd | kd+ce; refit: least-squares refit
#: of the next layer after each round; aug: distill on shifted copies too; layer1_only: never kill layer 2.
METHODS = {
    "naive": dict(score="naive", rounds=1, ft=0, final=15, loss="ce", refit=False, aug=False, fold=False),
    "naive+kd": dict(score="naive", rounds=1, ft=0, final=15, loss="kd", refit=False, aug=False, fold=True),
    "abl+kd": dict(score="ablation", rounds=1, ft=0, final=15, loss="kd", refit=False, aug=False, fold=True),
    "abl+refit+kd": dict(score="ablation", rounds=1, ft=0, final=15, loss="kd", refit=True, aug=False, fold=True),
    "gradual+kd": dict(score="ablation", rounds=5, ft=2, final=8, loss="kd", refit=True, aug=False, fold=True),
    "gradual+kd+aug": dict(score="ablation", rounds=5, ft=2, final=8, loss="kd", refit=True, aug=True, fold=True),
}


def stabilize(base, X, y, target, opts, log=print, seed=0):
    """Kill neurons until at most (1-target) of the parameters are kept; returns the masked network."""
    teacher = Masked(base).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    net = Masked(base)
    Xs = X[:4000]  # scoring / refit sample
    goal = int(TOTAL * (1 - target))
    for r in range(1, opts["rounds"] + 1):
        round_goal = TOTAL - int((TOTAL - goal) * r / opts["rounds"])
        while net.params_kept() > round_goal:
            if opts["score"] == "naive":
                s1, s2 = naive_scores(net, Xs)
                s1 = torch.where(net.m1 > 0, s1, torch.tensor(float("inf")))
                s2 = torch.where(net.m2 > 0, s2, torch.tensor(float("inf")))
                # the earlier baseline ranks layer-1 and layer-2 neurons on one scale of the score
                # divided by the parameters each removal saves
                n1, n2 = int(net.m1.sum()), int(net.m2.sum())
                s1, s2 = s1 / (785 + n2), s2 / (n1 + 11)
            else:
                s1, s2 = ablation_scores(net, teacher, Xs)
            # kill a small batch of the cheapest (~1/4 of the neurons still to remove, >= 1), then rescore
            k = max(1, int(0.25 * (net.params_kept() - round_goal) / 800))
            cand = sorted([(float(s1[j]), 1, j) for j in range(100)] + [(float(s2[j]), 2, j) for j in range(100)])
            for s, layer, j in cand[:k]:
                if math.isinf(s) or net.params_kept() <= round_goal:
                    break
                kill(net, layer, j, Xs, fold_mean=opts["fold"])
        if opts["refit"]:
            refit(net, teacher, Xs, 1)
            refit(net, teacher, Xs, 2)
        last = r == opts["rounds"]
        ep = opts["ft"] + (opts["final"] if last else 0)
        finetune(net, teacher, X, y, ep, opts["loss"], aug=opts["aug"], seed=r + 100 * seed)
        log(f"    round {r}: n1={int(net.m1.sum())} n2={int(net.m2.sum())} kept={net.params_kept()} "
            f"train acc={accuracy(net, X.numpy(), y.numpy()):.4f}")
    return net


def measure(seq, path: Path, Xh, yh):
    import exactcomp
    import onnxruntime as ort

    export(seq, Xh.numpy(), path, 0.0, 1.0)
    t0 = time.perf_counter()
    res = exactcomp.compress(str(path), {"lower": 0.0, "upper": 1.0}, time_limit=60)
    tc = time.perf_counter() - t0
    rep = res.report()
    small = path.with_name(path.stem + ".small.onnx")
    small.write_bytes(res.to_onnx().SerializeToString())
    sess = ort.InferenceSession(str(small), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    shape = sess.get_inputs()[0].shape
    xin = Xh.numpy().reshape(len(Xh), *[d if isinstance(d, int) else -1 for d in shape[1:]]) \
        if len(shape) > 2 else Xh.numpy().reshape(len(Xh), -1)
    logits = sess.run(None, {name: xin})[0]
    acc = float((logits.argmax(1) == yh.numpy()).mean())
    return dict(removed=res.removed_fraction, params_after=res.parameters_after, acc=acc, compress_s=tc,
                unknown=rep["totals"]["unknown"], widths=res.widths["after"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--methods", nargs="*", default=list(METHODS))
    ap.add_argument("--targets", nargs="*", type=float, default=[0.45, 0.55, 0.65])
    ap.add_argument("--seeds", nargs="*", type=int, default=[0], help="fine-tuning seeds (held-out noise)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    images, labels = load_mnist()
    X = torch.tensor(images[:8000].reshape(-1, 1, 28, 28))
    y = torch.tensor(labels[:8000])
    Xh = torch.tensor(images[8000:].reshape(-1, 1, 28, 28))
    yh = torch.tensor(labels[8000:])

    ckpt = args.out / "base_l1_0.pt"
    base = mlp(SIZES)
    if ckpt.exists():
        base.load_state_dict(torch.load(ckpt))
    else:
        t0 = time.perf_counter()
        train(base, X.numpy(), y.numpy(), l1=0.0, epochs=20, seed=0)
        print(f"trained base in {time.perf_counter() - t0:.1f}s")
        torch.save(base.state_dict(), ckpt)
    base.eval()
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    if not any(r["method"] == "original" for r in results):
        m = measure(base, args.out / "base.onnx", Xh, yh)
        results.append(dict(method="original", target=0.0, finetune_s=0.0, **m))
        results_path.write_text(json.dumps(results, indent=1))
    base_acc = next(r["acc"] for r in results if r["method"] == "original")
    base_removed = next(r["removed"] for r in results if r["method"] == "original")
    print(f"original (l1=0): held-out acc {base_acc:.4f}, exact removal {base_removed:.3f}")
    runs = [(n, t, s) for n in args.methods for t in args.targets for s in args.seeds]
    for name, target, seed in runs:
        if any(r["method"] == name and r["target"] == target and r.get("seed", 0) == seed for r in results):
            continue
        print(f"{name} target {target:.2f} seed {seed}")
        t0 = time.perf_counter()
        net = stabilize(base, X, y, target, METHODS[name], seed=seed)
        tf = time.perf_counter() - t0
        m = measure(net.to_sequential(), args.out / f"{name}_{int(target * 100)}_s{seed}.onnx", Xh, yh)
        row = dict(method=name, target=target, seed=seed, finetune_s=tf, **m)
        print(f"  removed {m['removed']:.3f}  acc {m['acc']:.4f} ({100 * (m['acc'] - base_acc):+.2f} pt)  "
              f"compress {m['compress_s']:.1f}s unknown {m['unknown']}  fine-tune {tf:.0f}s  widths {m['widths']}")
        results.append(row)
        results_path.write_text(json.dumps(results, indent=1))
    print("\nmean over seeds:\n")
    print("| method | target | seeds | removed % | held-out acc (mean) | drop pt (mean / worst) | compress s | unknown | "
          "fine-tune s | widths (seed 0) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    groups: dict = {}
    for r in results:
        groups.setdefault((r["method"], r["target"]), []).append(r)
    for (name, target), rs in sorted(groups.items(), key=lambda kv: (kv[0][0] != "original", kv[0][0], kv[0][1])):
        acc = np.array([r["acc"] for r in rs])
        print(f"| {name} | {target:.2f} | {len(rs)} | {100 * np.mean([r['removed'] for r in rs]):.1f} | "
              f"{100 * acc.mean():.2f} | {100 * (acc.mean() - base_acc):+.2f} / {100 * (acc.min() - base_acc):+.2f} | "
              f"{max(r['compress_s'] for r in rs):.1f} | {max(r['unknown'] for r in rs)} | "
              f"{np.mean([r['finetune_s'] for r in rs]):.0f} | {rs[0]['widths']} |")
    print("\nall runs:\n")
    print("| method | target | seed | removed % | held-out acc | drop (pt) | compress s | unknown | fine-tune s | widths |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(results, key=lambda r: (r["method"] != "original", r["method"], r["target"], r.get("seed", 0))):
        print(f"| {r['method']} | {r['target']:.2f} | {r.get('seed', 0)} | {100 * r['removed']:.1f} | {100 * r['acc']:.2f} | "
              f"{100 * (r['acc'] - base_acc):+.2f} | {r['compress_s']:.1f} | {r['unknown']} | {r['finetune_s']:.0f} | "
              f"{r['widths']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
