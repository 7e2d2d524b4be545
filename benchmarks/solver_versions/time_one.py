"""Time one proof MILP with the highspy of the running venv; print one JSON line.

    VENV/bin/python time_one.py FILE.mps [--objective-target T] [--time-limit 300]

Fresh highspy.Highs(), output_flag False, exactcomp's PROOF_OPTIONS (copied from solvers/highs.py),
threads=1, time_limit, objective_target (what HighsSession.solve sets; irrelevant when infeasible),
readModel, run; wall time of run() only.
"""
import argparse, json, time
import highspy

PROOF_OPTIONS = {   # copied from solvers/highs.py
    "mip_heuristic_effort": 0.0,
    "mip_heuristic_run_rins": False,
    "mip_heuristic_run_rens": False,
    "mip_heuristic_run_root_reduced_cost": False,
    "mip_heuristic_run_feasibility_jump": False,
    "mip_pscost_minreliable": 1,
}

ap = argparse.ArgumentParser()
ap.add_argument("path")
ap.add_argument("--objective-target", type=float, default=None)
ap.add_argument("--time-limit", type=float, default=300.0)
args = ap.parse_args()

h = highspy.Highs()
h.setOptionValue("output_flag", False)
for key, value in PROOF_OPTIONS.items():
    assert h.setOptionValue(key, value) == highspy.HighsStatus.kOk, key
h.setOptionValue("threads", 1)
h.setOptionValue("time_limit", args.time_limit)
if args.objective_target is not None:
    h.setOptionValue("objective_target", args.objective_target)
assert h.readModel(args.path) in (highspy.HighsStatus.kOk, highspy.HighsStatus.kWarning)
t0, c0 = time.perf_counter(), time.process_time()
h.run()
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
info = h.getInfo()
print(json.dumps({
    "file": args.path.split("/")[-1], "version": h.version(), "seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
    "status": h.modelStatusToString(h.getModelStatus()), "nodes": int(info.mip_node_count),
    "simplex_iterations": int(info.simplex_iteration_count),
    "dual_bound": info.mip_dual_bound, "cpu_load_at_end": open("/proc/loadavg").read().split()[0],
}), flush=True)
