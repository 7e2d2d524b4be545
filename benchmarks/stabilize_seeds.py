"""Seeds of ``exactcomp stabilize``'s rounds (issue 21): how much of a sweep's gap between choices of units is noise.

    python benchmarks/stabilize_seeds.py run MODEL DOMAIN ALLOCATION SCORE POINTS SEED [--out DIR]
    python benchmarks/stabilize_seeds.py table PREFIX [GRID]        # e.g. table mlp_data 45000,25000,12000,8000

``run``: the models and data of ``benchmarks/stabilize.py mlp cnn --domains --out DIR`` (run that first: it trains the originals
without L1 and writes x.npy, y.npy, vx_*.npy, vy.npy, box.json, data.json), one stabilize run over ``POINTS``
fractions in [0.2, 0.94] kept past the budget (``keep_all``) with ``--allocation ALLOCATION`` and ``--score
SCORE`` and the shuffling seed ``SEED``; every round compressed exactly (60 s), its accuracy on the 1,000
validation images (the budget's) and on the 1,000 test images (onnxruntime); one JSON line per round, then the
run, written to ``benchmarks/results/stabilize_seeds/MODEL_DOMAIN_ALLOCATION_SCORE_SEED.json``.
``table``: per configuration, the mean over seeds of the validation and test accuracy interpolated (log of the
parameters) at the grid's sizes, and each seed's smallest model within the 0.5-point budget.
"""

from __future__ import annotations

import collections
import glob
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "stabilize_seeds"


def run(name, domain, allocation, score, points, seed, out="stabilize-bench") -> None:
    import onnxruntime as ort

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT.parent / "models"))
    import stabilize as bench
    from exactcomp.finetune.api import stabilize
    from exactcomp.finetune.graph import with_weights
    from exactcomp.finetune.sweep import _compressed
    from train import load_mnist

    X, y = load_mnist()
    X = X.reshape(-1, 1, 28, 28).astype(np.float32)
    dom = Path(out) / ("data.json" if domain == "data" else "box.json")
    lower, upper = bench._bounds(dom)
    T, t = np.clip(X[bench.TEST], lower, upper).astype(np.float32), y[bench.TEST]
    fractions = tuple(float(f) for f in np.linspace(0.2, 0.94, int(points)))
    t0 = time.time()
    res = stabilize(f"{out}/{name}.onnx", f"{out}/x.npy", f"{out}/y.npy", str(dom), val_data=f"{out}/vx_{domain}.npy",
                    val_labels=f"{out}/vy.npy", fractions=fractions, keep_all=True, allocation=allocation, score=score,
                    seed=int(seed), time_limit=None)
    r, rows = res.record, []
    for number, values in sorted(r.values.items()):
        entry = r.rounds[number - 1]
        model = with_weights(res.original, values)
        parameters, unknown, _ = _compressed(res, model, 60)
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        test = float((sess.run(None, {sess.get_inputs()[0].name: T})[0].argmax(1) == t).mean())
        rows.append(dict(fraction=entry["fraction"], val=entry[r.metric], test=test, params=parameters, unknown=unknown))
        print(json.dumps(rows[-1]), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = dict(name=name, domain=domain, alloc=allocation, score=score, before=r.before,
                  seconds=time.time() - t0, rows=rows)
    (RESULTS / f"{name}_{domain}_{allocation}_{score}_{seed}.json").write_text(json.dumps(record))


def table(prefix, grid=(45000, 35000, 25000, 18000, 12000, 8000)) -> None:
    runs = collections.defaultdict(list)
    for f in sorted(glob.glob(str(RESULTS / f"{prefix}_*.json"))):
        runs[Path(f).stem.rsplit("_", 1)[0]].append(json.loads(Path(f).read_text()))
    print("| configuration | seeds | " + " | ".join(f"val / test at {g:,}" for g in grid) + " | smallest within budget (val, test) |")
    print("|---|---|" + "---|" * (len(grid) + 1))
    for key, found in runs.items():
        val, test, picks = [], [], []
        for d in found:
            P = np.array([r["params"] for r in d["rows"]])
            V, T = (np.array([r[k] for r in d["rows"]]) for k in ("val", "test"))
            o = np.argsort(P)
            val.append([np.interp(np.log(g), np.log(P[o]), V[o]) for g in grid])
            test.append([np.interp(np.log(g), np.log(P[o]), T[o]) for g in grid])
            ok = [i for i in range(len(P)) if V[i] >= d["before"] - 0.005 - 1e-12]
            i = min(ok, key=lambda i: P[i]) if ok else None
            picks.append("-" if i is None else f"{P[i]:,} ({100 * V[i]:.1f}, {100 * T[i]:.1f})")
        v, t = np.mean(val, axis=0), np.mean(test, axis=0)
        cells = " | ".join(f"{100 * a:.1f} / {100 * b:.1f}" for a, b in zip(v, t))
        print(f"| {key[len(prefix) + 1:]} | {len(found)} | {cells} | {'; '.join(picks)} |")


if __name__ == "__main__":
    if sys.argv[1] == "run":
        args = sys.argv[2:]
        out = args[args.index("--out") + 1] if "--out" in args else "stabilize-bench"
        run(*[a for a in args if a not in ("--out", out)], out=out)
    else:
        table(sys.argv[2], tuple(int(g) for g in sys.argv[3].split(",")) if len(sys.argv) > 3 else
              (45000, 35000, 25000, 18000, 12000, 8000))
