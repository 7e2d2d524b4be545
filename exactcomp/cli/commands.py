"""The commands behind the CLI (:mod:`exactcomp.cli.main` parses and validates the options).

Each ``cmd_*`` takes the parsed arguments and returns the exit status; user errors are raised as
:class:`~exactcomp.errors.ExactcompError` and turned into one line by the caller.
"""

from __future__ import annotations

import numpy as np

from exactcomp.cli.console import print_json as _print_json
from exactcomp.errors import ExactcompError


def cmd_compress(args) -> int:
    from exactcomp.cli.compress import run_compress

    return run_compress(args)


def cmd_verify(args) -> int:
    from exactcomp import api
    from exactcomp.io.witness_file import stored_witnesses

    net = api.load(args.original)  # the compressed model is only run, never imported (it may be constant)
    box = api.load_domain(net, *args.domain)
    stored, note = stored_witnesses(args.compressed)
    point_files = list(args.points)
    if stored is not None and not any(stored.resolve() == p.resolve() for p in point_files):
        point_files.append(stored)
    extra = [api.samples(net, p) for p in point_files]
    extra = np.vstack(extra) if extra else None
    result = api.verify(args.original, args.compressed, box, extra_points=extra, random_points=args.random_points,
                        rtol=args.rtol, atol=args.atol, seed=args.seed, provider=args.provider)
    if args.json:
        data = result.to_json()
        data["point_files"] = [str(p) for p in point_files]
        data["notes"] = [note] if note else []
        _print_json(data)
    else:
        verdict = "PASSED" if result.passed else "FAILED"
        print(f"{verdict}: {args.compressed} vs {args.original} on {result.points} points "
              f"({result.random_points} random, {result.corner_points} corners, {result.extra_points} extra"
              f"{' from ' + ', '.join(map(str, point_files)) if point_files else ''})")
        for o in result.outputs:
            print(f"  output {o.name}: max abs error {o.max_abs_error:.3e}, max rel error {o.max_rel_error:.3e}, "
                  f"{o.mismatches} mismatching points")
        print(f"  tolerance ({result.dtype}): |diff| <= {result.atol:g}*max(1,max|orig|) + {result.rtol:g}*|orig|")
        if note:
            print(f"  note: {note}")
    return 0 if result.passed else 1


def _layer_info(layer, output: bool) -> dict:
    """One layer of ``inspect``: ``op`` is ``dense``, ``conv CxHxW -> C'xH'xW' kKxK sS pP``, or the ``describe()``
    of an op unit (:mod:`exactcomp.ops`)."""
    from exactcomp.ir.conv import Conv

    from exactcomp.ir.pool import Pooled

    from exactcomp.ir.maxpool import PoolLevel
    from exactcomp.ir.select import Selected

    op = "dense"
    if isinstance(layer, PoolLevel):
        pool = layer.pool.pool
        op = (f"max pool {'x'.join(map(str, pool.kernel))} stride {pool.stride[0]}x{pool.stride[1]} "
              f"({'x'.join(map(str, pool.in_shape))} -> {'x'.join(map(str, pool.out_shape))}), "
              f"comparisons level {layer.level} of {pool.depth}:")
    if isinstance(layer, Pooled):
        pool = layer.pool
        then = _layer_info(layer.inner, output)["op"].rstrip(":") if isinstance(layer.inner, Conv) else "dense"
        op = (f"average pool {'x'.join(map(str, pool.kernel))} stride {pool.stride[0]}x{pool.stride[1]} "
              f"({'x'.join(map(str, pool.in_shape))} -> {'x'.join(map(str, pool.out_shape))}), {then}:")
    if isinstance(layer, Conv):
        kh, kw = layer.kernel.shape[2:]
        op = (f"conv {'x'.join(map(str, layer.in_shape))} -> {'x'.join(map(str, layer.out_shape))} "
              f"kernel {kh}x{kw} stride {layer.stride[0]}x{layer.stride[1]} pads {list(layer.pads)}"
              + (f" groups {layer.groups}" if layer.groups > 1 else "")
              + (" (input channels-last)" if layer.channels_last else "") + ":")
    if hasattr(layer, "describe"):   # an op unit's own line (exactcomp.ops)
        op = layer.describe() + ":"
    if isinstance(layer, Selected):
        inner = _layer_info(layer.inner, output)
        op = f"select {layer.index.size} of {layer.fan_in} entries, then {inner['op']}"
    return {"layer": layer.layer_id, "kind": "output" if output else "relu", "op": op, "in": layer.fan_in,
            "out": layer.width, "parameters": layer.parameter_count}


def cmd_inspect(args) -> int:
    from exactcomp import api

    net = api.load(args.model)
    info = {
        "model": str(args.model),
        "input": {"name": net.input.name, "shape": list(net.input.shape), "dtype": net.input.dtype, "batch": net.input.batch},
        "compute_dtype": net.compute_dtype,
        "layers": [_layer_info(l, i == len(net.layers) - 1) for i, l in enumerate(net.layers)],
        "skips": [{"from": "input" if s.source < 0 else net.layers[s.source].layer_id, "into": net.layers[s.target].layer_id,
                   "op": type(s.op).__name__.lower(), "parameters": s.op.parameter_count} for s in net.skips],
        "trunk_output": {"name": net.trunk_output.name, "shape": list(net.trunk_output.shape)},
        "head": None if net.head is None else {"input": net.head.input_name, "nodes": _head_ops(net)},
        "outputs": [{"name": o.name, "shape": list(o.shape), "dtype": o.dtype} for o in net.outputs],
        "parameters": net.parameter_count,
    }
    if args.json:
        _print_json(info)
        return 0
    print(f"{args.model}: input '{net.input.name}' {list(net.input.shape)} {net.input.dtype} (batch axis {net.input.batch}), "
          f"compute {net.compute_dtype}")
    for entry in info["layers"]:
        print(f"  layer {entry['layer']}: {entry['op']} {entry['in']} -> {entry['out']}"
              f"{' + ReLU' if entry['kind'] == 'relu' else ' (output)'}  [{entry['parameters']} parameters]")
    for skip in info["skips"]:
        source = "the input" if skip["from"] == "input" else f"layer {skip['from']}'s output"
        print(f"  skip connection: {source} -> layer {skip['into']} ({skip['op']}, {skip['parameters']} parameters)")
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
    from exactcomp.analysis import STRATEGIES
    from exactcomp.cli.bench import plot, run_grid
    from exactcomp.formulations import get_formulation

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
                       time_limit=args.time_limit, jobs=args.jobs, echo=lambda line: print(line, flush=True),
                       executor=args.executor, workers=args.workers)
    files = [] if args.no_plots else plot(records, args.out)
    print(f"wrote {args.out / 'results.json'}, {args.out / 'results.csv'}"
          + "".join(f", {f}" for f in files))
    return 0


def cmd_solvers(args) -> int:
    from exactcomp.solvers import REGISTRY, available

    found = available()
    if args.json:
        _print_json({name: {"backend": REGISTRY[name], "usable": not status.startswith("unavailable"),
                            "status": status} for name, status in found.items()})
        return 0
    print(f"{'solver':8s} {'usable':6s} version or reason")
    for name, status in found.items():
        usable = not status.startswith("unavailable")
        print(f"{name:8s} {'yes' if usable else 'no':6s} {status.removeprefix('unavailable: ')}")
    return 0


def cmd_domain(args) -> int:
    from exactcomp.cli.domain_cmd import cmd_domain as run

    return run(args)


def cmd_stabilize(args) -> int:
    from exactcomp.cli.stabilize_cmd import run_stabilize

    return run_stabilize(args)


COMMANDS = {"stabilize": cmd_stabilize, "compress": cmd_compress, "verify": cmd_verify, "inspect": cmd_inspect, "solvers": cmd_solvers,
            "bench": cmd_bench, "domain": cmd_domain}
