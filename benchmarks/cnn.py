"""The CNN table: MNIST CNNs of a few sizes, with and without L1, compressed with the default options.

    python benchmarks/cnn.py [--out benchmarks/results/cnn.json] [--time-limit 300] [--only SUBSTRING]
    python benchmarks/cnn.py --summarize benchmarks/results/cnn.json

(``--only``: run the networks whose name contains it, and replace their rows in ``--out``.)

Each CNN is ``Conv(1→a, 3x3, stride 2, pad 1) → ReLU → Conv(a→b, 3x3, stride 2, pad 1) → ReLU →
Linear(b·7·7 → d) → ReLU → Linear(d → 10)``; the residual networks are ``models/train.py``'s
``resnet_tiny`` (a stem convolution and two residual blocks, one with an identity shortcut, one with
a 1x1-convolution shortcut); the max-pooling ones are ``Conv(1→a, 3x3, pad 1) → ReLU → MaxPool(2) →
Conv(a→b, 3x3, pad 1) → ReLU → MaxPool(2) → Linear(b·7·7 → d) → ReLU → Linear(d → 10)`` (``models/train.py``'s
``cnn_maxpool``; "unknown" counts the model's neurons, not the pooling's comparison neurons). All are trained like ``models/train.py`` (Adam, the first 8,000
images of the MNIST test set in ../shared/data/mnist, the last 2,000 held out; L1 on all weights, 0
for the plain ones), written to ``benchmarks/networks/cnn_*.onnx`` (not committed) and compressed over
the box [0, 1]^784 by ``exactcomp compress`` with its defaults (the portfolio, 300 s budget for the
proof phases). Reported: accuracy, channels per convolution before/after, parameters, unknowns, the
time of each phase, and the verification.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "models"))
from train import accuracy, export, load_mnist, resnet_tiny, train  # noqa: E402

#: (kind, first channels, second channels, dense width, L1 weight, epochs)
GRID = [("strided", 8, 16, 32, 0.0, 10), ("strided", 8, 16, 32, 1e-3, 10), ("strided", 16, 32, 64, 0.0, 10),
        ("strided", 16, 32, 64, 1e-3, 10), ("strided", 32, 64, 100, 1e-3, 10), ("resnet", 0, 0, 0, 0.0, 10),
        ("resnet", 0, 0, 0, 1e-3, 10), ("maxpool", 8, 16, 32, 0.0, 10), ("maxpool", 8, 16, 32, 2e-3, 10),
        ("maxpool", 16, 32, 64, 2e-3, 10)]


def name_of(kind, a, b, d, l1) -> str:
    return {"resnet": f"resnet_tiny_l1-{l1:g}", "strided": f"cnn_{a}x{b}x{d}_l1-{l1:g}",
            "maxpool": f"cnn_maxpool_{a}x{b}x{d}_l1-{l1:g}"}[kind]


def build_maxpool(a: int, b: int, d: int, seed: int = 0) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, a, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(a, b, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(b * 49, d), torch.nn.ReLU(), torch.nn.Linear(d, 10))


def build(a: int, b: int, d: int, seed: int = 0) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, a, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(a, b, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(b * 49, d), torch.nn.ReLU(), torch.nn.Linear(d, 10))


def run(args) -> int:
    torch.set_num_threads(2)
    images, labels = load_mnist()
    X = images.reshape(-1, 1, 28, 28)
    folder = HERE / "networks"
    folder.mkdir(exist_ok=True)
    records = []
    for kind, a, b, d, l1, epochs in GRID:
        name = name_of(kind, a, b, d, l1)
        if args.only and args.only not in name:
            continue
        model = folder / f"{name}.onnx"
        t0 = time.perf_counter()
        builder = {"resnet": lambda: resnet_tiny(), "strided": lambda: build(a, b, d), "maxpool": lambda: build_maxpool(a, b, d)}
        net = train(builder[kind](), X[:8000], labels[:8000], l1=l1, epochs=epochs, seed=0)
        acc = accuracy(net, X[8000:], labels[8000:])
        export(net, X, model, 0.0, 1.0)
        train_s = time.perf_counter() - t0
        out, report = folder / f"{name}.small.onnx", folder / f"{name}.report.json"
        for path in (out, report, out.with_suffix(".witnesses.npy")):
            path.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "exactcomp", "compress", str(model), "--domain", str(model.with_suffix(".box.json")),
               "-o", str(out), "--report", str(report), "-q", "--time-limit", str(args.time_limit)]
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, check=False).returncode
        wall = time.perf_counter() - t0
        data = json.loads(report.read_text()) if report.exists() else {}
        record = {"network": name, "accuracy": acc, "train_seconds": round(train_s, 1), "exit": rc,
                  "wall_seconds": round(wall, 1), "times": data.get("times"), "parameters": data.get("parameters"),
                  "totals": data.get("totals"), "verification": (data.get("verification") or {}).get("passed"),
                  "channels": [e["channels"] for e in data.get("layers", []) if e.get("kind") == "conv"],
                  "decided_by": [e["decided_by"] for e in data.get("layers", [])],
                  "unknown_model_neurons": sum(e["unknown"] for e in data.get("layers", []) if e.get("kind") != "maxpool"),
                  "comparisons": sum(e["neurons"] for e in data.get("layers", []) if e.get("kind") == "maxpool")}
        for e in record["channels"]:
            e.pop("per_channel", None)
        records.append(record)
        print(json.dumps(record), flush=True)
    if args.only and args.out.exists():   # replace the rows that ran, keep the others
        ran = {r["network"] for r in records}
        records = [r for r in json.loads(args.out.read_text())["records"] if r["network"] not in ran] + records
    args.out.write_text(json.dumps({"time_limit": args.time_limit, "records": records}, indent=1) + "\n")
    return 0


def summarize(path: Path) -> int:
    data = json.loads(path.read_text())
    print("| network | accuracy | channels per convolution | parameters | removed | unknown | analysis s | verify |")
    print("|---|---|---|---|---|---|---|---|")
    for r in data["records"]:
        p, t = r["parameters"], r["times"]
        channels = ", ".join(f"{c['count']} → {c['kept']}" for c in r["channels"])
        analysis = sum(v for k, v in t.items() if k not in ("import", "rewrite", "export", "verify", "total"))
        print(f"| {r['network']} | {r['accuracy']:.3f} | {channels} | {p['before']:,} → {p['after']:,} | "
              f"{100 * p['removed_fraction']:.1f} % | {r.get('unknown_model_neurons', r['totals']['unknown'])} | {analysis:.1f} | "
              f"{'passed' if r['verification'] else 'FAILED'} |")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "results" / "cnn.json")
    ap.add_argument("--time-limit", type=float, default=300.0)
    ap.add_argument("--summarize", type=Path)
    ap.add_argument("--only", help="run only the networks whose name contains this; their rows replace those in --out")
    args = ap.parse_args(argv)
    return summarize(args.summarize) if args.summarize else run(args)


if __name__ == "__main__":
    sys.exit(main())
