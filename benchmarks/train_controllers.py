"""Train small low-dimensional ReLU regressors ("controllers") and write operating-region boxes.

    python benchmarks/train_controllers.py [--out benchmarks/controllers]

Networks ``ctrl_{inputs}in_5x50_s{seed}``: ``inputs -> 50 x 5 -> 2`` ReLU MLPs (Adam, a little L1)
fitted to a smooth nonlinear feedback law of a planar vehicle, ``u = (-k1 tanh(e_lat) - k2 sin(e_head)
+ c v κ, ...)`` with extra inputs as disturbances, on uniform samples of ``[-1, 1]^inputs``. Each gets
five boxes: ``.box0.json`` .. ``.box2.json`` random operating regions whose sides are 5-20 % of the
input range, ``.box3.json`` one whose sides are half the range, ``.box4.json`` the whole training
domain ``[-1, 1]^inputs`` — low-dimensional domains where input splitting should decide every neuron.
Deterministic for a given torch version. Not committed: regenerated in about a minute.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def law(X: np.ndarray) -> np.ndarray:
    """A smooth two-output control law of the first five inputs (the rest act as small disturbances)."""
    e_lat, e_head, v, kappa, w = X[:, 0], X[:, 1], X[:, 2], X[:, 3], X[:, 4]
    extra = X[:, 5:].sum(axis=1) * 0.1 if X.shape[1] > 5 else 0.0
    steer = -1.5 * np.tanh(2 * e_lat) - 1.0 * np.sin(1.5 * e_head) + 0.8 * (1 + v) * kappa + extra
    accel = -0.7 * v + 0.3 * np.cos(2 * e_head) * (1 - np.abs(e_lat)) + 0.2 * w - extra
    return np.stack([steer, accel], axis=1).astype(np.float32)


def train(inputs: int, seed: int, epochs: int = 60):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(20_000, inputs)).astype(np.float32)
    Y = law(X)
    layers, width = [], inputs
    for _ in range(5):
        layers += [torch.nn.Linear(width, 50), torch.nn.ReLU()]
        width = 50
    net = torch.nn.Sequential(*layers, torch.nn.Linear(width, 2))
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    Xt, Yt = torch.tensor(X), torch.tensor(Y)
    for _ in range(epochs):
        perm = torch.randperm(len(Xt))
        for i in range(0, len(Xt), 256):
            idx = perm[i:i + 256]
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(net(Xt[idx]), Yt[idx])
            loss = loss + 1e-5 * sum(p.abs().sum() for n, p in net.named_parameters() if n.endswith("weight"))
            loss.backward()
            opt.step()
    with torch.no_grad():
        Xv = torch.tensor(rng.uniform(-1, 1, size=(2000, inputs)).astype(np.float32))
        rmse = float(torch.sqrt(torch.nn.functional.mse_loss(net(Xv), torch.tensor(law(Xv.numpy())))))
    return net, rmse


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "controllers")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    index = {}
    for inputs in (5, 6, 8):
        for seed in (0, 1):
            name = f"ctrl_{inputs}in_5x50_s{seed}"
            net, rmse = train(inputs, seed)
            path = args.out / f"{name}.onnx"
            torch.onnx.export(net.eval(), (torch.zeros(1, inputs),), str(path), dynamo=False, input_names=["state"],
                              output_names=["control"], dynamic_axes={"state": {0: "batch"}, "control": {0: "batch"}})
            rng = np.random.default_rng(100 + seed)
            for b, (lo, hi) in enumerate([(0.05, 0.2)] * 3 + [(0.5, 0.5), (1.0, 1.0)]):
                side = rng.uniform(lo, hi, size=inputs) * 2.0
                lower = rng.uniform(-1, 1 - side) if hi < 1 else -np.ones(inputs)
                (args.out / f"{name}.box{b}.json").write_text(
                    json.dumps({"lower": lower.round(4).tolist(), "upper": (lower + side).round(4).tolist()}) + "\n")
            index[name] = {"inputs": inputs, "seed": seed, "validation_rmse": round(rmse, 4)}
            print(f"{name}: validation RMSE {rmse:.4f}", flush=True)
    (args.out / "controllers.json").write_text(json.dumps(index, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
