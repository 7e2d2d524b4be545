"""The knobs of an analysis (:class:`AnalysisOptions`), their defaults, their command-line form (flag, help,
kind of value: the CLI's parser is generated from the fields) and their validation (:func:`check_options`,
:func:`check_device`): one-line :class:`~exactcomp.errors.ExactcompError` naming the option, as the CLI
validates them."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from exactcomp.domain import check_random_points
from exactcomp.errors import ExactcompError


#: Safety margin τ of every LP/MILP proof: stably inactive means ``max g <= -τ`` was shown (stably
#: active: ``min g >= τ``), far above HiGHS's feasibility (1e-6, 1e-7) and optimality tolerances, so
#: a solver's rounding cannot produce a wrong "stable". Neurons with an extreme in (-τ, τ) are kept.
DEFAULT_MARGIN = 1e-4

#: Default time budget (seconds) of the proof phases, so that a default run always ends with a
#: sound result; ``time_limit=None`` (``--time-limit none``) runs to completion.
DEFAULT_TIME_LIMIT = 300.0

#: Per-neuron MILPs solved at once by default: one per CPU core, at most 4 (each HiGHS MIP is serial).
DEFAULT_JOBS = max(1, min(4, os.cpu_count() or 1))

#: Largest values the command line accepts (larger ones are almost surely typos).
MAX_JOBS, MAX_THREADS, MAX_MARGIN, MAX_WORK = 256, 1024, 1.0, 10 ** 12


def _cli(default, flag: str, help: str, kind=None, **argparse_options):
    """A field with its command-line form (``exactcomp compress``'s parser is generated from these, see
    :func:`exactcomp.cli.analysis_flags.add_analysis_flags`): the ``flag``, its ``help``, the ``kind`` of value
    (a name the CLI turns into its argparse type or choices, or ``("int", low, high)``) and argparse extras."""
    return field(default=default, metadata={"flag": flag, "help": help, "kind": kind, **argparse_options})


@dataclass
class AnalysisOptions:
    """Knobs of :func:`analyze`; the defaults suit networks of a few thousand neurons.

    ``time_limit`` (seconds for the proof phases, everything after bounds and witness search; default
    :data:`DEFAULT_TIME_LIMIT`; None: no limit, run to completion): what is not decided in time
    stays unknown and is kept. ``work_limit`` (units of work, :mod:`exactcomp.provers.budget`): a deterministic
    budget in place of ``time_limit`` (which it overrides), for strategies ``auto``, ``network`` and ``bounds`` with
    a local executor of one worker and a solver with node limits (HiGHS). ``threads``: solver threads (HiGHS fixes this at its first solve in
    a process). ``jobs``: per-neuron MILPs solved concurrently (default :data:`DEFAULT_JOBS`).
    ``formulation``: a registry name of :mod:`exactcomp.formulations` or a formulation object.
    ``solver``: a registry name of :mod:`exactcomp.solvers` (``"name:inner"`` too) or a back end object.
    ``solver_log``: let the solver print its own log (native output; the CLI sends it to stderr).
    ``provers``: a schedule (names of :data:`exactcomp.provers.PROVERS` or prover objects) replacing
    the strategy's own (:data:`exactcomp.provers.SCHEDULES`). ``resume``: an earlier run's results
    (:func:`exactcomp.io.resume.load_resume`) to start from. ``device``: where branch and bound runs its
    batched bounds (torch): ``cpu`` (default, float64) or ``cuda`` / ``cuda:N`` (float64 on the GPU,
    larger batches); proofs are re-checked in float64 on the CPU either way. ``executor`` (``local``,
    ``ray``, ``ray://HOST:PORT`` or an executor object, :mod:`exactcomp.executors`) and ``workers``: with more
    than one worker, or Ray, the portfolio's candidates run as work units there (prover ``distributed``).
    ``payoff``: None (default: decide every neuron the budget allows, as a research analysis wants), or a
    callable ``(net, box, statuses, open_masks, can_be_inactive)`` returning the needed masks or an
    :class:`~exactcomp.rewrite.payoff.Assessment`: which undecided neurons' decisions can still change the
    written model. :class:`exactcomp.rewrite.payoff.Payoff` is what ``exactcomp.compress`` passes: provers skip
    the others, and the analysis ends, with those neurons :attr:`~exactcomp.results.Status.NOT_NEEDED`, once
    nothing that pays is left, or once all that is left could remove less than its ``min_gain`` (reason
    ``low_gain``); it also records the size over time (``Analysis.sizes``).
    """

    symbolic: bool = _cli(True, "--no-symbolic", "use interval bounds only", action="store_false")
    random_points: int = _cli(2048, "--random-points", "random points for the witness search, evaluated in batches "
                              "(default 2048)", kind="count", metavar="N")
    gradient_steps: int = _cli(40, "--gradient-steps", "steps per gradient restart of the witness search, 0 to 1e6 "
                               "(default 40)", kind=("int", 0, 10 ** 6), metavar="N")
    gradient_restarts: int = 2
    seed: int = _cli(0, "--seed", "random seed, >= 0 (default 0)", kind="seed")
    samples: np.ndarray | None = None
    strategy: str = _cli("auto", "--strategy", "auto (default): bounds, witnesses, LP tightening, one feasibility "
                         "MILP per remaining neuron; network: the single network-wide MILP (NeurIPS 2021); per-neuron: "
                         "the slow CPAIOR 2020 baseline, two MILPs per neuron (minutes to hours even on small models); "
                         "bounds: bounds and witnesses only", kind="strategy")
    solver: object = _cli("highs", "--solver", "MILP/LP back end: highs (default), scip, ortools[:scip|highs|cp_sat], "
                          "pyomo[:SOLVER]; see 'exactcomp solvers'", metavar="NAME")
    time_limit: float | None = _cli(DEFAULT_TIME_LIMIT, "--time-limit", "budget of the proof phases (after bounds and "
                                    "witness search) for the whole run, shared by the boxes of a union, default "
                                    f"{DEFAULT_TIME_LIMIT:g}; 'none' runs to completion; neurons not decided in time "
                                    "are unknown and kept", kind="time_limit", metavar="SECONDS")
    work_limit: int | None = _cli(None, "--work-limit", "a deterministic budget of the proof phases instead of "
                                  "--time-limit: units of work (branch-and-bound subdomains, MILP nodes, LPs, each "
                                  "weighted; about 100 per second on a laptop core), the same written model on any "
                                  "machine and load; neurons not reached are unknown (work_limit)", kind=("int", 1, MAX_WORK),
                                  metavar="UNITS")
    threads: int | None = _cli(None, "--threads", f"solver threads, 1 to {MAX_THREADS} (default: the solver's "
                               "choice)", kind=("int", 1, MAX_THREADS), metavar="N")
    jobs: int | None = _cli(None, "--jobs", f"per-neuron MILPs solved at once, 1 to {MAX_JOBS} (default: CPU "
                            "cores, at most 4)", kind=("int", 1, MAX_JOBS), metavar="N")
    formulation: object = _cli("bigm", "--formulation", "MILP formulation: bigm (default) or bigm-ideal (big-M plus "
                               "Anderson et al. 2020 ideal cuts separated at the root of each per-neuron MILP)",
                               kind="formulation")
    margin: float = _cli(DEFAULT_MARGIN, "--margin", "safety margin τ of LP/MILP proofs, in (0, 1]: stable means "
                         f"|g| >= τ proven (default {DEFAULT_MARGIN:g})", kind=("open_float", 0.0, MAX_MARGIN),
                         metavar="TAU")
    lp_tightening: bool = True
    solver_log: bool = _cli(False, "--solver-log", "show the solvers' own logs (on stderr)", action="store_true")
    provers: tuple | None = _cli(None, "--provers", "comma-separated schedule of provers replacing the strategy's, "
                                 "e.g. bounds,witnesses,lp,bab,milp (see the README)", kind="provers", metavar="LIST")
    resume: object = None
    device: str = _cli("cpu", "--device", "where branch and bound runs: cpu (default) or cuda / cuda:N (needs torch "
                       "with CUDA and a GPU; proofs are re-checked in float64 on the CPU either way)", metavar="DEVICE")
    executor: object = _cli("local", "--executor", "where the per-neuron proofs run: local (default: this process, or "
                            "a process pool with --workers > 1), ray (a local Ray instance) or ray://HOST:PORT (a Ray "
                            "cluster; needs pip install 'exactcomp[ray]')", kind="executor", metavar="WHERE")
    workers: int = _cli(1, "--workers", f"proof work units run at once with --executor local, 1 to {MAX_JOBS} "
                        "(default 1); Ray uses the cluster's CPUs", kind=("int", 1, MAX_JOBS), metavar="N")
    payoff: object = None


def check_options(options: AnalysisOptions) -> None:
    """The numeric options as the CLI validates them: integers >= their minimum, finite margin in
    (0, 1], positive finite time limit; anything else is an ExactcompError naming the option."""
    for name, minimum, optional in (("random_points", 0, False), ("gradient_steps", 0, False),
                                    ("gradient_restarts", 0, False), ("seed", 0, False),
                                    ("jobs", 1, True), ("threads", 1, True), ("workers", 1, False)):
        value = getattr(options, name)
        if value is None and optional:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ExactcompError(f"{name} must be an integer >= {minimum}, got {value!r}")
    check_random_points(options.random_points)   # at most MAX_RANDOM_POINTS
    margin = options.margin
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 < margin <= 1:
        raise ExactcompError(f"margin must be a number in (0, 1], got {margin!r}")
    samples = options.samples
    if samples is not None and (not isinstance(samples, np.ndarray) or samples.dtype.kind not in "iuf"
                                or not np.isfinite(samples).all()):
        raise ExactcompError("samples must be a finite real numeric array (see exactcomp.samples to load a .npy)")
    limit = options.time_limit
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float))
                              or not 0 < limit < float("inf")):
        raise ExactcompError(f"time_limit must be a positive finite number of seconds or None, got {limit!r}")
    _check_work_limit(options)
    check_device(options.device)
    if options.payoff is not None and not callable(options.payoff):
        raise ExactcompError(f"payoff must be None or callable (exactcomp.rewrite.payoff.Payoff()), got "
                             f"{type(options.payoff).__name__}")
    executor = options.executor
    if isinstance(executor, str) and not (executor in ("local", "ray") or executor.startswith("ray://")):
        raise ExactcompError(f"executor must be 'local', 'ray' or 'ray://HOST:PORT', got {executor!r}")


def check_device(device) -> None:
    """``cpu``, or ``cuda``/``cuda:N`` with torch built for CUDA and that GPU present; else an
    ExactcompError with one line saying what is missing."""
    if device == "cpu":
        return
    if not isinstance(device, str) or not re.fullmatch(r"cuda(:\d+)?", device):
        raise ExactcompError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    try:
        import torch
    except ImportError:
        raise ExactcompError(f"device {device} needs torch (pip install 'exactcomp[torch]')") from None
    if not torch.cuda.is_available():
        raise ExactcompError(f"device {device}: no CUDA GPU is available to torch {torch.__version__} "
                             "(a CPU-only build, or no GPU on this machine); use --device cpu")
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise ExactcompError(f"device {device}: only {torch.cuda.device_count()} CUDA device(s) present")


def _check_work_limit(options: AnalysisOptions) -> None:
    """A work limit is a positive integer, and only where nothing runs in parallel races (module
    :mod:`exactcomp.provers.budget`)."""
    limit = options.work_limit
    if limit is None:
        return
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or not 1 <= limit <= MAX_WORK:
        raise ExactcompError(f"work_limit must be an integer in 1..{MAX_WORK} or None, got {limit!r}")
    if options.strategy == "per-neuron":
        raise ExactcompError("work_limit: the per-neuron baseline has only a time limit; use the strategy auto, "
                             "network or bounds")
    if options.executor != "local" or options.workers > 1:
        raise ExactcompError("work_limit: parallel workers finish in an order the clock decides; use one local worker")
