"""What the domain-dependent rewrite rules add: selections (a dense reader of a convolution or max pooling that
drops the entries constant on the domain; a max pooling with fixed winners) on the shipped CNNs.

    python benchmarks/domain_rules.py [--time-limit 60] [--out benchmarks/results/domain_rules.json]
    python benchmarks/domain_rules.py --extra MODEL.onnx DOMAIN [--extra ...]     # other models and domains

Domains: the range of the training images of ones and of zeros (``exactcomp domain from-data`` with margin
0.05, clipped to [0, 1]; the README's ``ones.json`` / ``zeros.json``), and the full box [0, 1]^784. Each
(model, domain): one analysis (``--time-limit`` for the proof phases), then the rewrite twice on it, with
every rule and with the selection pass (``exactcomp.rewrite.selection.select_everywhere``) replaced by the
identity (the ablation); both compressed models are checked with ``exactcomp.verify`` (onnxruntime). Prints a
markdown table; writes the records as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODELS = ["mnist_cnn_8x16", "mnist_cnn_maxpool", "mnist_resnet_tiny"]


def mnist_domains() -> dict:
    from exactcomp.domain import Box
    from exactcomp.domains.derive import box_from_data

    sys.path.insert(0, str(ROOT / "models"))
    from train import load_mnist

    images, labels = load_mnist()
    unit = Box(np.zeros(784), np.ones(784))
    train = images[:8000].reshape(-1, 784)
    return {"ones": box_from_data(train[labels[:8000] == 1], 0.05, unit),
            "zeros": box_from_data(train[labels[:8000] == 0], 0.05, unit), "[0,1]": unit}


def run_one(model: str, name: str, domain, time_limit: float) -> dict:
    import exactcomp
    from exactcomp.rewrite import rules

    net = exactcomp.load(model)
    t0 = time.perf_counter()
    analysis = exactcomp.analyze(net, domain, time_limit=time_limit)
    seconds = time.perf_counter() - t0
    full = rules.compress_network(net, analysis)
    with mock.patch.object(rules, "select_everywhere", lambda net, analysis: net):
        ablated = rules.compress_network(net, analysis)
    checks = [exactcomp.verify(net, small, analysis.box).passed for small in (full, ablated)]
    return {"model": Path(model).stem, "domain": name, "parameters": net.parameter_count,
            "with_selections": full.parameter_count, "without_selections": ablated.parameter_count,
            "unknown": model_unknowns(net, analysis), "analysis_s": round(seconds, 1), "verify": checks}


def model_unknowns(net, analysis) -> int:
    """Unknown neurons of the model (not the auxiliary comparison neurons of a max pooling, which no prover targets)."""
    from exactcomp.analysis import Status

    auxiliary = {layer.layer_id for layer in net.hidden if getattr(layer, "auxiliary", False)}
    return int(sum((la.status == Status.UNKNOWN).sum() for la in analysis.layers if la.layer_id not in auxiliary))


def table(records: list[dict]) -> str:
    lines = ["| model | domain | parameters | without selections | with selections | unknown | analysis s | verify |",
             "|---|---|---|---|---|---|---|---|"]
    for r in records:
        n = r["parameters"]
        cell = lambda k: f"{r[k]:,} ({100 * (1 - r[k] / n):.1f} %)"   # noqa: E731
        verdict = "passed" if all(r["verify"]) else "FAILED"
        lines.append(f"| {r['model']} | {r['domain']} | {n:,} | {cell('without_selections')} | "
                     f"{cell('with_selections')} | {r['unknown']} | {r['analysis_s']} | {verdict} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--out", default=str(HERE / "results" / "domain_rules.json"))
    parser.add_argument("--extra", nargs=2, action="append", default=[], metavar=("MODEL", "DOMAIN"))
    parser.add_argument("--no-shipped", action="store_true", help="only the --extra pairs")
    args = parser.parse_args(argv)
    records = []
    if not args.no_shipped:
        domains = mnist_domains()
        for model in MODELS:
            for name, domain in domains.items():
                records.append(run_one(str(ROOT / "models" / f"{model}.onnx"), name, domain, args.time_limit))
                print(table(records[-1:]).splitlines()[-1], flush=True)
    for model, domain in args.extra:
        records.append(run_one(model, Path(domain).name, domain, args.time_limit))
        print(table(records[-1:]).splitlines()[-1], flush=True)
    Path(args.out).write_text(json.dumps(records, indent=1))
    print(table(records))
    return 0 if all(all(r["verify"]) for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
