"""Proofs that pay (issue 23): ``exactcomp compress`` by default (proofs only where they can change the written
model, stopped once what is left is below ``--min-gain``), with ``--min-gain 0`` (proofs that pay, to the end of
the budget) and ``--complete`` (every neuron the budget allows, the behaviour before), same networks, same
budget, one run on this machine.

    python benchmarks/payoff.py [--time-limit 120] [--only SUBSTRING] [--out benchmarks/results/payoff.json]
    python benchmarks/payoff.py --summarize benchmarks/results/payoff.json

Networks: the CNNs, max-pooling CNN and residual net trained without L1 of ``benchmarks/cnn.py`` (``*_l1-0``;
trained here into ``benchmarks/networks/`` if absent, with cnn.py's recipe) and ``EXTRA`` files given with
``--model PATH`` (a box JSON beside each, ``NAME.box.json``). Reported per network and mode: parameters after,
unknown and not-needed neurons (model neurons; a max pooling's comparisons are not counted), the analysis
seconds (bounds to certificate re-check) and the wall time, and whether the two written models have the same
parameter count and the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLAIN = [("strided", 8, 16, 32, 0.0, 10), ("strided", 16, 32, 64, 0.0, 10), ("resnet", 0, 0, 0, 0.0, 10),
         ("maxpool", 8, 16, 32, 0.0, 10)]


def _networks(only: str | None) -> list[Path]:
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(HERE.parent / "models"))
    import cnn
    from train import export, load_mnist, resnet_tiny, train

    folder = HERE / "networks"
    folder.mkdir(exist_ok=True)
    out, data = [], None
    for kind, a, b, d, l1, epochs in PLAIN:
        name = cnn.name_of(kind, a, b, d, l1)
        if only and only not in name:
            continue
        model = folder / f"{name}.onnx"
        if not model.exists():
            if data is None:
                images, labels = load_mnist()
                data = images.reshape(-1, 1, 28, 28), labels
            builder = {"resnet": resnet_tiny, "strided": lambda: cnn.build(a, b, d),
                       "maxpool": lambda: cnn.build_maxpool(a, b, d)}[kind]
            net = train(builder(), data[0][:8000], data[1][:8000], l1=l1, epochs=epochs, seed=0)
            export(net, data[0], model, 0.0, 1.0)
        out.append(model)
    return out


#: mode -> extra compress options: every neuron; proofs that pay, to the end; proofs that pay, above --min-gain
MODES = {"complete": ["--complete"], "payoff": ["--min-gain", "0"], "default": []}


def _compress(model: Path, time_limit: float, mode: str) -> dict:
    tag = mode
    small, report = model.with_suffix(f".{tag}.onnx"), model.with_suffix(f".{tag}.json")
    for path in (small, report):
        path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "exactcomp", "compress", str(model), "--domain", str(model.with_suffix(".box.json")),
           "-o", str(small), "--report", str(report), "-q", "--no-witnesses", "--time-limit", str(time_limit),
           *MODES[mode]]
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, capture_output=True, text=True).returncode
    wall = time.perf_counter() - t0
    data = json.loads(report.read_text())
    model_layers = [e for e in data["layers"] if e.get("kind") != "maxpool"]
    analysis = sum(v for k, v in data["times"].items() if k not in ("import", "rewrite", "export", "verify", "total"))
    return {"mode": tag, "exit": rc, "parameters_after": data["parameters"]["after"],
            "parameters_before": data["parameters"]["before"],
            "unknown": sum(e["unknown"] for e in model_layers),
            "not_needed": sum(e.get("not_needed", 0) for e in model_layers),
            "low_gain": sum((e.get("unknown_reasons") or {}).get("low_gain", 0) for e in model_layers),
            "gain_left": data["analysis"].get("gain_left"),
            "final_size_at": _reached(data["analysis"].get("sizes") or [], data["parameters"]["after"]),
            "analysis_seconds": round(analysis, 1), "wall_seconds": round(wall, 1),
            "verified": (data.get("verification") or {}).get("passed"),
            "sha256": hashlib.sha256(small.read_bytes()).hexdigest() if small.exists() else None}


def _reached(sizes: list, final: int) -> float | None:
    """Seconds into the analysis when the written size was first reached (the anytime record)."""
    return next((t for t, size in sizes if size <= final), None)


def run(args) -> int:
    models = _networks(args.only) + [Path(m) for m in args.model]
    records = []
    for model in models:
        runs = [_compress(model, args.time_limit, mode) for mode in MODES]
        record = {"network": model.stem, "time_limit": args.time_limit, "runs": runs,
                  "same_parameters": len({r["parameters_after"] for r in runs}) == 1,
                  "same_bytes": len({r["sha256"] for r in runs}) == 1}
        records.append(record)
        print(json.dumps(record), flush=True)
        args.out.write_text(json.dumps({"records": records}, indent=1) + "\n")
    return summarize(args.out)


def summarize(path: Path) -> int:
    data = json.loads(Path(path).read_text())
    print("| network | mode | parameters after | unknown (low gain) | not needed | gain left | size reached at s "
          "| analysis s | wall s | same model |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in data["records"]:
        base = r["runs"][0]
        for run in r["runs"]:
            same = ("" if run is base else "same bytes" if run["sha256"] == base["sha256"] else
                    "same size" if run["parameters_after"] == base["parameters_after"] else "**differs**")
            print(f"| {r['network']} | {run['mode']} | {run['parameters_before']:,} → {run['parameters_after']:,} | "
                  f"{run['unknown']} ({run.get('low_gain', 0)}) | {run['not_needed']} | {run.get('gain_left')} | "
                  f"{run.get('final_size_at')} | {run['analysis_seconds']} | {run['wall_seconds']} | {same} |")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=120.0)
    ap.add_argument("--only")
    ap.add_argument("--model", action="append", default=[], help="another ONNX model (NAME.box.json beside it)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "payoff.json")
    ap.add_argument("--summarize", type=Path)
    args = ap.parse_args(argv)
    return summarize(args.summarize) if args.summarize else run(args)


if __name__ == "__main__":
    sys.exit(main())
