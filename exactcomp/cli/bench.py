"""Benchmark harness: ``exactcomp bench MODELS... --strategy ... --solver ... --formulation ...``.

Runs every combination of strategy × solver × formulation on every model (its box from ``--domain``
or ``MODEL.box.json``), and writes into ``--out``:

* ``results.json``: machine, versions, the command, and one record per run (times per phase,
  stability counts, how neurons were decided, solver statistics, parameters before/after);
* ``results.csv``: the same, one row per run;
* ``time_vs_size.png`` and ``stable_vs_l1.png`` (matplotlib, ``pip install 'exactcomp[bench]'``):
  analysis time against the number of hidden neurons, and the share of neurons proven stable against
  the L1 strength (read from a ``nets.json`` next to the models, as written by
  ``benchmarks/train_nets.py``), one line per strategy/solver/formulation (through the medians over seeds; every run is a dot).
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path

CSV_FIELDS = ["model", "hidden_neurons", "widths", "l1", "strategy", "solver", "formulation", "time_limit",
              "analysis_seconds", "wall_seconds", "stably_active", "stably_inactive", "unstable", "unknown",
              "parameters_before", "parameters_after", "methods", "error"]


def machine_info() -> dict:
    from exactcomp.report import versions
    from exactcomp.solvers import available

    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "versions": versions(), "solvers": available()}


def run_one(model: Path, domain, strategy: str, solver: str, formulation: str, time_limit, jobs) -> dict:
    """One analysis + rewrite of ``model``; user errors (e.g. a missing solver) become the record's ``error``."""
    from exactcomp import api
    from exactcomp.errors import ExactcompError

    net = api.load(model)
    record = {"model": model.stem, "hidden_neurons": int(sum(net.widths[:-1])), "widths": "x".join(map(str, net.widths[:-1])),
              "l1": _l1_of(model), "strategy": strategy, "solver": solver, "formulation": formulation,
              "time_limit": time_limit, "error": None}
    t0 = time.perf_counter()
    try:
        result = api.compress(net, domain, strategy=strategy, solver=solver, formulation=formulation,
                              time_limit=time_limit, jobs=jobs)
    except ExactcompError as exc:
        return {**record, "error": str(exc)}
    a = result.analysis
    methods: dict[str, int] = {}
    for layer in a.layers:
        for key, count in {**layer.methods(), **{f"unknown:{r}": c for r, c in layer.unknown_reasons().items()}}.items():
            methods[key] = methods.get(key, 0) + count
    return {**record, "wall_seconds": round(time.perf_counter() - t0, 3),
            "analysis_seconds": round(sum(a.times.values()), 3), "times": {k: round(v, 3) for k, v in a.times.items()},
            **a.totals(), "methods": methods, "stats": dict(a.stats), "interrupted": a.interrupted,
            "parameters_before": result.original.parameter_count, "parameters_after": result.compressed.parameter_count}


def _l1_of(model: Path):
    meta = model.parent / "nets.json"
    if not meta.exists():
        return None
    return json.loads(meta.read_text()).get(model.stem, {}).get("l1")


def run_grid(models, strategies, solvers, formulations, out: Path, domain=None, time_limit=None, jobs=None,
             echo=print, executor="local", workers: int = 1) -> list[dict]:
    """Run the grid, rewriting ``out``/results.json and results.csv after every run; returns the records
    (in grid order). Each cell is a work unit on ``executor`` (:mod:`exactcomp.executors`; ``workers`` at once)."""
    from exactcomp.executors import get_executor

    out.mkdir(parents=True, exist_ok=True)
    doc = {"machine": machine_info(), "command": " ".join(sys.argv), "records": []}
    cells = [(model, domain if domain is not None else model.with_suffix(".box.json"), strategy, solver, formulation,
              time_limit, jobs)
             for model, strategy, solver, formulation in itertools.product(models, strategies, solvers, formulations)]
    done: dict[int, dict] = {}
    runner = get_executor(executor, workers)
    try:
        for i, record in runner.map_unordered(_run_cell, cells):
            done[i] = record
            doc["records"] = [done[j] for j in sorted(done)]
            _write(doc, out)
            echo(_line(record))
    finally:
        runner.close()
    return doc["records"]


def _run_cell(cell) -> dict:
    """One grid cell (a work unit): :func:`run_one` on its arguments."""
    return run_one(*cell)


def _line(r: dict) -> str:
    config = f"{r['model']} {r['strategy']}/{r['solver']}/{r['formulation']}"
    if r["error"]:
        return f"{config}: error: {r['error']}"
    return (f"{config}: {r['analysis_seconds']:.1f} s, stable {r['stably_active'] + r['stably_inactive']}, "
            f"unstable {r['unstable']}, unknown {r['unknown']}")


def _write(doc: dict, out: Path) -> None:
    from exactcomp.io.files import write_json

    write_json(out / "results.json", doc)
    with open(out / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for r in doc["records"]:
            writer.writerow({**r, "methods": json.dumps(r.get("methods", {}), sort_keys=True)})


def plot(records: list[dict], out: Path) -> list[Path]:
    """Time against size and stable share against L1, one line per configuration; returns the files."""
    from exactcomp.errors import ExactcompError

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ExactcompError("plots need matplotlib: pip install 'exactcomp[bench]'") from exc
    ok = [r for r in records if not r["error"]]
    configs = sorted({(r["strategy"], r["solver"], r["formulation"]) for r in ok})
    files = []
    for name, x_key, y_of, xlabel, ylabel, logy in (
        ("time_vs_size.png", "hidden_neurons", lambda r: r["analysis_seconds"], "hidden neurons",
         "analysis time (s)", True),
        ("stable_vs_l1.png", "l1", lambda r: (r["stably_active"] + r["stably_inactive"]) / r["hidden_neurons"],
         "L1 strength", "share of neurons proven stable", False),
    ):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        drawn = 0
        for config in configs:
            points = sorted((r[x_key], y_of(r), r["unknown"]) for r in ok
                            if (r["strategy"], r["solver"], r["formulation"]) == config and r[x_key] is not None)
            if not points:
                continue
            xs = sorted({x for x, _, _ in points})
            medians = [sorted(y for x_, y, _ in points if x_ == x)[len([p for p in points if p[0] == x]) // 2] for x in xs]
            line, = ax.plot(xs, medians, "-", alpha=0.8, label="/".join(config))
            drawn += 1
            ax.plot([x for x, _, _ in points], [y for _, y, _ in points], "o", color=line.get_color())
            hollow = [(x, y) for x, y, u in points if u]   # runs that left unknowns (time limit)
            if hollow:
                ax.plot(*zip(*hollow), "o", mfc="white", color=line.get_color())
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
        ax.set_title(f"{ylabel} (hollow: unknowns left)", fontsize=9)
        if drawn:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, f"no runs with a known {xlabel}", ha="center", transform=ax.transAxes)
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        files.append(out / name)
    return files
