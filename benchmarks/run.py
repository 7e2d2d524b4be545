"""Run stability strategies on the benchmark networks and write CSV/JSON results and a table.

    python benchmarks/train_nets.py                     # once: trains benchmarks/networks/*.onnx
    python benchmarks/run.py --strategies auto --time-limit 120 --out benchmarks/results/auto.json
    python benchmarks/run.py --strategies per-neuron --time-limit 120 --out benchmarks/results/per-neuron.json
    python benchmarks/run.py --summarize benchmarks/results/*.json   # -> results.csv, table.md

Each run: import, analysis with ``--time-limit`` for the LP/MILP phases, rewrite; the record holds
the time per phase, the stability counts, unknowns and parameters removed. ``--summarize`` joins the
files per network and reports the ratio per-neuron time / auto time (a lower bound, marked ">", when
the baseline hit its time limit).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_one(path: Path, strategy: str, time_limit: float | None, jobs: int | None = None) -> dict:
    """One run through ``exactcomp bench``'s runner (HiGHS, big-M), plus this script's network metadata."""
    from exactcomp.cli.bench import run_one as bench_run

    record = bench_run(path, path.with_suffix(".box.json"), strategy, "highs", "bigm", time_limit, jobs)
    if record["error"]:
        raise SystemExit(f"{path}: {record['error']}")
    meta = json.loads((path.parent / "nets.json").read_text()).get(path.stem, {})
    return {"network": path.stem, "shape": meta.get("shape"), "seed": meta.get("seed"), "jobs": jobs, **record}


def machine() -> dict:
    from exactcomp.cli.bench import machine_info

    return machine_info()


def summarize(files: list[Path], out_dir: Path) -> None:
    records = [r for f in files for r in json.loads(f.read_text())["records"]]
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = ["network", "shape", "l1", "seed", "strategy", "time_limit", "wall_seconds", "analysis_seconds",
            "stably_active", "stably_inactive", "unstable", "unknown", "parameters_before", "parameters_after"]
    for r in records:
        r["analysis_seconds"] = round(sum(v for k, v in r["times"].items()), 3)
    with open(out_dir / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys + ["methods"], extrasaction="ignore")
        w.writeheader()
        for r in records:
            w.writerow({**r, "methods": json.dumps(r["methods"], sort_keys=True)})
    by_net: dict[str, dict[str, dict]] = {}
    for r in records:
        by_net.setdefault(r["network"], {})[r["strategy"]] = r
    lines = ["| network | strategy | analysis s (bounds+witness / LP / MILP) | active | inactive | unstable | unknown "
             "| params before → after | per-neuron / auto |", "|---|---|---|---|---|---|---|---|---|"]
    ratios = []
    for name in sorted(by_net, key=lambda n: (by_net[n][next(iter(by_net[n]))]["shape"] or "", n)):
        runs = by_net[name]
        ratio = ""
        if "auto" in runs and "per-neuron" in runs:
            base, auto = runs["per-neuron"], runs["auto"]
            value = base["analysis_seconds"] / max(auto["analysis_seconds"], 1e-9)
            bound = ">" if base["methods"].get("unknown:time_limit") else ""
            if auto["methods"].get("unknown:time_limit"):
                ratio = f"— (both at limit; unknowns {auto['unknown']} vs {base['unknown']})"
            else:
                ratio = f"{bound}{value:.1f}×"
                ratios.append(value)
        for strategy, r in sorted(runs.items()):
            t = r["times"]
            phases = f"{t.get('bounds', 0) + t.get('witnesses', 0):.1f} / {t.get('lp', 0):.1f} / " \
                     f"{t.get('milp', 0) + t.get('per_neuron', 0):.1f}"
            lines.append(f"| {name} | {strategy} | {r['analysis_seconds']:.1f} ({phases}) | {r['stably_active']} | "
                         f"{r['stably_inactive']} | {r['unstable']} | {r['unknown']} | "
                         f"{r['parameters_before']} → {r['parameters_after']} | {ratio if strategy == 'auto' else ''} |")
    if ratios:
        ratios.sort()
        lines.append("")
        lines.append(f"Median per-neuron / auto time ratio over the {len(ratios)} networks auto decided completely "
                     f"(lower bounds where the baseline hit its limit): "
                     f"{ratios[len(ratios) // 2] if len(ratios) % 2 else (ratios[len(ratios) // 2 - 1] + ratios[len(ratios) // 2]) / 2:.1f}×")
    (out_dir / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", type=Path, default=HERE / "networks")
    ap.add_argument("--only", help="comma-separated shapes (2x100,...) or network names")
    ap.add_argument("--strategies", default="auto,per-neuron")
    ap.add_argument("--time-limit", type=float, default=600.0)
    ap.add_argument("--jobs", type=int, help="per-neuron MILPs at once (default: exactcomp's, CPU cores)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "results.json")
    ap.add_argument("--summarize", type=Path, nargs="+", help="join result files into results.csv and table.md")
    args = ap.parse_args(argv)
    if args.summarize:
        summarize(args.summarize, HERE / "results")
        return 0
    only = set(args.only.split(",")) if args.only else None
    nets = sorted(args.networks.glob("*.onnx"))
    meta = json.loads((args.networks / "nets.json").read_text()) if (args.networks / "nets.json").exists() else {}
    nets = [p for p in nets if not only or p.stem in only or meta.get(p.stem, {}).get("shape") in only]
    if not nets:
        print(f"no networks in {args.networks}; run benchmarks/train_nets.py first", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"machine": machine(), "command": " ".join(sys.argv), "records": []}
    for path in nets:
        for strategy in args.strategies.split(","):
            record = run_one(path, strategy, args.time_limit, args.jobs)
            doc["records"].append(record)
            args.out.write_text(json.dumps(doc, indent=2) + "\n")
            print(f"{path.stem:32s} {strategy:10s} {record['wall_seconds']:8.1f}s unknown {record['unknown']:3d} "
                  f"stable {record['stably_active'] + record['stably_inactive']:4d} {record['methods']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
