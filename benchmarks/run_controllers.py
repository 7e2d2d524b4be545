"""Input splitting on the low-dimensional controllers of ``train_controllers.py``, one run.

    python benchmarks/train_controllers.py
    python benchmarks/run_controllers.py [--time-limit 60] [--out benchmarks/results/controllers.json]

For every controller and each of its five boxes: the default schedule (with
``input-split``) and, for comparison, the same schedule without it (bounds, witnesses, LP, portfolio),
both with the same budget. Prints a markdown table: seconds, unknown neurons, neurons decided by
input splitting, parameters before and after.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WITHOUT_SPLIT = ("bounds", "witnesses", "lp", "portfolio")


def run(path: Path, box: Path, provers, limit: float) -> dict:
    from exactcomp import api

    net = api.load(path)
    t0 = time.perf_counter()
    result = api.compress(net, box, time_limit=limit, provers=provers)
    a = result.analysis
    split = sum(layer.methods().get("input_split", 0) for layer in a.layers)
    return {"model": path.stem, "box": box.name, "provers": list(provers) if provers else "default",
            "seconds": round(time.perf_counter() - t0, 2), "unknown": a.totals()["unknown"], "input_split": split,
            "stable": a.totals()["stably_active"] + a.totals()["stably_inactive"],
            "parameters_before": net.parameter_count, "parameters_after": result.compressed.parameter_count,
            "boxes": a.stats.get("input_boxes", 0)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=HERE / "controllers")
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "controllers.json")
    args = ap.parse_args(argv)
    rows = []
    for path in sorted(args.dir.glob("*.onnx")):
        for box in sorted(args.dir.glob(f"{path.stem}.box*.json")):
            for provers in (None, WITHOUT_SPLIT):
                row = run(path, box, provers, args.time_limit)
                rows.append(row)
                print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"time_limit": args.time_limit, "rows": rows}, indent=1) + "\n")
    print("\n| model | box | default: s | unknown | by input splitting | params before → after | "
          "without input-split: s | unknown |\n|---|---|---|---|---|---|---|---|")
    for a, b in zip(rows[::2], rows[1::2]):
        print(f"| {a['model']} | {a['box']} | {a['seconds']} | {a['unknown']} | {a['input_split']} | "
              f"{a['parameters_before']} → {a['parameters_after']} | {b['seconds']} | {b['unknown']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
