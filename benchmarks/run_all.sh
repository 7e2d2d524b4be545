#!/usr/bin/env bash
# The benchmark run committed in benchmarks/README.md: two streams in parallel (one per core),
# each strategy single-threaded in HiGHS.
set -e
cd "$(dirname "$0")/.."
[ -f benchmarks/networks/nets.json ] || python benchmarks/train_nets.py
LARGE=mnist_2x400_l1-0.0002_s0,mnist_5x100_l1-0.0002_s0,mnist_2x800_l1-0.0002_s0
for s in auto per-neuron; do
  ( python benchmarks/run.py --only 2x100,2x200,3x100 --strategies $s --time-limit 60 --out benchmarks/results/$s-small.json
    python benchmarks/run.py --only $LARGE --strategies $s --time-limit 120 --out benchmarks/results/$s-large.json ) &
done
wait
python benchmarks/run.py --summarize benchmarks/results/*-small.json benchmarks/results/*-large.json
