"""Train the benchmark networks of the NeurIPS 2021 paper's size range on MNIST.

    python benchmarks/train_nets.py [--out benchmarks/networks] [--only 2x100,3x100]

Fully connected ReLU MLPs ``784 -> width x depth -> 10`` trained with Adam and an L1 penalty on all
weights (the paper's way of making many neurons stable), inputs in [0, 1]. Data: the MNIST test set
in ``../shared/data/mnist`` (first 8,000 images for training, the last 2,000 held out for accuracy).
Deterministic for a given torch version (CPU). Writes ``<name>.onnx`` and ``<name>.box.json``
(the box [0, 1]^784) plus ``nets.json`` with accuracy per network. The networks are not committed;
this script regenerates them in a few minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "models"))
from train import accuracy, export, load_mnist, mlp, train  # noqa: E402

#: (hidden layers, L1 weight, seed). L1 values chosen so that a good share of neurons is stable.
GRID = [(shape, l1, seed)
        for shape in ("2x100", "2x200", "3x100", "5x100", "2x400", "2x800")
        for l1, seed in ((1e-4, 0), (2e-4, 0), (2e-4, 1))]


def name_of(shape: str, l1: float, seed: int) -> str:
    return f"mnist_{shape}_l1-{l1:g}_s{seed}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "networks")
    ap.add_argument("--only", help="comma-separated shapes, e.g. 2x100,3x100")
    ap.add_argument("--epochs", type=int, default=15)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    images, labels = load_mnist()
    X = images.reshape(-1, 1, 28, 28)
    shapes = set(args.only.split(",")) if args.only else None
    index_path = args.out / "nets.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    for shape, l1, seed in GRID:
        if shapes and shape not in shapes:
            continue
        name = name_of(shape, l1, seed)
        depth, width = map(int, shape.split("x"))
        t0 = time.perf_counter()
        net = train(mlp([784] + [width] * depth + [10], seed=seed), X[:8000], labels[:8000],
                    l1=l1, epochs=args.epochs, seed=seed)
        acc = accuracy(net, X[8000:], labels[8000:])
        export(net, X, args.out / f"{name}.onnx", 0.0, 1.0)
        index[name] = {"shape": shape, "l1": l1, "seed": seed, "accuracy": acc, "epochs": args.epochs,
                       "train_seconds": round(time.perf_counter() - t0, 1)}
        index_path.write_text(json.dumps(index, indent=2) + "\n")
        print(f"{name}: held-out accuracy {acc:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
