"""Branch and bound on the 28 hard neurons of ../shared/notes/hard-neurons.md, one run, one core.

    python benchmarks/hard_neurons.py [--limit 60] [--out benchmarks/results/hard_neurons.json] [--device cuda]
    python benchmarks/hard_neurons.py --subtrees 1 --workers 2 [--executor ray]   # subtrees on workers

For each network (2x200_l1-0.0001_s0, 3x100_l1-0.0002_s0, 5x100_l1-0.0002_s0): the ``bounds``,
``witnesses`` and ``lp`` provers of the default schedule (so the bounds are exactcomp's LP-tightened
ones, as in the note), then every candidate left, each by :func:`exactcomp.bab.engine.branch_and_bound` with
``--limit`` seconds and torch on one thread. Every proof's certificate is re-checked in float64
(:func:`exactcomp.bab.engine.check_certificate`) and compared with sampling (200,000 uniform points of the
box plus every witness found: no input may show the opposite sign). With ``--subtrees D``, each neuron's
branch and bound is split at the root into ``2^D`` subtrees run on ``--workers`` worker processes (or Ray)
and merged (:mod:`exactcomp.provers.subtrees`); ``seconds`` is then wall-clock time and ``subdomains`` the
sum over the subtrees.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
NETWORKS = ["mnist_2x200_l1-0.0001_s0", "mnist_3x100_l1-0.0002_s0", "mnist_5x100_l1-0.0002_s0"]


def candidates_after_lp(name: str):
    from exactcomp import api
    from exactcomp.analysis import AnalysisOptions
    from exactcomp.formulations import get_formulation
    from exactcomp.provers import get_prover
    from exactcomp.provers.state import ProofState
    from exactcomp.solvers import get_solver

    net = api.load(HERE / "networks" / f"{name}.onnx")
    box = api.domain(net, HERE / "networks" / f"{name}.box.json")
    options = AnalysisOptions(time_limit=None, threads=1)
    state = ProofState.start(net, box, options)
    state.backend, state.formulation = get_solver("highs", threads=1), get_formulation("bigm")
    t0 = time.perf_counter()
    for prover in ("bounds", "witnesses", "lp"):
        for outcome in get_prover(prover).run(state):
            state.apply(outcome)
    return net, box, state, time.perf_counter() - t0


def main(argv=None) -> int:
    import torch

    from exactcomp.bab.engine import check_certificate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--summarize", type=Path, nargs="+", metavar="RESULTS",
                    help="print the markdown table of these result files (columns in this order) and stop")
    ap.add_argument("--limit", type=float, default=60.0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "hard_neurons.json")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--batch", type=int, help="children per iteration (default: 1024 on cpu, 8192 on cuda)")
    ap.add_argument("--subtrees", type=int, default=0, metavar="D", help="split each tree into 2^D subtrees")
    ap.add_argument("--workers", type=int, default=2, help="worker processes for --subtrees (default 2)")
    ap.add_argument("--executor", default="local", help="local (default) or ray, for --subtrees")
    args = ap.parse_args(argv)
    if args.summarize:
        print(summarize([json.loads(p.read_text()) for p in args.summarize]))
        return 0
    torch.set_num_threads(1)
    from exactcomp.bab.engine import BabOptions, branch_and_bound
    from exactcomp.cli.bench import machine_info
    from exactcomp.provers.bab import GPU_BATCH
    from exactcomp.witnesses.region_walk import region_walk

    batch = args.batch or (GPU_BATCH if args.device.startswith("cuda") else BabOptions.batch)
    options = BabOptions(device=args.device, batch=batch)

    rows = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"limit": args.limit, "device": args.device, "batch": batch, "machine": machine_info(), "rows": rows}
    executor = None
    if args.subtrees:
        from exactcomp.executors import get_executor

        executor = get_executor(args.executor, args.workers)
        doc.update(subtrees=args.subtrees, workers=args.workers, executor=args.executor)
    if args.device.startswith("cuda"):
        doc["gpu"] = torch.cuda.get_device_name(0)
    for name in NETWORKS:
        net, box, state, prep = candidates_after_lp(name)
        X = box.sample(200_000, np.random.default_rng(0))
        _, pre = net.forward(np.vstack([X, state.tracker.pool()]), return_preactivations=True)
        print(f"{name}: bounds + witnesses + LP {prep:.1f} s, {state.candidate_count()} candidates", flush=True)
        for c in state.open_candidates():
            lp_bound = state.upper[c.layer][c.neuron] if c.sign > 0 else -state.lower[c.layer][c.neuron]
            if executor is not None:
                r = _by_subtrees(executor, net, box, state, c, args)
            else:
                r = branch_and_bound(net, box, state.bounds(c.layer + 1), (c.layer, c.neuron, c.sign), state.margin,
                                     deadline=time.perf_counter() + args.limit, options=options)
            checked = check_certificate(net, box, r.certificate) if r.status == "proven" else None
            walk = None
            if r.status in ("near_zero", "open") and len(r.points):   # what the portfolio does next
                walk = region_walk(net, box, (c.layer, c.neuron, c.sign), r.points[0])[1]
            sampled = float((c.sign * pre[c.layer][:, c.neuron]).max())
            row = {"network": name, "neuron": f"{c.layer + 1}:{c.neuron}:{int(c.sign)}", "lp_bound": lp_bound,
                   "status": r.status, "seconds": round(r.seconds, 2), "subdomains": r.subdomains,
                   "leaves": len(r.certificate.leaves) if r.certificate else 0, "certificate_ok": checked,
                   "sampled_max": sampled, "best_point": r.best_value, "region_walk": walk,
                   "contradiction": bool(r.status == "proven" and sampled > 0)}
            rows.append(row)
            print(json.dumps(row), flush=True)
            doc["rows"] = rows
            args.out.write_text(json.dumps(doc, indent=1) + "\n")   # after every neuron: a cut run keeps its rows
    return 0


def _by_subtrees(executor, net, box, state, c, args):
    """The subtrees of one neuron on the executor, merged: a BabResult-like record (wall-clock seconds)."""
    from types import SimpleNamespace

    from exactcomp.provers.subtrees import merge_subtrees, run_subtrees, subtree_units

    t0 = time.perf_counter()
    bounds, target = state.bounds(c.layer + 1), (c.layer, c.neuron, c.sign)
    units = subtree_units(net, box, bounds, target, state.margin, args.subtrees, args.limit, args.device)
    results = run_subtrees(executor, units)
    status, certificate, points = merge_subtrees(target, bounds, state.margin, results)
    best = max(r.best_value for r in results)
    return SimpleNamespace(status=status, certificate=certificate, points=points if len(points) else np.empty((0, box.size)),
                           seconds=time.perf_counter() - t0, subdomains=sum(r.subdomains for r in results), best_value=best)


def summarize(docs: list[dict]) -> str:
    """One row per neuron, one column per result file: status, seconds, subdomains; the region walk's
    best value where branch and bound left the neuron near zero or open."""
    def cell(r):
        if r is None:
            return "—"
        text = f"{r['status']} {r['seconds']:.1f} s ({r['subdomains']:,})"
        if r.get("region_walk") is not None:
            text += f"; walk {r['region_walk']:+.1e}" + (" = witness" if r["region_walk"] > 0 else "")
        return text

    heads = [f"{d['device']}{' ' + d.get('gpu', '') if d['device'] != 'cpu' else ''}, {d['limit']:g} s"
             + (f", {2 ** d['subtrees']} subtrees on {d['workers']} workers" if d.get("subtrees") else "") for d in docs]
    keyed = [{(r["network"], r["neuron"]): r for r in d["rows"]} for d in docs]
    lines = ["| network | neuron | LP bound | " + " | ".join(heads) + " |", "|---|---|---|" + "---|" * len(docs)]
    for key in dict.fromkeys(k for rows in keyed for k in rows):
        first = next(rows[key] for rows in keyed if key in rows)
        lines.append(f"| {key[0].removeprefix('mnist_')} | {key[1]} | {first['lp_bound']:.4f} | "
                     + " | ".join(cell(rows.get(key)) for rows in keyed) + " |")
    for d, head in zip(docs, heads):
        counts: dict[str, int] = {}
        for r in d["rows"]:
            status = "witness (walk)" if (r.get("region_walk") or -1) > 0 else r["status"]
            counts[status] = counts.get(status, 0) + 1
        bad = sum(bool(r["contradiction"]) or r["certificate_ok"] is False for r in d["rows"])
        lines.append(f"\n{head}: {counts}; certificates failing or contradicted by sampling: {bad}.")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
