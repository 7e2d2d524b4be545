"""Driver: time every proof MILP with two highspy versions (two venvs), one solve at a time, each in
a fresh process, alternating which version goes first per file. Appends JSON lines.

    python3 run_bench.py --mps mps --out run1.jsonl --v115 /tmp/v115/bin/python --v116 /tmp/v116/bin/python \
        [--files a.mps,b.mps] [--start-with v116]
"""
import argparse, json, subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
ap = argparse.ArgumentParser()
ap.add_argument("--v115", required=True, help="python of a venv with highspy 1.15.1")
ap.add_argument("--v116", required=True, help="python of a venv with highspy 1.16.0")
ap.add_argument("--mps", type=Path, default=HERE / "mps")
ap.add_argument("--out", type=Path, required=True)
ap.add_argument("--files")
ap.add_argument("--time-limit", type=float, default=300.0)
ap.add_argument("--start-with", default="v115")
args = ap.parse_args()
VENVS = {"v115": args.v115, "v116": args.v116}
manifest = json.loads((args.mps / "manifest.json").read_text())
stems = [f[:-4] for f in args.files.split(",")] if args.files else list(manifest)
args.out.parent.mkdir(parents=True, exist_ok=True)
first = args.start_with
for i, stem in enumerate(stems):
    order = [first, "v116" if first == "v115" else "v115"] if i % 2 == 0 else \
            ["v116" if first == "v115" else "v115", first]
    for v in order:
        cmd = [VENVS[v], str(HERE / "time_one.py"), str(args.mps / f"{stem}.mps"),
               "--objective-target", repr(manifest[stem]["objective_target"]), "--time-limit", str(args.time_limit)]
        out = subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()
        rec = json.loads([line for line in out if line.startswith("{")][-1])
        rec.update({"venv": v, "position": order.index(v), "stem": stem})
        with open(args.out, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), flush=True)
