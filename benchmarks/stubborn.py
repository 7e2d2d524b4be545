"""The stubborn-neuron table: branch and bound vs the HiGHS and SCIP per-neuron MILPs, same bounds.

    python benchmarks/stubborn.py [--limit 300] [--workers 2] [--out benchmarks/results/stubborn.json]

The candidates are those the previous default (``auto``: bounds, witnesses, LP tightening) left to the
per-neuron MILPs on the three networks of ``hard_neurons.py`` (the 28 neurons of
../shared/notes/hard-neurons.md). For each, three independent jobs start from the same state (the
LP-tightened bounds, nothing proven after LP): :func:`exactcomp.bab.engine.branch_and_bound` (torch, one
thread) and the feasibility MILP of the ``milp`` prover (``σ g >= -τ`` infeasible = proof) with HiGHS
and with SCIP (one thread each), each with ``--limit`` seconds. Jobs run in ``--workers`` processes
(one core each: use at most the number of cores, so that jobs do not share a core). Every
branch-and-bound proof's certificate is re-checked in float64; every MILP "infeasible" is compared with
the other methods (a disagreement — one proves, another finds a witness — is flagged).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pickle
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

HERE = Path(__file__).resolve().parent
METHODS = ("bab", "highs", "scip")


def prepare(folder: Path, networks) -> list[tuple]:
    """Per network, the state after LP tightening (pickled to ``folder``); returns the jobs."""
    from hard_neurons import candidates_after_lp

    jobs = []
    for name in networks:
        net, box, state, prep = candidates_after_lp(name)
        data = {"lower": state.lower, "upper": state.upper, "status": state.status, "method": state.method,
                "prep_seconds": prep}
        (folder / f"{name}.pkl").write_bytes(pickle.dumps(data))
        cands = [(c.layer, c.neuron, c.sign) for c in state.open_candidates()]
        print(f"{name}: LP state in {prep:.1f} s, {len(cands)} candidates", flush=True)
        jobs += [(name, c, m) for c in cands for m in METHODS]
    return jobs


def _state(folder: Path, name: str, solver: str | None):
    from exactcomp import api
    from exactcomp.analysis import AnalysisOptions
    from exactcomp.formulations import get_formulation
    from exactcomp.provers.state import ProofState
    from exactcomp.solvers import get_solver

    net = api.load(HERE / "networks" / f"{name}.onnx")
    box = api.domain(net, HERE / "networks" / f"{name}.box.json")
    state = ProofState.start(net, box, AnalysisOptions(time_limit=None, threads=1, jobs=1))
    data = pickle.loads((folder / f"{name}.pkl").read_bytes())
    state.lower, state.upper, state.status, state.method = data["lower"], data["upper"], data["status"], data["method"]
    if solver:
        state.backend, state.formulation = get_solver(solver, threads=1), get_formulation("bigm")
    return net, box, state


def warm_up() -> None:
    """Per worker process, before any timed job: one thread everywhere, and torch's, HiGHS's and the
    bound code's first-call costs paid on a tiny network (so that no job's time includes them)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from exactcomp.bab.engine import branch_and_bound
    from exactcomp.bounds.crown import compute_bounds
    from exactcomp.domain import Box
    from exactcomp.ir.network import Dense, Network, TensorInfo

    rng = np.random.default_rng(0)
    sizes = [4, 8, 8, 1]
    layers = tuple(Dense(rng.normal(size=(o, i)), rng.normal(size=o), k + 1, np.arange(o))
                   for k, (i, o) in enumerate(zip(sizes, sizes[1:])))
    out = TensorInfo("y", (1,), "float32")
    net = Network(layers, TensorInfo("x", (4,), "float32"), out, (out,))
    box = Box(-np.ones(4), np.ones(4))
    bounds = [(b.lower, b.upper) for b in compute_bounds(net, box)]
    branch_and_bound(net, box, bounds, (1, 0, 1.0), 1e-4, deadline=time.perf_counter() + 2)


def run_job(folder: str, name: str, cand: tuple, method: str, limit: float) -> dict:
    """One (neuron, method) job in a worker process with one thread (see :func:`warm_up`)."""
    import numpy as np

    from exactcomp.provers.state import Candidate

    net, box, state = _state(Path(folder), name, None if method == "bab" else method)
    k, t, sign = cand
    row = {"network": name, "neuron": f"{k + 1}:{t}:{int(sign)}", "method": method}
    t0 = time.perf_counter()
    if method == "bab":
        from exactcomp.bab.engine import branch_and_bound, check_certificate

        r = branch_and_bound(net, box, state.bounds(k + 1), (k, t, sign), state.margin, deadline=t0 + limit)
        row.update(status=r.status, seconds=round(time.perf_counter() - t0, 2), subdomains=r.subdomains,
                   certificate_ok=check_certificate(net, box, r.certificate) if r.status == "proven" else None)
    else:
        from exactcomp.provers.milp import NeuronMilp

        state.deadline = t0 + limit
        verdict = NeuronMilp(state, k).check(Candidate(k, t, sign))
        status = {"infeasible": "proven", "time_limit": "open", "interrupted": "open"}.get(verdict.kind, verdict.kind)
        row.update(status=status, seconds=round(time.perf_counter() - t0, 2), milps=verdict.milps)
        if verdict.points:
            _, pre = net.forward(np.array(verdict.points), return_preactivations=True)
            row["best_point"] = float((sign * pre[k][:, t]).max())
    return row


def main(argv=None) -> int:
    import sys

    sys.path.insert(0, str(HERE))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=float, default=300.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "stubborn.json")
    ap.add_argument("--networks", help="comma-separated subset of hard_neurons.NETWORKS")
    args = ap.parse_args(argv)
    from hard_neurons import NETWORKS

    from exactcomp.cli.bench import machine_info

    folder = Path(tempfile.mkdtemp(prefix="exactcomp-stubborn-"))
    jobs = prepare(folder, args.networks.split(",") if args.networks else NETWORKS)
    doc = {"limit": args.limit, "workers": args.workers, "machine": machine_info(), "rows": []}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"), initializer=warm_up) as pool:
        futures = [pool.submit(run_job, str(folder), name, cand, method, args.limit) for name, cand, method in jobs]
        for future in as_completed(futures):
            row = future.result()
            doc["rows"].append(row)
            print(json.dumps(row), flush=True)
            args.out.write_text(json.dumps(doc, indent=1) + "\n")   # a cut run keeps its rows
    print(summarize(doc))
    return 0


def summarize(doc: dict) -> str:
    """Markdown table: per neuron the three times (">" limit when open) and the median ratios."""
    import statistics

    by: dict[tuple, dict] = {}
    for r in doc["rows"]:
        by.setdefault((r["network"], r["neuron"]), {})[r["method"]] = r
    limit = doc["limit"]

    def cell(r):
        if r is None:
            return "—"
        return f"{r['seconds']:.1f}" if r["status"] == "proven" else f"{r['status']} {r['seconds']:.0f}"

    def effective(r):   # an open run counts as the limit (a lower bound of its time)
        return limit if r is None or r["status"] not in ("proven", "witness", "near_zero") else max(r["seconds"], 0.01)

    lines = [f"Per-neuron limit {limit:g} s, one core per job ({doc['workers']} jobs at a time).", "",
             "| network | neuron | BaB s | HiGHS s | SCIP s | HiGHS / BaB | SCIP / BaB |", "|---|---|---|---|---|---|---|"]
    ratios = {"highs": [], "scip": []}
    for (net, neuron), runs in sorted(by.items()):
        bab = runs.get("bab")
        cols = []
        for m in ("highs", "scip"):
            ratio = effective(runs.get(m)) / effective(bab)
            ratios[m].append(ratio)
            cols.append(f"{ratio:.1f}×")
        lines.append(f"| {net.removeprefix('mnist_')} | {neuron} | {cell(bab)} | {cell(runs.get('highs'))} | "
                     f"{cell(runs.get('scip'))} | {cols[0]} | {cols[1]} |")
    for m, values in ratios.items():
        if values:
            lines.append(f"\nMedian {m} / BaB time ratio: {statistics.median(values):.1f}× over {len(values)} neurons "
                         "(open runs counted at the limit).")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
