"""``exactcomp stabilize``: fine-tune a model so that more of its units are provably dead over the domain, within
an accuracy budget, and write the same model with new weights (:mod:`exactcomp.finetune`).

    exactcomp stabilize MODEL --domain D [--domain D2 ...] --data X.npy [--labels y.npy] -o OUT.onnx
        [--val-data V.npy [--val-labels v.npy]] [--max-accuracy-drop PTS | --min-agreement F]
        [--val-fraction F] [--epochs N] [--time-limit S] [--seed N] [--device cpu|cuda]
        [--report R.json] [--then-compress SMALL.onnx] [--quiet]
        [--sweep N [--plot P.png] [--baseline-epochs E]]

The budget is measured on validation data that fine-tuning never sees: ``--val-data`` (best: inputs the
original model was not trained on either), else a seeded ``--val-fraction`` of ``--data``. ``compress`` of
OUT over the same domain then removes the given-up units exactly (``--then-compress`` runs it). Data rows
outside the domain are refused. Ctrl-C, SIGTERM and ``--time-limit`` write the last round that met the
budget (or nothing, exit 1 / 130 / 143). ``--sweep N`` measures the trade-off at N strengths beside two
baselines (magnitude pruning, L1 from scratch), every point compressed exactly: a table, the report's
``sweep`` entry and a PNG plot (:mod:`exactcomp.finetune.sweep`); OUT is still the round the budget chose.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from exactcomp.errors import ExactcompError, VerificationError

MODEL, REPORT, PLOT = "-o/--output", "--report", "--plot"


def add_parser(sub, exit_codes: str, number, time_limit) -> None:
    s = sub.add_parser("stabilize", help="fine-tune a model so that exact compression removes more (changes the "
                                         "function within a budget)", description=__doc__.split("\n\n")[0],
                       epilog=exit_codes, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("model", type=Path, help="input ONNX model (its first output: the logits)")
    s.add_argument("--domain", "-d", type=Path, required=True, action="append",
                   help="box JSON or VNN-LIB file (or `exactcomp domain from-data` output); repeat it for a union")
    s.add_argument("--data", type=Path, required=True, help=".npy of inputs to fine-tune on, one per row")
    s.add_argument("--labels", type=Path, help=".npy of integer class labels of --data (without: distillation only, "
                                               "budget as agreement with the original)")
    s.add_argument("--val-data", type=Path, help=".npy of validation inputs (default: --val-fraction of --data)")
    s.add_argument("--val-labels", type=Path, help=".npy of the labels of --val-data")
    s.add_argument("-o", "--output", type=Path, required=True, help="the stabilized ONNX model to write")
    s.add_argument("--report", type=Path, help="write the JSON record here")
    s.add_argument("--then-compress", type=Path, metavar="SMALL.onnx",
                   help="then compress the stabilized model exactly over the domain and write it here (verified)")
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
    s.add_argument("--device", default="cpu", metavar="DEVICE", help="torch device: cpu (default), cuda or cuda:N")
    s.add_argument("--score", default="logit_change", choices=["logit_change", "ablation", "magnitude"],
                   help="which units to give up first (default logit_change: first-order logit change; ablation: the "
                        "logit change of masking each unit, one at a time; magnitude: incoming weight norm)")
    s.add_argument("--allocation", default="uniform", choices=["uniform", "cost"],
                   help="how a round spreads the units it gives up over the layers (default uniform: the same "
                        "fraction of each; cost: by score per parameter a unit holds, over all layers at once)")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress display and no per-round lines")
    s.add_argument("--sweep", type=number(int, 2, 50), metavar="N",
                   help="N strengths of stabilize and of the two baselines, each compressed exactly: a Pareto table, "
                        "the report's 'sweep' entry and a PNG plot (long: several fine-tunings and trainings)")
    s.add_argument("--plot", type=Path, metavar="P.png", help="the sweep's plot (default: OUT's name + .sweep.png)")
    s.add_argument("--baseline-epochs", type=number(int, 1, 1000), default=10, metavar="E",
                   help="epochs of the L1-from-scratch baseline of --sweep (default 10)")


def run_stabilize(args) -> int:
    """``exactcomp stabilize``: check every input and output first, fine-tune (or sweep), then write."""
    from exactcomp.cli.console import console as _console

    _check(args)
    err = _console(stderr=True)
    result, points = _fine_tune(args, err)
    return _finish(args, result, points, err)


def _check(args) -> None:
    """torch and (for a sweep) matplotlib importable, the device usable, every output path planned."""
    from importlib import import_module

    from exactcomp.cli.signals import import_quietly
    from exactcomp.options import check_device
    from exactcomp.pipeline import plan_outputs

    import_quietly("torch")
    try:
        import_module("torch")
    except ImportError:
        raise ExactcompError("exactcomp stabilize needs torch: pip install 'exactcomp[torch]'") from None
    check_device(args.device)
    inputs = {"input model": args.model, "data file": args.data, "labels file": args.labels,
              "validation data file": args.val_data, "validation labels file": args.val_labels,
              **{f"domain file {d}": d for d in args.domain}}
    if args.plot is not None and args.sweep is None:
        raise ExactcompError("--plot goes with --sweep N")
    if args.sweep is not None:
        if args.then_compress is not None:
            raise ExactcompError("--sweep compresses every point itself; --then-compress goes without it")
        import_quietly("matplotlib")
        try:
            import_module("matplotlib")
        except ImportError:
            raise ExactcompError("--sweep draws its plot with matplotlib: pip install matplotlib") from None
        args.plot = args.plot or args.output.with_name(args.output.stem + ".sweep.png")
    planned = plan_outputs(args.output, None, args.report, inputs)   # every output checked before any work
    planned.add(PLOT, args.plot)
    planned.check(inputs)
    if args.then_compress is not None:
        plan_outputs(args.then_compress, None, None, {**inputs, MODEL: args.output, REPORT: args.report})


def _fine_tune(args, err) -> tuple:
    """``(StabilizeResult, sweep points or None)`` with a progress display and per-round lines on ``err``."""
    from exactcomp.cli.progress import progress_display
    from exactcomp.finetune.api import stabilize

    on_round = None if args.quiet else (lambda entry: err.print(round_line(entry)))
    options = dict(val_data=args.val_data, val_labels=args.val_labels, on_round=on_round,
                   max_accuracy_drop=args.max_accuracy_drop, min_agreement=args.min_agreement,
                   val_fraction=args.val_fraction, epochs=args.epochs, time_limit=args.time_limit, seed=args.seed,
                   device=args.device, allocation=args.allocation)
    with progress_display(err, not args.quiet and err.is_terminal) as progress:
        if args.sweep is None:
            return stabilize(args.model, args.data, args.labels, list(args.domain), progress=progress,
                             score=args.score, **options), None
        from exactcomp.finetune.sweep import sweep

        on_point = None if args.quiet else (lambda p: err.print(point_line(p)))
        return sweep(args.model, args.data, args.labels, list(args.domain), points=args.sweep,
                     baseline_epochs=args.baseline_epochs, on_point=on_point, progress=progress,
                     score=args.score, **options)


def _finish(args, result, points, err) -> int:
    """Warnings, then the outputs (nothing if no round met the budget: exit 1), the summary; the exit code."""
    from exactcomp.cli.signals import deferred, received

    record = result.record
    for warning in record.warnings:
        err.print(f"warning: {warning}")
    signum = received() if record.interrupted else None
    extra = {} if points is None else _sweep_outputs(args, result, points)
    if result.model is None:
        _write(None, args.report, result.report(output=None, **extra.get("report", {})), plot=extra.get("plot"))
        if signum:
            raise KeyboardInterrupt
        raise StabilizeFailed(f"{args.model}: no round met the budget ({record.metric} {record.before:.4f} before; "
                              f"first round {metric_text(record.rounds[0]) if record.rounds else 'not reached'}); "
                              "nothing written")
    compressed = None
    if args.then_compress is None:
        _write(result, args.report, result.report(output=str(args.output), **extra.get("report", {})), args.output,
               extra.get("plot"))
    else:   # the stabilized model first (compress reads and verifies against that file), the report last
        _write(result, None, None, args.output)
        compressed = _then_compress(args)
        _write(None, args.report, result.report(output=str(args.output), compress=compressed))
    with deferred():
        if points is not None:
            print(extra["report"]["sweep"]["table"])
            print(f"plot: {args.plot}")
        print(summary(result, args, compressed))
    return 128 + signum if signum else 0


def _write(result, report_path, report, model_path=None, plot=None) -> None:
    """The stabilized model, the report and the sweep's plot (``(path, PNG bytes)``), together or not at all."""
    from exactcomp.io.files import OutputSet, json_bytes

    outputs = OutputSet()
    outputs.add(MODEL, model_path if result is not None else None)
    outputs.add(REPORT, report_path)
    outputs.add(PLOT, None if plot is None else plot[0])
    with outputs:
        if plot is not None:
            outputs.stage(PLOT, lambda fh: fh.write(plot[1]))
        if result is not None:
            data = result.model.SerializeToString()
            outputs.stage(MODEL, lambda fh: fh.write(data))
        if report_path is not None:
            report_bytes = json_bytes(report)
            outputs.stage(REPORT, lambda fh: fh.write(report_bytes))
        outputs.commit()


def _then_compress(args) -> dict:
    """``exactcomp compress`` of the file just written over the same domain, saved (verified) to --then-compress."""
    import time

    from exactcomp import api

    t0 = time.perf_counter()
    small = api.compress(str(args.output), list(args.domain))
    small.save(args.then_compress, witnesses=False)
    totals = small.analysis.model_totals()   # a max pooling's comparison neurons are not the model's
    return {"output": str(args.then_compress), "parameters_before": small.parameters_before,
            "parameters_after": small.parameters_after, "removed_fraction": small.removed_fraction,
            "unknown": totals["unknown"], "not_needed": totals["not_needed"], "seconds": time.perf_counter() - t0,
            "verified": True}


def _sweep_outputs(args, result, points) -> dict:
    """The sweep's table and JSON (for the report) and its plot's PNG bytes."""
    import io

    from exactcomp.finetune.plot import pareto_png
    from exactcomp.finetune.sweep import as_json, table

    r, o = result.record, result.options
    before = result.original_parameters
    floor = r.before - o.max_accuracy_drop / 100 if r.metric == "accuracy" else o.min_agreement
    png = io.BytesIO()
    pareto_png(points, png, metric=r.metric, before=r.before, floor=floor, parameters_before=before,
               title=f"{args.model.name}: exact compression after fine-tuning")
    text = table(points, r.metric, r.before, before)
    return {"report": {"sweep": {"points": as_json(points), "table": text, "plot": str(args.plot),
                                 "parameters_before": before}},
            "plot": (args.plot, png.getvalue())}


def point_line(p) -> str:
    return (f"sweep {p.method} {p.strength:.3g}: {100 * p.metric:.2f} %, {p.parameters:,} parameters after exact "
            f"compression, {p.unknown} unknown")


class StabilizeFailed(VerificationError):
    """No round of stabilize met the budget (exit 1, like a failed verification)."""


def metric_text(entry: dict) -> str:
    key = "accuracy" if "accuracy" in entry else "agreement"
    return f"{key} {entry[key]:.4f}"


def round_line(entry: dict) -> str:
    stable = entry["stable"]
    return (f"round {entry['round']}: {entry['units_given_up']} of {entry['units']} units given up, "
            f"{'all' if entry['proven_dead'] else 'not all'} proven dead, {metric_text(entry)} (worst class "
            f"{entry['worst_class']['class']}: {entry['worst_class']['recall']:.3f}), {stable['units_dead']} units and "
            f"{stable['neurons_inactive'] + stable['neurons_active']} of {stable['neurons']} neurons stable by bounds, "
            f"{entry['epochs']} epochs, {entry['seconds']:.0f} s")


def summary(result, args, compressed) -> str:
    from exactcomp.finetune.metrics import worst_class

    record, chosen = result.record, result.chosen
    wc, wr = worst_class(record.recall_before)
    where = "--val-data" if result.validation_given else "the validation split"
    lines = [f"wrote {args.output}: {chosen['units_given_up']} of {chosen['units']} units provably dead over the domain "
             f"(round {record.chosen}, {chosen['fraction']:.0%} given up; {chosen['stable']['units_dead']} units dead "
             f"by bounds, {record.stable_before['units_dead']} before)",
             f"{record.metric} {100 * record.before:.2f} % -> {100 * chosen[record.metric]:.2f} % "
             f"({100 * (chosen[record.metric] - record.before):+.2f} ± {100 * chosen['change_se']:.2f} points, paired s.e.) "
             f"on {where}; worst class "
             f"{wc} {100 * wr:.1f} % -> class {chosen['worst_class']['class']} "
             f"{100 * chosen['worst_class']['recall']:.1f} %; {sum(e['epochs'] for e in record.rounds)} epochs, "
             f"{record.seconds:.0f} s, stopped by: {record.stopped_by}"]
    if compressed is None:
        lines.append(f"next: exactcomp compress {args.output} " + " ".join(f"--domain {d}" for d in args.domain)
                     + " -o SMALL.onnx")
    else:
        lines.append(f"compressed exactly to {compressed['output']}: {compressed['parameters_before']:,} -> "
                     f"{compressed['parameters_after']:,} parameters ({100 * compressed['removed_fraction']:.1f} % "
                     f"removed), {compressed['unknown']} unknown"
                     + (f", {compressed['not_needed']} not needed" if compressed.get("not_needed") else "")
                     + f", verified, {compressed['seconds']:.1f} s")
    return "\n".join(lines)
