"""First measurement of ``exactcomp stabilize`` (issue 21, in progress): the shipped MNIST architectures retrained
WITHOUT L1 (models/train.py's recipe, l1 = 0), stabilized over [0, 1]^784 with the default budget (0.5 points of
accuracy), then compressed exactly.

    python benchmarks/stabilize_first.py [mlp|cnn ...] [--out DIR]     # MNIST at ../shared/data/mnist

Fine-tunes on the first 8,000 images; the budget is measured on the last 2,000 (``--val-data``), which the
original never saw: selecting the round on them makes the accuracy after optimistic (no third split yet).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "models"))


def main() -> int:
    import torch
    from train import accuracy, cnn, export, load_mnist, mlp, train   # noqa: E402

    p = argparse.ArgumentParser()
    p.add_argument("models", nargs="*", default=["mlp", "cnn"])
    p.add_argument("--out", type=Path, default=Path("stabilize-first"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    X, y = load_mnist()
    X = X.reshape(-1, 1, 28, 28)
    for name, data in (("x", X[:8000]), ("y", y[:8000]), ("vx", X[8000:]), ("vy", y[8000:])):
        np.save(args.out / f"{name}.npy", data)
    (args.out / "box.json").write_text(json.dumps({"lower": 0.0, "upper": 1.0}))
    builds = {"mlp": (lambda: mlp([784, 100, 100, 10]), 20), "cnn": (cnn, 10)}
    rows = []
    for name in args.models:
        build, epochs = builds[name]
        torch.manual_seed(0)
        net = train(build(), X[:8000], y[:8000], l1=0.0, epochs=epochs, seed=0)
        base = args.out / f"{name}.onnx"
        export(net, X[:1], base, 0.0, 1.0)
        t0 = time.perf_counter()
        run = subprocess.run(["exactcomp", "stabilize", base.name, "--domain", "box.json", "--data", "x.npy", "--labels",
                              "y.npy", "--val-data", "vx.npy", "--val-labels", "vy.npy", "-o", f"{name}_stable.onnx",
                              "--report", f"{name}_stable.json"], cwd=args.out, capture_output=True, text=True)
        t_stab = time.perf_counter() - t0
        print(run.stderr + run.stdout)
        t0 = time.perf_counter()
        subprocess.run(["exactcomp", "compress", f"{name}_stable.onnx", "--domain", "box.json", "-o", f"{name}_small.onnx",
                        "--report", f"{name}_small.json", "-q"], cwd=args.out, check=True)
        t_comp = time.perf_counter() - t0
        record = json.loads((args.out / f"{name}_stable.json").read_text())
        report = json.loads((args.out / f"{name}_small.json").read_text())
        chosen = record["rounds"][record["chosen"] - 1]
        rows.append(f"| {name} | {100 * accuracy(net, X[8000:], y[8000:]):.2f} % | {100 * chosen['accuracy']:.2f} % | "
                    f"{chosen['units_given_up']} of {chosen['units']} | {report['parameters']['before']:,} -> "
                    f"{report['parameters']['after']:,} ({100 * report['parameters']['removed_fraction']:.1f} %) | "
                    f"{report['totals']['unknown']} | {t_stab:.0f} s | {t_comp:.1f} s |")
    table = ["| model (no L1) | accuracy before | after | units dead | parameters after exact compression | unknown | "
             "stabilize | compress |", "|---|---|---|---|---|---|---|---|", *rows]
    print("\n".join(table))
    (args.out / "table.md").write_text("\n".join(table) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
