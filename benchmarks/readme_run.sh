#!/usr/bin/env bash
# The README's commands, run as a new user runs them, with the figures the README states.
#
#   git clone <repo> fresh && cd fresh && python3 -m venv .venv && . .venv/bin/activate
#   pip install -e '.[dev]' -c .ci/constraints.txt      # the README's install command
#   bash benchmarks/readme_run.sh [OUT]                  # MNIST at ../shared/data/mnist; default OUT readme-run/
#
# Each compress also writes a report (--report OUT/NAME.json) so that the figures are read, not retyped;
# the table at the end (OUT/figures.md) has parameters before -> after, % removed, unknown neurons and
# why, wall time, verification and the witnesses file. Run it on a quiet machine: times are wall clock.
set -uo pipefail
out=${1:-readme-run}
mkdir -p "$out"
times="$out/times.tsv"
: > "$times"

step() {   # step NAME COMMAND...: run it, record its wall time and exit status
    local name=$1; shift
    local t0 t1 rc
    t0=$(date +%s.%N)
    "$@" > "$out/$name.log" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    local secs
    secs=$(awk "BEGIN {print $t1 - $t0}")
    printf '%s\t%s\t%s\n' "$name" "$secs" "$rc" >> "$times"
    printf '%-16s rc %s  %6.1f s\n' "$name" "$rc" "$secs"
}

m=models
# "Compress a shipped model"
step mlp exactcomp compress $m/mnist_784x100x100.onnx --domain $m/mnist_784x100x100.box.json -o small.onnx --report "$out/mlp.json"
step inspect exactcomp inspect $m/mnist_784x100x100.onnx
step verify exactcomp verify $m/mnist_784x100x100.onnx small.onnx --domain $m/mnist_784x100x100.box.json
step cnn exactcomp compress $m/mnist_cnn_8x16.onnx --domain $m/mnist_cnn_8x16.box.json -o small_cnn.onnx --report "$out/cnn.json"
step maxpool exactcomp compress $m/mnist_cnn_maxpool.onnx --domain $m/mnist_cnn_maxpool.box.json -o small_maxpool.onnx --report "$out/maxpool.json"
step resnet exactcomp compress $m/mnist_resnet_tiny.onnx --domain $m/mnist_resnet_tiny.box.json -o small_resnet.onnx --report "$out/resnet.json"
# "VNN-LIB, data, balls, unions"
step domains python models/domains.py
step ones exactcomp domain from-data mnist_domains/digit_1.npy --margin 0.05 --clip 0 1 -o ones.json
step zeros exactcomp domain from-data mnist_domains/digit_0.npy --margin 0.05 --clip 0 1 -o zeros.json
step ball exactcomp domain ball mnist_domains/test_image_0.npy --eps 0.02 --clip 0 1 -o ball.json
step balls exactcomp domain ball mnist_domains/test_images.npy --eps 0.02 --clip 0 1 -o balls.vnnlib
step show exactcomp domain show ones.json zeros.json
step mlp_ones exactcomp compress $m/mnist_784x100x100.onnx --domain ones.json -o small_ones.onnx --report "$out/mlp_ones.json"
step mlp_zeros exactcomp compress $m/mnist_784x100x100.onnx --domain zeros.json -o small_zeros.onnx --report "$out/mlp_zeros.json"
step mlp_union exactcomp compress $m/mnist_784x100x100.onnx --domain ones.json --domain zeros.json -o small_01.onnx --report "$out/mlp_union.json"
step mlp_ball exactcomp compress $m/mnist_784x100x100.onnx --domain ball.json -o small_ball.onnx --report "$out/mlp_ball.json"
step mlp_balls exactcomp compress $m/mnist_784x100x100.onnx --domain balls.vnnlib -o small_balls.onnx --report "$out/mlp_balls.json"
step cnn_ones exactcomp compress $m/mnist_cnn_8x16.onnx --domain ones.json -o small_cnn_ones.onnx --report "$out/cnn_ones.json"
step cnn_zeros exactcomp compress $m/mnist_cnn_8x16.onnx --domain zeros.json -o small_cnn_zeros.onnx --report "$out/cnn_zeros.json"
step resume_ones exactcomp compress $m/mnist_784x100x100.onnx --domain ones.json -o small_resumed.onnx --resume "$out/mlp.json" --report "$out/resume_ones.json"
# "Benchmark harness" (shipped models) and the Python API snippet
step bench exactcomp bench $m/digits_64x32x32.onnx $m/mnist_784x50x50x50.onnx --strategy auto,network \
    --solver highs,scip --formulation bigm,bigm-ideal --time-limit 20 --out "$out/bench-results"
step api python - <<'EOF'
import re, pathlib
text = pathlib.Path("README.md").read_text()
exec(re.findall(r"```python\n(.*?)```", text[text.index("## Python API"):], flags=re.S)[0])
EOF

python - "$out" <<'EOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
wall = {line.split("\t")[0]: (float(line.split("\t")[1]), line.split("\t")[2].strip())
        for line in (out / "times.tsv").read_text().splitlines()}
rows = ["| run | parameters | removed | unknown (why) | channels | wall s | verify | witnesses stored / cited (file) |",
        "|---|---|---|---|---|---|---|---|"]
for name in ("mlp", "cnn", "maxpool", "resnet", "mlp_ones", "mlp_zeros", "mlp_union", "mlp_ball", "mlp_balls",
             "cnn_ones", "cnn_zeros", "resume_ones"):
    path = out / f"{name}.json"
    if not path.exists():
        rows.append(f"| {name} | (no report) | | | | | | |")
        continue
    r = json.loads(path.read_text())
    p, t, w = r["parameters"], r["totals"], r["witnesses"]
    why = {}
    for layer in r["layers"]:
        if layer.get("kind") == "maxpool":
            continue
        for k, v in layer["unknown_reasons"].items():
            why[k] = why.get(k, 0) + v
    model_unknown = sum(why.values())
    key = name
    rows.append(f"| {name} | {p['before']:,} -> {p['after']:,} | {100 * p['removed_fraction']:.1f} % | "
                f"{model_unknown} {why if why else ''} | "
                f"{', '.join(str(e['channels']['count']) + '->' + str(e['channels']['kept']) for e in r['layers'] if e.get('kind') == 'conv')} | "
                f"{wall.get(key, (float('nan'),))[0]:.1f} | "
                f"{'passed' if (r['verification'] or {}).get('passed') else 'FAILED'} | "
                f"{w.get('stored')} / {w['count']} ({(w['bytes'] or 0) / 1e6:.2f} MB) |")
rows.append("")
rows += [f"- {k}: exit {rc}, {s:.1f} s" for k, (s, rc) in wall.items()]
(out / "figures.md").write_text("\n".join(rows) + "\n")
print("\n".join(rows))
EOF
