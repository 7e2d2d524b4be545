"""``exactcomp stabilize``: fine-tune a model so that more of its units are provably dead over the domain, within
an accuracy budget, and write the same model with new weights (:mod:`exactcomp.finetune.train`).

    exactcomp stabilize MODEL --domain D [--domain D2 ...] --data X.npy [--labels y.npy] -o OUT.onnx
        [--val-data V.npy [--val-labels v.npy]] [--max-accuracy-drop PTS | --min-agreement F]
        [--val-fraction F] [--epochs N] [--time-limit S] [--seed N] [--report R.json]

The budget is measured on validation data that fine-tuning never sees: ``--val-data`` (best: inputs the
original model was not trained on either), else a seeded ``--val-fraction`` of ``--data``. ``compress`` of
OUT over the same domain then removes the given-up units exactly. Data rows outside the domain are refused.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from exactcomp.errors import DomainError, ExactcompError, VerificationError

MODEL, REPORT = "-o/--output", "--report"


def add_parser(sub, exit_codes: str, number, time_limit) -> None:
    s = sub.add_parser("stabilize", help="fine-tune a model so that exact compression removes more (changes the "
                                         "function within a budget)", description=__doc__.split("\n\n")[0],
                       epilog=exit_codes, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("model", type=Path, help="input ONNX model (its first output: the logits)")
    s.add_argument("--domain", "-d", type=Path, required=True, action="append",
                   help="box JSON or VNN-LIB file; repeat it for a union")
    s.add_argument("--data", type=Path, required=True, help=".npy of inputs to fine-tune on, one per row")
    s.add_argument("--labels", type=Path, help=".npy of integer class labels of --data (without: distillation only, "
                                               "budget as agreement with the original)")
    s.add_argument("--val-data", type=Path, help=".npy of validation inputs (default: --val-fraction of --data)")
    s.add_argument("--val-labels", type=Path, help=".npy of the labels of --val-data")
    s.add_argument("-o", "--output", type=Path, required=True, help="the stabilized ONNX model to write")
    s.add_argument("--report", type=Path, help="write the JSON record here")
    s.add_argument("--max-accuracy-drop", type=number(float, 0.0, 100.0), default=0.5, metavar="PTS",
                   help="with labels: validation accuracy may drop by at most PTS points (default 0.5)")
    s.add_argument("--min-agreement", type=number(float, 0.0, 1.0), default=0.99, metavar="F",
                   help="without labels: top-1 agreement with the original on validation data (default 0.99)")
    s.add_argument("--val-fraction", type=number(float, 0.0, 1.0, low_open=True), default=0.2, metavar="F",
                   help="share of --data held out for validation when --val-data is not given (default 0.2)")
    s.add_argument("--epochs", type=number(int, 1, 1000), default=3, metavar="N", help="epochs per round (default 3)")
    s.add_argument("--time-limit", type=time_limit, default=300.0, metavar="SECONDS",
                   help="budget of the whole fine-tuning (default 300; 'none': no limit); the last round that met the "
                        "budget is written")
    s.add_argument("--seed", type=number(int, 0, 2 ** 32 - 1), default=0, help="seed of the split and the shuffling")


def run_stabilize(args) -> int:
    from exactcomp.cli.signals import import_quietly, received

    import_quietly("torch")
    from exactcomp import api
    from exactcomp.cli.commands import _console
    from exactcomp.io.files import json_bytes
    from exactcomp.pipeline import plan_outputs
    from exactcomp.finetune.graph import with_weights
    from exactcomp.finetune.train import StabilizeOptions, stabilize_graph

    inputs = {"input model": args.model, "data file": args.data, "labels file": args.labels,
              "validation data file": args.val_data, "validation labels file": args.val_labels,
              **{f"domain file {d}": d for d in args.domain}}
    outputs = plan_outputs(args.output, None, args.report, inputs)
    model, net = _load(args.model)
    domain = api.load_domain(net, *args.domain)
    data, labels = _samples(api, net, domain, args.data, args.labels, "--data", model)
    validation = None
    if args.val_data is not None:
        validation = _samples(api, net, domain, args.val_data, args.val_labels, "--val-data", model)
        if (validation[1] is None) != (labels is None):
            raise ExactcompError("--labels and --val-labels go together (both, or neither)")
    elif args.val_labels is not None:
        raise ExactcompError("--val-labels needs --val-data")
    shape = (len(domain.parts), *net.input.shape)
    lower = np.stack([p.lower for p in domain.parts]).reshape(shape)
    upper = np.stack([p.upper for p in domain.parts]).reshape(shape)
    options = StabilizeOptions(max_accuracy_drop=args.max_accuracy_drop, min_agreement=args.min_agreement,
                               val_fraction=args.val_fraction, epochs=args.epochs, time_limit=args.time_limit,
                               seed=args.seed)
    err = _console(stderr=True)

    def progress(entry):
        err.print(f"round {entry['round']}: {entry['units_given_up']} of {entry['units']} units given up, "
                  f"{'all' if entry['proven_dead'] else 'not all'} proven dead, {record_metric(entry)}, "
                  f"{entry['seconds']:.0f} s")

    values, record = stabilize_graph(model, lower, upper, data.reshape(-1, *net.input.shape), labels, options,
                                     progress, None if validation is None else
                                     (validation[0].reshape(-1, *net.input.shape), validation[1]))
    report = {"schema": "exactcomp.stabilize/1", "model": str(args.model), "output": str(args.output) if values else None,
              "metric": record.metric, "before": record.before, "rounds": record.rounds, "chosen": record.chosen,
              "seconds": record.seconds, "interrupted": record.interrupted}
    with outputs:
        if values is not None:
            new_bytes = with_weights(model, values).SerializeToString()
            outputs.stage(MODEL, lambda fh: fh.write(new_bytes))
        if args.report is not None:
            report_bytes = json_bytes(report)
            outputs.stage(REPORT, lambda fh: fh.write(report_bytes))
        outputs.commit()
    signum = received() if record.interrupted else None
    if values is None:
        if signum:
            raise KeyboardInterrupt
        raise StabilizeFailed(f"{args.model}: no round met the budget ({record.metric} {record.before:.4f} before; "
                              f"first round {record_metric(record.rounds[0]) if record.rounds else 'not reached'}); "
                              "nothing written")
    chosen = record.rounds[record.chosen - 1]
    print(f"wrote {args.output}: {chosen['units_given_up']} of {chosen['units']} units provably dead over the domain, "
          f"{record.metric} {record.before:.4f} -> {chosen[record.metric]:.4f} on {'--val-data' if validation else 'the validation split'}"
          f"; now run: exactcomp compress {args.output} " + " ".join(f"--domain {d}" for d in args.domain) + " -o SMALL.onnx")
    return 128 + signum if signum else 0


class StabilizeFailed(VerificationError):
    """No round of stabilize met the budget (exit 1, like a failed verification)."""


def record_metric(entry: dict) -> str:
    key = "accuracy" if "accuracy" in entry else "agreement"
    return f"{key} {entry[key]:.4f}"


def _load(path: Path):
    import onnx

    from exactcomp import api
    from exactcomp.errors import ModelError
    from exactcomp.finetune.graph import TorchGraph

    net = api.load(path)   # the model exactcomp reads (and will compress), with its one-line errors
    try:
        model = onnx.load(str(path))
    except Exception as exc:   # noqa: BLE001 - api.load read it already; anything else is the file's fault
        raise ModelError(f"{path}: {str(exc).splitlines()[0][:120]}") from None
    TorchGraph(model)   # an op that cannot be trained: one line naming the node
    return model, net


def _samples(api, net, domain, path: Path, labels_path: Path | None, flag: str, model):
    data = api.samples(net, path)
    if not len(data):
        raise DomainError(f"{path}: {flag} holds no rows")
    outside = int((~domain.contains(data)).sum())
    if outside:
        raise DomainError(f"{path}: {outside} of {len(data)} rows of {flag} lie outside the domain; keep the rows "
                          "inside it (the budget is about the domain) or widen the domain")
    if labels_path is None:
        return data, None
    from exactcomp.domain import read_npy

    labels = read_npy(labels_path)
    classes = net.layers[-1].width
    if labels.dtype.kind not in "iu" or labels.ndim != 1:
        raise DomainError(f"{labels_path}: labels must be a 1-D integer array, got {labels.dtype} {list(labels.shape)}")
    if len(labels) != len(data):
        raise DomainError(f"{labels_path}: {len(labels)} labels for {len(data)} rows of {path}")
    if labels.min() < 0 or labels.max() >= classes:
        raise DomainError(f"{labels_path}: labels must lie in 0..{classes - 1} (the model has {classes} outputs)")
    return data, labels.astype(np.int64)
