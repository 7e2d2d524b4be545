"""Run exactcomp's `auto` pipeline up to the per-neuron phase and write every per-neuron proof MILP
(``sign*g >= -tau`` feasibility model, exactly as exactcomp hands it to HiGHS) to an MPS file.

Run with the exactcomp venv (written against commit 664cc33's internals: exactcomp.complete's
_State and phase functions), after ``python benchmarks/train_nets.py --only 2x100,2x200,3x100``:

    python benchmarks/solver_versions/dump_proof_milps.py --nets mnist_2x100_l1-0.0002_s0,... \
        --netdir benchmarks/networks --out benchmarks/solver_versions/mps

Per network: screen (bounds + witness search), LP tightening (_tighten_all), the network phase
(returns at once for `auto`), then for each layer with candidates: build the trunk model
(state.trunk_model(k)), and for each candidate the model ``with_objective_cutoff(c, off, -tau)``,
passed through ``formulation.strengthen`` (identity for bigm) and ``backend.session(...)`` (the
HighsSession of solvers/highs.py: passModel + changeColsCost with HiGHS's min sign), then the
options solve() would set (time_limit, objective_target) and ``h.writeModel(...)``. Nothing is solved
here for the dumped layer. If a deeper layer also has candidates, the layer's per-neuron phase is then
run for real (exactcomp's own _per_neuron_layer, jobs=1, threads=1, HiGHS of this venv) so that the
deeper layer's trunk model has exactly the proofs exactcomp would have.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import exactcomp
from exactcomp import api
from exactcomp import complete as C
from exactcomp.analysis import AnalysisOptions, screen
from exactcomp.formulations import get_formulation
from exactcomp.formulations.bigm import preactivation_objective
from exactcomp.solvers import get_solver


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nets", required=True)
    ap.add_argument("--netdir", type=Path, default=Path(__file__).resolve().parents[1] / "networks")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "mps")
    ap.add_argument("--solve-time-limit", type=float, default=600.0,
                    help="time limit for the real per-neuron solves of layers feeding deeper candidates")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    manifest_path = args.out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    print("exactcomp from", exactcomp.__file__, flush=True)
    for name in args.nets.split(","):
        t0 = time.perf_counter()
        net = api.load(args.netdir / f"{name}.onnx")
        box = api.domain(net, args.netdir / f"{name}.box.json")
        options = AnalysisOptions(threads=1, jobs=1)   # defaults otherwise (auto, highs, bigm, tau=1e-4)
        scr = screen(net, box, options)
        backend = get_solver(options.solver, threads=options.threads)
        state = C._State(net, box, options, backend,
                         lower=[b.lower.copy() for b in scr.bounds], upper=[b.upper.copy() for b in scr.bounds],
                         status=[s.copy() for s, _ in scr.decided], method=[m.copy() for _, m in scr.decided],
                         tracker=scr.tracker, deadline=float("inf"),
                         formulation=get_formulation(options.formulation))
        before = [int(sum(a.sum() + b.sum() for a, b in [state.candidates(k)])) for k in range(len(state.status))]
        t1 = time.perf_counter()
        C._tighten_all(state, None)
        C._network_rounds(state, None, C.AUTO_PER_NEURON_MAX)   # returns at once for auto
        for i in range(len(state.method)):
            state.method[i][state.method[i] == "deferred"] = ""
        after = [int(sum(a.sum() + b.sum() for a, b in [state.candidates(k)])) for k in range(len(state.status))]
        print(f"{name}: screening {t1 - t0:.1f}s, LP phase {time.perf_counter() - t1:.1f}s, "
              f"candidates per layer before LP {before}, after LP {after}, lp_solves {state.stats['lp_solves']}",
              flush=True)
        tau = state.margin
        layers = [k for k in range(len(state.status)) if any(m.any() for m in state.candidates(k))]
        for k in layers:
            inactive, active = state.candidates(k)
            if not (inactive | active).any():
                continue
            milp = state.trunk_model(k)
            jobs = [(j, 1.0) for j in np.flatnonzero(inactive)] + [(j, -1.0) for j in np.flatnonzero(active)]
            for j, sign in jobs:
                c, off = preactivation_objective(milp, net, k, j, sign)
                at_least = -tau
                model = state.formulation.strengthen(milp.with_objective_cutoff(c, off, at_least), net, backend,
                                                     time_limit=None)
                session = backend.session(model, relax=not milp.integrality.any())
                h = session.h
                # what HighsSession.solve sets before run() (time limit: none in exactcomp by default)
                objective_target = session._sign * (at_least - session._offset)
                h.setOptionValue("objective_target", objective_target)
                kind = "inactive" if sign > 0 else "active"
                stem = f"{name}__L{k + 1}_n{j}_{kind}"
                path = args.out / f"{stem}.mps"
                h.writeModel(str(path))
                np.savez_compressed(args.out / f"{stem}.npz", A_data=model.A.data, A_indices=model.A.indices,
                                    A_indptr=model.A.indptr, A_shape=np.array(model.A.shape),
                                    c=-model.c if model.sense == "max" else model.c,
                                    row_lower=model.row_lower, row_upper=model.row_upper,
                                    col_lower=model.col_lower, col_upper=model.col_upper,
                                    integrality=model.integrality)
                manifest[stem] = {"network": name, "layer": k + 1, "neuron": int(j), "kind": kind,
                                  "question": f"{'+' if sign > 0 else '-'}g >= -tau infeasible?",
                                  "tau": tau, "offset": off, "objective_target": objective_target,
                                  "cols": model.num_vars, "rows": model.num_rows,
                                  "binaries": int(model.integrality.sum()), "nnz": int(model.A.nnz)}
                print(f"  wrote {path.name}: {model.num_rows} rows, {model.num_vars} cols, "
                      f"{int(model.integrality.sum())} binaries", flush=True)
            manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
            if k < max(layers):   # deeper candidates: decide this layer for real so the next trunk is exact
                t2 = time.perf_counter()
                state.deadline = time.perf_counter() + args.solve_time_limit
                try:
                    C._per_neuron_layer(state, k, inactive, active, lambda: None)
                except C._OutOfTime:
                    print("  (layer per-neuron phase hit its time limit)", flush=True)
                state.deadline = float("inf")
                print(f"  solved layer {k + 1} per-neuron phase for real in {time.perf_counter() - t2:.1f}s: "
                      f"methods {dict(zip(*np.unique(state.method[k], return_counts=True)))}", flush=True)
                for stem, rec in manifest.items():
                    if rec["network"] == name and rec["layer"] == k + 1:
                        rec["exactcomp_method_1.16.0"] = str(state.method[k][rec["neuron"]])
                manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
        print(f"{name}: done in {time.perf_counter() - t0:.1f}s", flush=True)


if __name__ == "__main__":
    main()
