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

from exactcomp.errors import DomainError, VerificationError


def _plan_outputs(args):
    from exactcomp.io.onnx_meta import external_data_files
    from exactcomp.io.witness_file import stored_witnesses_path
    from exactcomp.pipeline import plan_outputs

    witnesses = None if args.no_witnesses else (args.witnesses or stored_witnesses_path(args.output))
    inputs = {"input model": args.model, "samples file": args.samples, "earlier report (--resume)": args.resume}
    for i, path in enumerate(args.domain):
        inputs["domain file" if len(args.domain) == 1 else f"domain file #{i + 1}"] = path
    for i, path in enumerate(external_data_files(args.model)):
        inputs[f"external data file #{i + 1} of the model,"] = path
    return plan_outputs(args.output, witnesses, args.report, inputs), witnesses


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
        from exactcomp.options import DEFAULT_MARGIN
        from exactcomp.io.resume import load_resume

        if len(domain.parts) > 1:
            raise DomainError(f"--resume works with a single box; the domain has {len(domain.parts)}")
        resume = load_resume(args.resume, net, domain.parts[0], args.model,
                             args.margin if args.margin is not None else DEFAULT_MARGIN)
    return net, domain, samples, resume, t_import


def run_compress(args) -> int:
    from exactcomp import api, pipeline
    from exactcomp.cli.analysis_flags import analysis_kwargs
    from exactcomp.options import check_device
    from exactcomp.cli.console import console as _console, print_json as _print_json
    from exactcomp.cli.progress import progress_display
    from exactcomp.cli.signals import deferred, received, signal_name
    from exactcomp.verify.providers import check_provider

    outputs, witnesses_path = _plan_outputs(args)
    check_device(args.device)
    check_provider(args.provider)
    err = _console(stderr=True)
    net, box, samples, resume, t_import = _prepare(args)
    with progress_display(err, not args.quiet and err.is_terminal) as progress:
        result = api.compress(net, box, progress=progress, samples=samples, resume=resume, complete=args.complete,
                              min_gain=args.min_gain, **analysis_kwargs(args))
    interrupted_by = received() if result.analysis.interrupted else None
    result.times["import"] = t_import
    written = pipeline.finish(
        result, outputs, model_path=args.output, witnesses_path=witnesses_path, report_path=args.report,
        verify_model=not args.no_verify, original=args.model, samples=samples, seed=args.seed, provider=args.provider,
        report_fields={"model": args.model, "domain": args.domain, "domain_info": box.describe(),
                       "interrupted_by": signal_name(interrupted_by) if interrupted_by else None,
                       "resumed_from": args.resume})
    report, verification = written.report, written.verification
    ok = verification is None or verification.passed
    with deferred():   # the outputs are in place: an interrupt now must not cut the summary that says so
        if args.json:
            _print_json(report)
            if report["partial"] and not args.quiet:
                err.print(_partial_line(report))
        else:
            _print_summary(report, ok, table=not args.quiet)
    if not ok:
        raise VerificationError(
            f"{args.output}: not written: compressed model differs from {args.model} "
            f"(max abs error {verification.max_abs_error:.3e}); this is a bug, please report it")
    return 128 + interrupted_by if interrupted_by else 0


def _partial_line(report: dict) -> str:
    unknown = report["totals"]["unknown"]
    return (f"PARTIAL RESULT: the analysis was interrupted by {report['interrupted_by']}; {unknown} undecided "
            f"neuron{'s' if unknown != 1 else ''} kept (the result is sound{', verified' if report['verification'] else ''})")


def _print_summary(report: dict, ok: bool, table: bool = True) -> None:
    """The per-layer table (unless ``--quiet``) and the summary lines."""
    from exactcomp.cli.console import console as _console
    from exactcomp.cli.report import summary_lines, summary_table

    out = _console()
    if report["partial"]:
        out.print(_partial_line(report))
    if table:
        out.print(summary_table(report))
    for line in summary_lines(report):
        out.print(line)
