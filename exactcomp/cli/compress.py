"""``exactcomp compress``: the order of the work and the rules for its outputs.

1. Plan the outputs (model, witnesses, report) and refuse, before any work, a path that is an input
   (model, its external-data files, domain, samples; symlinks and hard links resolved), another
   output, a directory, or in a directory where no file can be created.
2. Import; check that the network can be exported and that the domain is usable (representable in
   the model's float type, no overflow of the original model on it).
3. Analyse and rewrite (Ctrl-C / SIGTERM here keep the sound partial result), export, verify.
4. Stage every output in a temporary file, then rename them all into place (:class:`OutputSet`).
   The compressed model records the SHA-256 of its witnesses file in its metadata, so that
   ``verify`` uses only witnesses written for that very model.
"""

from __future__ import annotations

import time

import numpy as np

from exactcomp.errors import DomainError, ExactcompError, VerificationError

MODEL, REPORT, WITNESSES = "-o/--output", "--report", "--witnesses"


def _plan_outputs(args):
    from exactcomp.io.files import OutputSet
    from exactcomp.io.onnx_meta import external_data_files
    from exactcomp.io.witness_file import stored_witnesses_path

    if args.output.is_dir() or not args.output.name:
        raise ExactcompError(f"{args.output}: {MODEL} is a directory; give a file name")
    witnesses = None if args.no_witnesses else (args.witnesses or stored_witnesses_path(args.output))
    outputs = OutputSet()
    outputs.add(MODEL, args.output)
    outputs.add(REPORT, args.report)
    outputs.add(WITNESSES, witnesses)
    inputs = {"input model": args.model, "samples file": args.samples, "earlier report (--resume)": args.resume}
    for i, path in enumerate(args.domain):
        inputs["domain file" if len(args.domain) == 1 else f"domain file #{i + 1}"] = path
    for i, path in enumerate(external_data_files(args.model)):
        inputs[f"external data file #{i + 1} of the model,"] = path
    outputs.check(inputs)
    return outputs, witnesses


def _prepare(args):
    """Import the model and check the domain and exportability before any analysis."""
    from exactcomp import api
    from exactcomp.verify.compare import check_domain_evaluable, check_domain_representable

    t0 = time.perf_counter()
    net = api.load(args.model)
    api.check_exportable(net)
    t_import = time.perf_counter() - t0
    domain = api.load_domain(net, *args.domain)
    for i, box in enumerate(domain.parts):
        what = ", ".join(map(str, args.domain)) + (f" (box {i + 1} of {len(domain.parts)})" if len(domain.parts) > 1 else "")
        check_domain_representable(box, net.input.dtype, what)
        check_domain_evaluable(args.model, box, seed=args.seed)
    samples = api.samples(net, args.samples) if args.samples else None
    resume = None
    if args.resume is not None:
        from exactcomp.analysis import DEFAULT_MARGIN
        from exactcomp.io.resume import load_resume

        if len(domain.parts) > 1:
            raise DomainError(f"--resume works with a single box; the domain has {len(domain.parts)}")
        resume = load_resume(args.resume, net, domain.parts[0], args.model,
                             args.margin if args.margin is not None else DEFAULT_MARGIN)
    return net, domain, samples, resume, t_import


def run_compress(args) -> int:
    from exactcomp import api
    from exactcomp.cli.commands import _console, _print_json
    from exactcomp.io.onnx_export import to_onnx
    from exactcomp.cli.progress import progress_display
    from exactcomp.cli.signals import received
    from exactcomp.verify.compare import verify_models

    from exactcomp.analysis import check_device

    from exactcomp.verify.providers import check_provider

    outputs, witnesses_path = _plan_outputs(args)
    check_device(args.device)
    check_provider(args.provider)
    err = _console(stderr=True)
    net, box, samples, resume, t_import = _prepare(args)
    with progress_display(err, not args.quiet and err.is_terminal) as progress:
        result = api.compress(net, box, progress=progress, symbolic=not args.no_symbolic,
                              random_points=args.random_points, gradient_steps=args.gradient_steps,
                              seed=args.seed, samples=samples, strategy=args.strategy,
                              time_limit=args.time_limit, threads=args.threads, jobs=args.jobs, solver=args.solver,
                              formulation=args.formulation, solver_log=args.solver_log, provers=args.provers,
                              resume=resume, device=args.device, executor=args.executor, workers=args.workers,
                              **({"margin": args.margin} if args.margin is not None else {}))
    interrupted_by = received() if result.analysis.interrupted else None
    result.times["import"] = t_import
    t0 = time.perf_counter()
    model = to_onnx(result.compressed)
    result.times["export"] = time.perf_counter() - t0
    verification = None
    if not args.no_verify:
        t0 = time.perf_counter()
        extra = result.analysis.witnesses if samples is None else np.vstack([result.analysis.witnesses, samples])
        verification = verify_models(args.model, model, box, extra_points=extra, seed=args.seed,
                                     dtype=net.compute_dtype, provider=args.provider)
        result.times["verify"] = time.perf_counter() - t0
    ok = verification is None or verification.passed
    report = _write_outputs(args, outputs, result, model, verification, witnesses_path if ok else None, ok,
                            interrupted_by, box.describe())
    if args.json:
        _print_json(report)
        if report["partial"]:
            err.print(_partial_line(report))
    else:
        _print_summary(report, ok)
    if not ok:
        raise VerificationError(
            f"{args.output}: not written: compressed model differs from {args.model} "
            f"(max abs error {verification.max_abs_error:.3e}); this is a bug, please report it")
    return 128 + interrupted_by if interrupted_by else 0


def _write_outputs(args, outputs, result, model, verification, witnesses_path, ok, interrupted_by, domain_info) -> dict:
    """Stage and commit the outputs; returns the report (which describes them)."""
    from exactcomp.io.files import json_bytes, npy_bytes
    from exactcomp.cli.report import build_report
    from exactcomp.cli.signals import signal_name
    from exactcomp.io.witness_file import WITNESSES_KEY, sha256_bytes

    witness_bytes = None
    if witnesses_path is not None:
        witness_bytes = npy_bytes(result.analysis.witnesses.reshape(-1, *result.original.input.shape))
        entry = model.metadata_props.add()
        entry.key, entry.value = WITNESSES_KEY, sha256_bytes(witness_bytes)
    model_bytes = model.SerializeToString()
    report = build_report(result, model=args.model, domain=args.domain, domain_info=domain_info,
                          output=args.output if ok else None,
                          verification=verification, witnesses_file=witnesses_path,
                          witnesses_bytes=len(witness_bytes) if witness_bytes is not None else None,
                          interrupted_by=signal_name(interrupted_by) if interrupted_by else None,
                          resumed_from=args.resume)
    report_bytes = json_bytes(report)
    with outputs:
        if ok:
            outputs.stage(MODEL, lambda fh: fh.write(model_bytes))
            if witness_bytes is not None:
                outputs.stage(WITNESSES, lambda fh: fh.write(witness_bytes))
        if args.report is not None:
            outputs.stage(REPORT, lambda fh: fh.write(report_bytes))
        outputs.commit()
    return report


def _partial_line(report: dict) -> str:
    unknown = report["totals"]["unknown"]
    return (f"PARTIAL RESULT: the analysis was interrupted by {report['interrupted_by']}; {unknown} undecided "
            f"neuron{'s' if unknown != 1 else ''} kept (the result is sound{', verified' if report['verification'] else ''})")


def _print_summary(report: dict, ok: bool) -> None:
    from exactcomp.cli.commands import _console
    from exactcomp.cli.report import summary_lines, summary_table

    out = _console()
    if report["partial"]:
        out.print(_partial_line(report))
    out.print(summary_table(report))
    for line in summary_lines(report):
        out.print(line)
