"""Executors compared on one machine: the overhead per work unit, a grid of analyses, and the distributed prover.

    python benchmarks/scale_out.py [--workers 2] [--time-limit 60] [--out benchmarks/results/scale_out.json]

1. Overhead: each executor (in-process, a local pool of ``--workers`` spawned processes, a local Ray
   instance with ``--workers`` CPUs) first starts (timed), then maps 400 trivial units (an int in, the int
   out) and 20 units carrying a 2x400 MNIST network (the size of a ``NeuronUnit``'s payload): seconds per
   unit, in completion order, after the start.
2. Grid: the cells (network × the default portfolio schedule, ``--time-limit`` each) are work units, each a
   whole ``exactcomp.analyze`` on one network in a worker, on the local pool and on Ray: wall time, and
   whether every cell decided the same neurons the same way on both.
3. The ``distributed`` prover (``--workers``) against the in-process portfolio on one network, with each
   executor: wall time of the analysis and equality of the decisions.

Networks: ``benchmarks/networks/mnist_*`` (``python benchmarks/train_nets.py``), box [0, 1]^784.
Pointing at a real cluster: ``exactcomp compress ... --executor ray://HEAD:10001`` (exactcomp installed on
every node); this script's ``--ray ADDRESS`` does the same here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
GRID = ["mnist_2x100_l1-0.0001_s0", "mnist_2x100_l1-0.0002_s0", "mnist_2x100_l1-0.0002_s1",
        "mnist_2x200_l1-0.0001_s0", "mnist_2x200_l1-0.0002_s0", "mnist_2x200_l1-0.0002_s1"]
DISTRIBUTED_NET = "mnist_3x100_l1-0.0002_s1"


def echo(x):
    return x


def payload_size(unit):
    return len(unit[1].layers)


def run_cell(cell):
    """One grid cell in a worker: analyse one network with the default schedule."""
    import exactcomp
    from exactcomp.analysis import AnalysisOptions

    path, time_limit = cell
    net = exactcomp.load(path)
    t0 = time.perf_counter()
    analysis = exactcomp.analyze(net, str(Path(path).with_suffix(".box.json")),
                                 AnalysisOptions(time_limit=time_limit, jobs=1))
    return {"network": Path(path).stem, "seconds": time.perf_counter() - t0, "totals": analysis.totals(),
            "decisions": _digest(analysis)}


def _digest(analysis) -> str:
    h = hashlib.sha256()
    for la in analysis.layers:
        h.update(np.asarray(la.status, dtype=np.int8).tobytes())
    return h.hexdigest()[:16]


def _executors(workers, ray_address):
    from exactcomp.executors import InProcess, get_executor

    return [("in-process", lambda: InProcess()), (f"local pool ({workers})", lambda: get_executor("local", workers)),
            (f"ray ({ray_address or f'local, {workers} CPUs'})", lambda: get_executor(ray_address or "ray", workers))]


def overhead(workers, ray_address):
    import exactcomp

    big = exactcomp.load(HERE / "networks" / "mnist_2x400_l1-0.0001_s0.onnx")
    rows = []
    for name, make in _executors(workers, ray_address):
        t0 = time.perf_counter()
        executor = make()
        dict(executor.map_unordered(echo, [0]))
        start = time.perf_counter() - t0
        t0 = time.perf_counter()
        dict(executor.map_unordered(echo, list(range(400))))
        trivial = (time.perf_counter() - t0) / 400
        t0 = time.perf_counter()
        dict(executor.map_unordered(payload_size, [(i, big) for i in range(20)]))
        payload = (time.perf_counter() - t0) / 20
        executor.close()
        rows.append({"executor": name, "start_s": start, "trivial_unit_ms": 1e3 * trivial, "network_unit_ms": 1e3 * payload})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def grid(workers, ray_address, time_limit):
    cells = [(str(HERE / "networks" / f"{n}.onnx"), time_limit) for n in GRID]
    out = []
    for name, make in _executors(workers, ray_address)[1:]:
        executor = make()
        t0 = time.perf_counter()
        results = dict(executor.map_unordered(run_cell, cells))
        wall = time.perf_counter() - t0
        executor.close()
        out.append({"executor": name, "wall_s": wall, "cell_seconds": sum(r["seconds"] for r in results.values()),
                    "cells": [results[i] for i in range(len(cells))]})
        print(json.dumps({k: v for k, v in out[-1].items() if k != "cells"}), flush=True)
    same = all(a["decisions"] == b["decisions"] for a, b in zip(out[0]["cells"], out[1]["cells"]))
    return {"runs": out, "same_decisions": same}


def distributed(workers, ray_address, time_limit):
    import exactcomp
    from exactcomp.analysis import AnalysisOptions

    path = HERE / "networks" / f"{DISTRIBUTED_NET}.onnx"
    net = exactcomp.load(path)
    box = str(path.with_suffix(".box.json"))
    configs = [("portfolio, in-process", {}), (f"distributed, local pool ({workers})", {"workers": workers}),
               (f"distributed, ray ({workers})", {"executor": ray_address or "ray", "workers": workers})]
    rows = []
    for name, kw in configs:
        t0 = time.perf_counter()
        analysis = exactcomp.analyze(net, box, AnalysisOptions(time_limit=time_limit, **kw))
        rows.append({"config": name, "wall_s": time.perf_counter() - t0, "totals": analysis.totals(),
                     "decisions": _digest(analysis), "units": analysis.stats.get("distributed_units")})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--ray", default=None, metavar="ADDRESS", help="ray://HOST:PORT of a running cluster")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "scale_out.json")
    args = ap.parse_args(argv)
    import os

    doc = {"workers": args.workers, "time_limit": args.time_limit, "cpus": os.cpu_count(),
           "overhead": overhead(args.workers, args.ray), "grid": grid(args.workers, args.ray, args.time_limit),
           "distributed": distributed(args.workers, args.ray, args.time_limit)}
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
