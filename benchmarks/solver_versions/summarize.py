"""Table of all timing runs: per file, per version, each run's status/seconds/cpu/nodes; ratio 1.16/1.15."""
import json, glob, statistics, sys
from collections import defaultdict
from pathlib import Path
HERE = Path(__file__).resolve().parent
man = json.load(open(HERE / "manifest.json"))
runs = defaultdict(lambda: defaultdict(list))
for path in sorted(glob.glob(str(HERE / "run*.jsonl"))):
    for line in open(path):
        r = json.loads(line)
        runs[r["stem"]][r["version"]].append(r)
ratios, keep = [], []
short = {"Infeasible": "inf", "Time limit reached": "TL"}
print("| # | MPS file | net:layer:neuron (kind) | 1.15.1 status | 1.15.1 wall s (runs) / cpu s | 1.15.1 nodes | 1.16.0 status | 1.16.0 wall s (runs) / cpu s | 1.16.0 nodes | ratio 1.16/1.15 (median wall) |")
print("|---|---|---|---|---|---|---|---|---|---|")
for i, stem in enumerate(man, 1):
    m = man[stem]
    a, b = runs[stem]["1.15.1"], runs[stem]["1.16.0"]
    if not a or not b:
        continue
    def cell(rs):
        st = "/".join(sorted({short.get(r["status"], r["status"]) for r in rs}))
        secs = ", ".join(f'{r["seconds"]:.1f}' for r in rs)
        nodes = "/".join(sorted({str(r["nodes"]) for r in rs}))
        cpus = [r["cpu_seconds"] for r in rs if "cpu_seconds" in r]
        secs += (" / cpu " + ", ".join(f"{c:.1f}" for c in cpus)) if cpus else ""
        return st, secs, nodes, statistics.median(r["seconds"] for r in rs)
    sa, ta, na, ma = cell(a); sb, tb, nb, mb = cell(b)
    tl_a = any(r["status"] != "Infeasible" for r in a); tl_b = any(r["status"] != "Infeasible" for r in b)
    ratio = mb / ma
    if tl_a and tl_b:
        note, ratio_txt = "", "n/a (both hit 300 s)"
    else:
        ratios.append(ratio); keep.append(stem)
        ratio_txt = f"{ratio:.2f}" + (" (lower bound: 1.16.0 hit 300 s)" if tl_b else "")
    print(f"| {i} | {stem}.mps | {m['network']}:L{m['layer']}:{m['neuron']} ({m['kind']}) | {sa} | {ta} | {na} | {sb} | {tb} | {nb} | {ratio_txt} |")
print(f"\nfiles: {len(ratios)}; median ratio {statistics.median(ratios):.2f}; geometric mean {statistics.geometric_mean(ratios):.2f}")
big = [r for stem, r in zip(keep, ratios) if statistics.median(x["seconds"] for x in runs[stem]["1.15.1"]) >= 15]
print(f"files where 1.15.1 needs >= 15 s: {len(big)}; median ratio {statistics.median(big):.2f}; ratios {[round(x,2) for x in big]}")
