"""The prover portfolio (default ``auto``) against the MILP-only route of the previous ``auto``, one run.

    python benchmarks/train_nets.py                       # once: the 18 networks (not committed)
    python benchmarks/run_provers.py --out benchmarks/results/provers.json [--only 2x100,3x100] [--time-limit 300]
    python benchmarks/run_provers.py --summarize benchmarks/results/provers.json    # -> provers.md

Per network, in this order on the same machine: ``auto`` with its default schedule (bounds, witnesses,
input-split, lp, portfolio) and ``auto`` with ``--provers bounds,witnesses,lp,milp`` (LP tightening and
per-neuron MILPs: the default of the previous release), both with the same time budget for the proof
phases (default 300 s, the new default). Records times per prover, counts, how neurons were decided
and the statistics; the summary's ratio is MILP-only analysis time / portfolio analysis time (a lower
bound, ">", when the MILP-only run hit its budget). ``--configs per-neuron`` adds the CPAIOR 2020
baseline (``--strategy per-neuron``, same budget) for the per-neuron ratio.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIGS = {"portfolio": None, "milp-only": ("bounds", "witnesses", "lp", "milp"), "per-neuron": "per-neuron"}
DEFAULT_CONFIGS = ("portfolio", "milp-only")


def run_one(path: Path, provers, time_limit: float) -> dict:
    from exactcomp import api

    net = api.load(path)
    t0 = time.perf_counter()
    how = {"strategy": provers} if isinstance(provers, str) else {"provers": provers}
    result = api.compress(net, path.with_suffix(".box.json"), time_limit=time_limit, **how)
    wall = time.perf_counter() - t0
    a = result.analysis
    methods: dict[str, int] = {}
    for layer in a.layers:
        for m, n in layer.methods().items():
            methods[m] = methods.get(m, 0) + n
        for m, n in layer.unknown_reasons().items():
            methods[f"unknown:{m}"] = methods.get(f"unknown:{m}", 0) + n
    analysis_seconds = sum(v for k, v in a.times.items() if k not in ("rewrite", "import"))
    return {"network": path.stem, "neurons": int(sum(net.widths[:-1])), "wall_seconds": round(wall, 3),
            "analysis_seconds": round(analysis_seconds, 3), "times": {k: round(v, 3) for k, v in a.times.items()},
            **a.totals(), "methods": methods, "stats": dict(a.stats),
            "parameters_before": net.parameter_count, "parameters_after": result.compressed.parameter_count}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "results" / "provers.json")
    ap.add_argument("--only", help="comma-separated shapes or network names")
    ap.add_argument("--time-limit", type=float, default=300.0)
    ap.add_argument("--summarize", type=Path)
    ap.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                    help=f"comma-separated, of {', '.join(CONFIGS)} (per-neuron: the CPAIOR 2020 baseline)")
    args = ap.parse_args(argv)
    if args.summarize:
        print(summarize(json.loads(args.summarize.read_text())))
        return 0
    from exactcomp.cli.bench import machine_info

    nets = sorted((HERE / "networks").glob("mnist_*.onnx"), key=_order)   # the MLPs (cnn.py writes others)
    if args.only:
        keys = args.only.split(",")
        nets = [p for p in nets if any(k == p.stem or f"_{k}_" in p.stem for k in keys)]
    doc = {"machine": machine_info(), "time_limit": args.time_limit, "records": []}
    if args.out.exists():
        doc["records"] = json.loads(args.out.read_text())["records"]
    for path in nets:
        for config in args.configs.split(","):
            provers = CONFIGS[config]
            if any(r["network"] == path.stem and r["config"] == config for r in doc["records"]):
                continue
            record = {"config": config, **run_one(path, provers, args.time_limit)}
            doc["records"].append(record)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(doc, indent=1) + "\n")
            print(f"{path.stem} {config}: {record['analysis_seconds']:.1f} s, unknown {record['unknown']}, "
                  f"{record['methods']}", flush=True)
    return 0


def _order(path: Path):
    shape = path.stem.split("_")[1]
    depth, width = map(int, shape.split("x"))
    return depth * width, path.stem


def summarize(doc: dict) -> str:
    by_net: dict[str, dict] = {}
    for r in doc["records"]:
        by_net.setdefault(r["network"], {})[r["config"]] = r
    lines = [f"Time budget of the proof phases: {doc['time_limit']:g} s per run.", "",
             "| network | portfolio s | unknown | decided by (portfolio) | MILP-only s | unknown | ratio | "
             "per-neuron s | unknown | ratio |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name in sorted(by_net, key=lambda n: _order(Path(n + ".onnx"))):
        runs = by_net[name]
        p = runs.get("portfolio")
        if p is None:
            continue
        proof = {k: v for k, v in p["methods"].items() if k not in ("witness", "interval", "symbolic")}
        cells = []
        for config in ("milp-only", "per-neuron"):
            m = runs.get(config)
            if m is None:
                cells.append("— | — | —")
                continue
            capped = m["methods"].get("unknown:time_limit") or m["unknown"]
            ratio = m["analysis_seconds"] / max(p["analysis_seconds"], 1e-9)
            cells.append(f"{m['analysis_seconds']:.1f} | {m['unknown']} | {'>' if capped else ''}{ratio:.1f}×")
        lines.append(f"| {name} | {p['analysis_seconds']:.1f} | {p['unknown']} | {proof} | {' | '.join(cells)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
