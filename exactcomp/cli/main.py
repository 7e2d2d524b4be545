"""Command line: ``exactcomp compress | verify | inspect | solvers | bench | domain | stabilize``.

The parser, the validation of every option, and the process-level rules: exit codes
(:data:`EXIT_CODES`), Ctrl-C and SIGTERM handled alike (:mod:`exactcomp.cli.signals`), native solver
output kept off stdout (:mod:`exactcomp.solvers.quiet`), no traceback for anything a user can cause.
The commands themselves are in :mod:`exactcomp.cli.commands`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from exactcomp.cli.argtypes import (MAX_COUNT, count_type, executor_type, fraction_type, number_type, seed_type,
                                    time_limit_type, tolerance_type)

__all__ = ["EXIT_CODES", "MAX_COUNT", "entry", "main"]

EXIT_CODES = """\
exit status:
  0    success (compress: the compressed model was verified and written; verify: the models agree)
  1    verify: the models differ; compress: the compressed model failed verification (only the
       report is written)
  2    bad input: model, domain, samples, option or output path (one line naming it; nothing written)
  130  interrupted by Ctrl-C (SIGINT); 143: by SIGTERM. During the analysis the sound partial
       result is still verified and written (the summary's first line says PARTIAL RESULT);
       before or after it, nothing is written
  141  standard output was closed early (e.g. piped into head)
"""

class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``exactcomp compress: error: ...``) and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``exactcomp`` parser: one sub-parser per command."""
    p = _Parser(prog="exactcomp", description="Exact compression of ReLU networks over an input box.",
                epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"exactcomp {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_compress(sub)
    _add_verify(sub)
    i = sub.add_parser("inspect", help="show the imported layer graph",
                       description="Import a model and show its layers, input, head and outputs.")
    i.add_argument("model", type=Path, help="ONNX model to import")
    i.add_argument("--json", action="store_true", help="print the layer graph as JSON")
    _add_bench(sub)
    from exactcomp.cli import domain_cmd

    domain_cmd.add_parser(sub, EXIT_CODES, number_type)
    from exactcomp.cli import stabilize_cmd

    stabilize_cmd.add_parser(sub, EXIT_CODES, number_type, time_limit_type)
    s = sub.add_parser("solvers", help="list the solver back ends and whether they are usable here")
    s.add_argument("--json", action="store_true", help="print the list as JSON")
    return p


def _add_compress(sub) -> None:
    from exactcomp.cli.analysis_flags import add_analysis_flags

    c = sub.add_parser("compress", help="prove neuron stability and write an equivalent smaller model",
                       epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("model", type=Path, help="input ONNX model")
    c.add_argument("--domain", "-d", type=Path, required=True, action="append",
                   help="box JSON ({\"lower\": ..., \"upper\": ...}, or {\"parts\": [...]}) or VNN-LIB file (its input "
                        "bounds); repeat it for a union: the model must be exact on every box")
    c.add_argument("-o", "--output", type=Path, required=True, help="compressed ONNX model to write")
    c.add_argument("--report", type=Path, help="write the JSON report here")
    c.add_argument("--samples", type=Path, help=".npy of inputs to try as witnesses (points outside the box are ignored)")
    c.add_argument("--witnesses", type=Path,
                   help="where to store the witness inputs (default: OUTPUT with suffix .witnesses.npy); "
                        "'verify' reads them from there")
    c.add_argument("--no-witnesses", action="store_true", help="do not store the witness inputs")
    c.add_argument("--no-verify", action="store_true", help="skip the onnxruntime check of the output (not recommended)")
    c.add_argument("--complete", action="store_true",
                   help="decide every neuron the budget allows, also those whose decision cannot change the written "
                        "model (by default they are skipped and reported not_needed; the written model is the same)")
    c.add_argument("--min-gain", type=fraction_type, metavar="F",
                   help="stop proving once all the undecided neurons together could remove less than this fraction "
                        "of the parameters (default 0.005, also written 0.5%%; 0 tries everything the budget allows); "
                        "they stay unknown with reason low_gain and the summary bounds what was left")
    c.add_argument("--resume", type=Path, metavar="REPORT",
                   help="continue from an earlier --report of the same model, domain and margin (checked by "
                        "SHA-256): its proofs, bounds and witnesses are reused, only unknown neurons are worked on")
    c.add_argument("--provider", default="cpu", choices=["cpu", "cuda"],
                   help="where onnxruntime runs the verification: cpu (default) or cuda (needs onnxruntime-gpu and a GPU)")
    add_analysis_flags(c)     # --strategy, --time-limit, --solver, ... from exactcomp.options.AnalysisOptions
    c.add_argument("--json", action="store_true", help="print the JSON report on stdout instead of the table")
    c.add_argument("--quiet", "-q", action="store_true",
                   help="no progress display and no per-layer table: only the summary lines (with --json: only the "
                        "JSON report); errors are still printed")


def _add_verify(sub) -> None:
    from exactcomp.verify.compare import TOLERANCES

    tol = ", ".join(f"{k} {a:g}/{r:g}" for k, (a, r) in TOLERANCES.items())
    v = sub.add_parser("verify", help="compare a compressed model with its original on the domain (exit 1 on mismatch)",
                       description="Run both models with onnxruntime on random points, corners and witnesses of the "
                                   "domain and compare every output: |compressed - original| <= atol*max(1,max|orig|) "
                                   "+ rtol*|orig|.", epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("original", type=Path, help="the original ONNX model")
    v.add_argument("compressed", type=Path, help="the compressed ONNX model (or any model with the same inputs and outputs)")
    v.add_argument("--domain", "-d", type=Path, required=True, action="append",
                   help="box JSON or VNN-LIB file of the domain the models must agree on (repeat it for a union)")
    v.add_argument("--points", type=Path, action="append", default=[], metavar="NPY",
                   help=".npy of extra points (repeatable); COMPRESSED's stored witnesses (.witnesses.npy written "
                        "by compress for that very model) are added when present")
    v.add_argument("--random-points", type=count_type, default=1000, metavar="N",
                   help="uniform random points of the domain, evaluated in batches (default 1000)")
    v.add_argument("--rtol", type=tolerance_type, default=None,
                   help=f"relative tolerance, finite and >= 0 (default by compute type, atol/rtol: {tol})")
    v.add_argument("--atol", type=tolerance_type, default=None,
                   help="absolute tolerance, scaled by max(1, max|original|); finite and >= 0 (default by compute type)")
    v.add_argument("--seed", type=seed_type, default=0, help="random seed of the points, >= 0 (default 0)")
    v.add_argument("--provider", default="cpu", choices=["cpu", "cuda"],
                   help="where onnxruntime runs both models: cpu (default) or cuda (needs onnxruntime-gpu and a GPU)")
    v.add_argument("--json", action="store_true", help="print the result as JSON")


def _add_bench(sub) -> None:
    from exactcomp.options import DEFAULT_TIME_LIMIT, MAX_JOBS

    b = sub.add_parser("bench", help="run strategies x solvers x formulations on models; CSV/JSON and plots")
    b.add_argument("models", type=Path, nargs="+", help="ONNX models (box from --domain or MODEL.box.json)")
    b.add_argument("--domain", "-d", type=Path, help="one box file for every model")
    b.add_argument("--strategy", default="auto", help="comma-separated strategies (default auto)")
    b.add_argument("--solver", default="highs", help="comma-separated solvers (default highs)")
    b.add_argument("--formulation", default="bigm", help="comma-separated formulations (default bigm)")
    b.add_argument("--time-limit", type=time_limit_type, metavar="SECONDS", default=DEFAULT_TIME_LIMIT,
                   help=f"per run, for the proof phases (default {DEFAULT_TIME_LIMIT:g}; 'none': no limit)")
    b.add_argument("--jobs", type=number_type(int, 1, MAX_JOBS), metavar="N", help="per-neuron MILPs solved at once")
    b.add_argument("--executor", default="local", type=executor_type, metavar="WHERE",
                   help="where the grid cells run: local (default; a process pool with --workers > 1), ray or "
                        "ray://HOST:PORT")
    b.add_argument("--workers", type=number_type(int, 1, MAX_JOBS), default=1, metavar="N",
                   help="grid cells run at once with --executor local (default 1)")
    b.add_argument("--out", type=Path, default=Path("bench-results"), help="output folder (default bench-results)")
    b.add_argument("--no-plots", action="store_true", help="skip the matplotlib plots")


def _version() -> str:
    from exactcomp.version import __version__

    return __version__


def main(argv=None, *, process: bool = False) -> int:
    """Run one command; returns the exit status (see :data:`EXIT_CODES`).

    ``process=True`` (the console script) also claims the process's file descriptors: native solver
    output goes to /dev/null (or stderr with ``--solver-log``), never to stdout.
    """
    from exactcomp.errors import ExactcompError, VerificationError
    from exactcomp.cli.signals import STARTUP_LIBRARIES, command_libraries, handle_interrupts, import_quietly

    try:
        with handle_interrupts():
            import_quietly(*STARTUP_LIBRARIES)   # native libraries first, never interrupted half-way
            from exactcomp.cli.commands import COMMANDS

            args = build_parser().parse_args(argv)
            import_quietly(*command_libraries(args))
            if process:
                from exactcomp.solvers.quiet import redirect_native_stdout

                redirect_native_stdout(to_stderr=getattr(args, "solver_log", False))
            return COMMANDS[args.command](args)
    except VerificationError as exc:
        print(f"exactcomp: error: {exc}", file=sys.stderr)
        return 1
    except ExactcompError as exc:
        print(f"exactcomp: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _interrupted()
    except BrokenPipeError:
        return _stdout_closed()


def _interrupted() -> int:
    from exactcomp.cli.signals import received, signal_name

    signum = received() or 2
    print(f"exactcomp: interrupted by {signal_name(signum)}; nothing written", file=sys.stderr)
    return 128 + signum


def _stdout_closed() -> int:
    """stdout's reader went away (``| head``): stop writing to it, quietly, exit 141 (128 + SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
    return 141


def entry() -> None:
    """The ``exactcomp`` console script."""
    import signal

    from exactcomp.cli.signals import finished, interrupt_handler   # first thing: Ctrl-C and SIGTERM never print a traceback

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, interrupt_handler)
    code = None
    try:
        code = main(sys.argv[1:], process=True)
        sys.stdout.flush()
    except KeyboardInterrupt:   # before main's own handling starts, or once the command is over (code kept)
        finished()
        code = _interrupted() if code is None else code
    except BrokenPipeError:
        code = _stdout_closed()
    finished()   # the status is settled: an interrupt now changes neither it nor the teardown
    sys.exit(code)


if __name__ == "__main__":
    entry()
