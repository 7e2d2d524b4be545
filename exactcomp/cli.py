"""Command line: ``exactcomp compress | verify | inspect | solvers | bench``.

Exit status: 0 success; 1 verification failed (nothing written); 2 user error (bad model,
domain or option; one-line message, no traceback); 130 interrupted before any result.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__
from .errors import ExactcompError, VerificationError


def _console(stderr: bool = False):
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        console = Console(stderr=stderr, highlight=False, width=160)
    return console


def _parser() -> argparse.ArgumentParser:
    from .analysis import STRATEGIES
    from .formulations import REGISTRY as FORMULATIONS

    p = argparse.ArgumentParser(prog="exactcomp", description="Exact compression of ReLU networks over an input box.")
    p.add_argument("--version", action="version", version=f"exactcomp {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compress", help="prove neuron stability and write an equivalent smaller model")
    c.add_argument("model", type=Path, help="input ONNX model")
    c.add_argument("--domain", "-d", type=Path, required=True, help="box file: {\"lower\": ..., \"upper\": ...}")
    c.add_argument("-o", "--output", type=Path, required=True, help="compressed ONNX model to write")
    c.add_argument("--report", type=Path, help="write the JSON report here")
    c.add_argument("--samples", type=Path, help=".npy of inputs to try as witnesses (points outside the box are ignored)")
    c.add_argument("--witnesses", type=Path,
                   help="where to store the witness inputs (default: OUTPUT with suffix .witnesses.npy); "
                        "'verify' reads them from there")
    c.add_argument("--no-witnesses", action="store_true", help="do not store the witness inputs")
    c.add_argument("--no-verify", action="store_true", help="skip the onnxruntime check of the output (not recommended)")
    c.add_argument("--strategy", choices=list(STRATEGIES), default="auto",
                   help="auto (default): bounds, witnesses, LP tightening, one feasibility MILP per remaining "
                        "neuron; network: the single network-wide MILP (NeurIPS 2021); per-neuron: two MILPs "
                        "per neuron (CPAIOR 2020 baseline); bounds: bounds and witnesses only")
    c.add_argument("--time-limit", type=_positive_float, metavar="SECONDS",
                   help="limit for the LP/MILP phases; neurons not decided in time are unknown and kept")
    c.add_argument("--solver", default="highs", metavar="NAME",
                   help="MILP/LP back end: highs (default), scip, ortools[:scip|highs|cp_sat], pyomo[:SOLVER]; "
                        "see 'exactcomp solvers'")
    c.add_argument("--formulation", choices=list(FORMULATIONS), default="bigm",
                   help="MILP formulation: bigm (default) or bigm-ideal (big-M plus Anderson et al. 2020 ideal "
                        "cuts separated at the root of each per-neuron MILP)")
    c.add_argument("--threads", type=_positive_int, help="solver threads (default: the solver's choice)")
    c.add_argument("--jobs", type=_positive_int, metavar="N",
                   help="per-neuron MILPs solved at once (default: CPU cores, at most 4)")
    c.add_argument("--margin", type=_positive_float, default=None,
                   help="safety margin τ of LP/MILP proofs: stable means |g| >= τ proven (default 1e-4)")
    c.add_argument("--no-symbolic", action="store_true", help="use interval bounds only")
    c.add_argument("--random-points", type=int, default=2048, help="random points for the witness search (default 2048)")
    c.add_argument("--gradient-steps", type=int, default=40, help="steps per gradient restart (default 40)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--json", action="store_true", help="print the JSON report on stdout instead of the table")
    c.add_argument("--quiet", "-q", action="store_true", help="no progress display")

    v = sub.add_parser("verify", help="compare a compressed model with its original on the domain (exit 1 on mismatch)")
    v.add_argument("original", type=Path)
    v.add_argument("compressed", type=Path)
    v.add_argument("--domain", "-d", type=Path, required=True)
    v.add_argument("--points", type=Path, action="append", default=[],
                   help=".npy of extra points (repeatable); COMPRESSED's stored witnesses (.witnesses.npy) are added when present")
    v.add_argument("--random-points", type=int, default=1000)
    v.add_argument("--rtol", type=float, default=None)
    v.add_argument("--atol", type=float, default=None)
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--json", action="store_true", help="print the result as JSON")

    i = sub.add_parser("inspect", help="show the imported layer graph")
    i.add_argument("model", type=Path)
    i.add_argument("--json", action="store_true")
    b = sub.add_parser("bench", help="run strategies x solvers x formulations on models; CSV/JSON and plots")
    b.add_argument("models", type=Path, nargs="+", help="ONNX models (box from --domain or MODEL.box.json)")
    b.add_argument("--domain", "-d", type=Path, help="one box file for every model")
    b.add_argument("--strategy", default="auto", help="comma-separated strategies (default auto)")
    b.add_argument("--solver", default="highs", help="comma-separated solvers (default highs)")
    b.add_argument("--formulation", default="bigm", help="comma-separated formulations (default bigm)")
    b.add_argument("--time-limit", type=_positive_float, metavar="SECONDS", help="per run, for the LP/MILP phases")
    b.add_argument("--jobs", type=_positive_int, metavar="N", help="per-neuron MILPs solved at once")
    b.add_argument("--out", type=Path, default=Path("bench-results"), help="output folder (default bench-results)")
    b.add_argument("--no-plots", action="store_true", help="skip the matplotlib plots")
    s = sub.add_parser("solvers", help="list the solver back ends and whether they are usable here")
    s.add_argument("--json", action="store_true")
    return p


def _positive(cast, minimum, kind: str):
    """An argparse type: ``cast(text)`` that must be at least ``minimum`` (exclusive for floats) and finite."""
    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {kind}: {text!r}") from None
        if not (value > minimum if cast is float else value >= minimum) or value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be a positive {kind.split()[-1]}, got {text}")
        return value
    return parse


_positive_float = _positive(float, 0.0, "a number")
_positive_int = _positive(int, 1, "an integer")


def _check_output_path(args) -> None:
    out = args.output
    if out.resolve() == args.model.resolve():
        raise ExactcompError(f"{out}: output would overwrite the input model")
    if not out.parent.resolve().is_dir():
        raise ExactcompError(f"{out}: directory {out.parent} does not exist")
    if out.is_dir():
        raise ExactcompError(f"{out}: is a directory")
    for extra in (args.report, args.witnesses):
        if extra is not None and not extra.parent.resolve().is_dir():
            raise ExactcompError(f"{extra}: directory {extra.parent} does not exist")


def cmd_compress(args) -> int:
    from . import api
    from .onnx_export import to_onnx, write_model_atomic
    from .progress import progress_display
    from .files import write_json, write_npy
    from .report import build_report, summary_lines, summary_table
    from .verify import stored_witnesses_path, verify_models

    if args.witnesses is None and not args.no_witnesses:
        args.witnesses = stored_witnesses_path(args.output)
    if args.no_witnesses:
        args.witnesses = None
    _check_output_path(args)
    err = _console(stderr=True)
    t0 = time.perf_counter()
    net = api.load(args.model)
    api.check_exportable(net)
    t_import = time.perf_counter() - t0
    box = api.domain(net, args.domain)
    samples = api.samples(net, args.samples) if args.samples else None
    show = not args.quiet and err.is_terminal
    with progress_display(err, show) as progress:
        result = api.compress(net, box, progress=progress, symbolic=not args.no_symbolic,
                              random_points=args.random_points, gradient_steps=args.gradient_steps,
                              seed=args.seed, samples=samples, strategy=args.strategy,
                              time_limit=args.time_limit, threads=args.threads, jobs=args.jobs, solver=args.solver,
                              formulation=args.formulation,
                              **({"margin": args.margin} if args.margin is not None else {}))
    result.times["import"] = t_import
    t0 = time.perf_counter()
    model = to_onnx(result.compressed)
    result.times["export"] = time.perf_counter() - t0
    verification = None
    if not args.no_verify:
        t0 = time.perf_counter()
        extra = result.analysis.witnesses if samples is None else np.vstack([result.analysis.witnesses, samples])
        verification = verify_models(args.model, model, box, extra_points=extra, seed=args.seed)
        result.times["verify"] = time.perf_counter() - t0
    ok = verification is None or verification.passed
    if ok:
        write_model_atomic(model, args.output)
        if args.witnesses:
            write_npy(args.witnesses, result.analysis.witnesses.reshape(-1, *result.original.input.shape))
    report = build_report(result, model=args.model, domain=args.domain, output=args.output if ok else None,
                          verification=verification, witnesses_file=args.witnesses if ok else None)
    if args.report:
        write_json(args.report, report)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        out = _console()
        out.print(summary_table(report))
        for line in summary_lines(report):
            out.print(line)
        if ok:
            out.print(f"wrote       {args.output}")
    if not ok:
        raise VerificationError(
            f"{args.output}: not written: compressed model differs from {args.model} "
            f"(max abs error {verification.max_abs_error:.3e}); this is a bug, please report it")
    return 0


def cmd_verify(args) -> int:
    from . import api
    from .verify import ATOL, RTOL, stored_witnesses_path

    net = api.load(args.original)  # the compressed model is only run, never imported (it may be constant)
    box = api.domain(net, args.domain)
    stored = stored_witnesses_path(args.compressed)
    point_files = list(args.points) + ([stored] if stored.exists() and stored not in args.points else [])
    extra = [api.samples(net, p) for p in point_files]
    extra = np.vstack(extra) if extra else None
    result = api.verify(args.original, args.compressed, box, extra_points=extra, random_points=args.random_points,
                        rtol=args.rtol if args.rtol is not None else RTOL,
                        atol=args.atol if args.atol is not None else ATOL, seed=args.seed)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        verdict = "PASSED" if result.passed else "FAILED"
        print(f"{verdict}: {args.compressed} vs {args.original} on {result.points} points "
              f"({result.random_points} random, {result.corner_points} corners, {result.extra_points} extra"
              f"{' from ' + ', '.join(map(str, point_files)) if point_files else ''})")
        for o in result.outputs:
            print(f"  output {o.name}: max abs error {o.max_abs_error:.3e}, max rel error {o.max_rel_error:.3e}, "
                  f"{o.mismatches} mismatching points")
        print(f"  tolerance: |diff| <= {result.atol:g}*max(1,max|orig|) + {result.rtol:g}*|orig|")
    return 0 if result.passed else 1


def cmd_inspect(args) -> int:
    from . import api

    net = api.load(args.model)
    info = {
        "model": str(args.model),
        "input": {"name": net.input.name, "shape": list(net.input.shape), "dtype": net.input.dtype, "batch": net.input.batch},
        "compute_dtype": net.compute_dtype,
        "layers": [{"layer": l.layer_id, "kind": "relu" if i < len(net.layers) - 1 else "output",
                    "in": l.fan_in, "out": l.width, "parameters": l.parameter_count}
                   for i, l in enumerate(net.layers)],
        "trunk_output": {"name": net.trunk_output.name, "shape": list(net.trunk_output.shape)},
        "head": None if net.head is None else {"input": net.head.input_name, "nodes": _head_ops(net)},
        "outputs": [{"name": o.name, "shape": list(o.shape), "dtype": o.dtype} for o in net.outputs],
        "parameters": net.parameter_count,
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{args.model}: input '{net.input.name}' {list(net.input.shape)} {net.input.dtype} (batch axis {net.input.batch}), "
          f"compute {net.compute_dtype}")
    for entry in info["layers"]:
        print(f"  layer {entry['layer']}: affine {entry['in']} -> {entry['out']}"
              f"{' + ReLU' if entry['kind'] == 'relu' else ' (output)'}  [{entry['parameters']} parameters]")
    print(f"  trunk output '{net.trunk_output.name}' {list(net.trunk_output.shape)}")
    if info["head"]:
        print(f"  head: {' -> '.join(info['head']['nodes'])}")
    print("  outputs: " + ", ".join(f"{o['name']} {o['shape']} {o['dtype']}" for o in info["outputs"]))
    print(f"  parameters: {net.parameter_count}")
    return 0


def _head_ops(net) -> list[str]:
    import onnx

    graph = onnx.GraphProto()
    graph.ParseFromString(net.head.graph)
    return [n.op_type for n in graph.node]


def cmd_bench(args) -> int:
    from .analysis import STRATEGIES
    from .bench import plot, run_grid
    from .formulations import get_formulation

    strategies, solvers, formulations = (v.split(",") for v in (args.strategy, args.solver, args.formulation))
    for strategy in strategies:
        if strategy not in STRATEGIES:
            raise ExactcompError(f"unknown strategy '{strategy}'; available: {', '.join(STRATEGIES)}")
    for formulation in formulations:
        get_formulation(formulation)
    for model in args.models:
        box = args.domain or model.with_suffix(".box.json")
        if not model.exists() or not box.exists():
            raise ExactcompError(f"{model if not model.exists() else box}: no such file")
    records = run_grid(args.models, strategies, solvers, formulations, args.out, domain=args.domain,
                       time_limit=args.time_limit, jobs=args.jobs, echo=lambda line: print(line, flush=True))
    files = [] if args.no_plots else plot(records, args.out)
    print(f"wrote {args.out / 'results.json'}, {args.out / 'results.csv'}"
          + "".join(f", {f}" for f in files))
    return 0


def cmd_solvers(args) -> int:
    from exactcomp.solvers import REGISTRY, available

    found = available()
    if args.json:
        print(json.dumps({name: {"backend": REGISTRY[name], "status": status} for name, status in found.items()}, indent=2))
        return 0
    for name, status in found.items():
        print(f"{name:8s} {status}")
    return 0


COMMANDS = {"compress": cmd_compress, "verify": cmd_verify, "inspect": cmd_inspect, "solvers": cmd_solvers,
            "bench": cmd_bench}


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except VerificationError as exc:
        print(f"exactcomp: error: {exc}", file=sys.stderr)
        return 1
    except ExactcompError as exc:
        print(f"exactcomp: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("exactcomp: interrupted; nothing written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
