"""Stability analysis: every hidden neuron ends stably active, stably inactive, unstable or unknown.

* stably inactive: a proof that ``g <= 0`` on the whole box (``upper <= 0``), so ``relu(g) = 0``;
* stably active: a proof that ``g >= 0`` on the box (``lower >= 0``), so ``relu(g) = g``;
* unstable: two witness inputs inside the box with ``g > 0`` and ``g < 0`` (float64 forward pass);
* unknown: neither (for example, a time limit or an interrupt); unknown neurons are kept.

``method`` records how each neuron was decided: ``interval`` or ``symbolic`` bounds, ``lp``
(LP bound tightening), ``milp`` (a MILP proof), ``witness``; for unknown neurons it says why:
``near_zero`` (its extreme lies within the margin τ of zero), ``time_limit``, ``interrupted``,
``solver_error``, or empty (not attempted: strategy ``bounds``). A neuron whose bounds are exactly
``[0, 0]`` is reported inactive.

The strategies (:data:`STRATEGIES`, chosen with ``AnalysisOptions.strategy``):

* ``bounds``: bounds and witness search only (fast, may leave unknowns);
* ``auto`` (default): bounds, witnesses, LP bound tightening, then the portfolio of branch and
  bound and per-neuron MILPs for the last candidates;
* ``network``: bounds, witnesses, LP tightening, the single network-wide MILP (NeurIPS 2021);
* ``per-neuron``: the CPAIOR 2020 baseline, two MILPs per neuron (:mod:`exactcomp.provers.per_neuron`).

The first three are schedules of *provers* (:mod:`exactcomp.provers`); ``AnalysisOptions.provers``
replaces a strategy's schedule with any list of registered (or your own) provers.
"""

from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING
from importlib import import_module

import numpy as np

from exactcomp.bounds.crown import LayerBounds
from exactcomp.domain import Box, check_random_points
from exactcomp.ir.network import Network
from exactcomp.witnesses.search import WitnessTracker

if TYPE_CHECKING:
    from exactcomp.validity import Validity


class Status(enum.IntEnum):
    UNKNOWN = 0
    ACTIVE = 1
    INACTIVE = 2
    UNSTABLE = 3

    @property
    def label(self) -> str:
        return {0: "unknown", 1: "stably_active", 2: "stably_inactive", 3: "unstable"}[int(self)]


@dataclass(frozen=True, eq=False)
class LayerAnalysis:
    """Per-neuron results for one hidden layer, arrays in the analysed layer's order (for an imported network
    that is the original neuron index; :meth:`Analysis.status_of` maps original ids in general).

    ``witness_pos/neg`` index rows of :attr:`Analysis.witnesses` (``-1`` when none).
    """

    layer_id: int
    status: np.ndarray
    method: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    witness_pos: np.ndarray
    witness_neg: np.ndarray

    def count(self, status: Status) -> int:
        """Neurons of this layer with ``status``, e.g. ``layer.count(Status.INACTIVE)``."""
        return int(np.sum(self.status == status))

    @property
    def counts(self) -> dict[str, int]:
        """``{"unknown": .., "stably_active": .., "stably_inactive": .., "unstable": ..}`` for this layer."""
        return {s.label: self.count(s) for s in Status}

    @property
    def neurons(self) -> int:
        return self.status.size

    def methods(self) -> dict[str, int]:
        """How the decided neurons were decided: ``{method: count}``."""
        return _tally(self.method[(self.status != Status.UNKNOWN) & (self.method != "")])

    def unknown_reasons(self) -> dict[str, int]:
        """Why the unknown neurons are unknown: ``{reason: count}`` (``not_attempted`` if no reason)."""
        reasons = self.method[self.status == Status.UNKNOWN]
        return _tally(np.where(reasons == "", "not_attempted", reasons))


def _tally(values: np.ndarray) -> dict[str, int]:
    names, counts = np.unique(values.astype(str), return_counts=True)
    return {str(n): int(c) for n, c in zip(names, counts)}


@dataclass(frozen=True, eq=False)
class Analysis:
    """The stability of every hidden neuron of ``network`` over ``box``, with witness points."""

    network: Network
    box: Box
    layers: tuple[LayerAnalysis, ...]
    witnesses: np.ndarray
    times: dict = field(default_factory=dict)
    interrupted: bool = False
    stats: dict = field(default_factory=dict)
    options: "AnalysisOptions | None" = None
    valid_for: "Validity | None" = None   # network hash, boxes, margin (exactcomp.validity); set by analyze

    def totals(self) -> dict[str, int]:
        return {s.label: sum(layer.count(s) for layer in self.layers) for s in Status}

    @property
    def proof_seconds(self) -> float:
        """Seconds spent in the proof phases, the part that ``time_limit`` bounds (every phase but the
        screening ones: resume, bounds, witnesses, and the final certificate re-check)."""
        return float(sum(v for k, v in self.times.items() if k not in UNTIMED_PHASES))

    def layer(self, layer_id: int) -> LayerAnalysis:
        """The results of hidden layer ``layer_id`` (ids need not be consecutive: rewriting removes layers)."""
        for la in self.layers:
            if la.layer_id == layer_id:
                return la
        raise KeyError(f"no hidden layer {layer_id} in this analysis")

    def status_of(self, layer_id: int, neuron_ids) -> np.ndarray:
        """Statuses of the neurons with original ids ``neuron_ids`` of layer ``layer_id``. The result arrays
        follow the analysed network's positions, which are the original ids only for an imported network:
        a network that was already compressed keeps original ids on fewer positions."""
        la = self.layer(layer_id)
        ids = next(np.asarray(x.neuron_ids) for x in self.network.hidden if x.layer_id == layer_id)
        lookup = np.full(int(max(ids.max(initial=-1), np.max(neuron_ids, initial=-1))) + 1, -1, dtype=np.int64)
        lookup[ids] = np.arange(ids.size)
        where = lookup[np.asarray(neuron_ids, dtype=np.int64)]
        if np.any(where < 0):
            raise KeyError(f"layer {layer_id}: neurons {np.asarray(neuron_ids)[where < 0][:5].tolist()} were not analysed")
        return la.status[where]


#: Phases outside the time budget (see :attr:`Analysis.proof_seconds`).
UNTIMED_PHASES = frozenset({"import", "resume", "bounds", "witnesses", "recheck"})

#: Safety margin τ of every LP/MILP proof: stably inactive means ``max g <= -τ`` was shown (stably
#: active: ``min g >= τ``), far above HiGHS's feasibility (1e-6, 1e-7) and optimality tolerances, so
#: a solver's rounding cannot produce a wrong "stable". Neurons with an extreme in (-τ, τ) are kept.
DEFAULT_MARGIN = 1e-4

#: Default time budget (seconds) of the proof phases, so that a default run always ends with a
#: sound result; ``time_limit=None`` (``--time-limit none``) runs to completion.
DEFAULT_TIME_LIMIT = 300.0

#: Per-neuron MILPs solved at once by default: one per CPU core, at most 4 (each HiGHS MIP is serial).
DEFAULT_JOBS = max(1, min(4, os.cpu_count() or 1))


@dataclass
class AnalysisOptions:
    """Knobs of :func:`analyze`; the defaults suit networks of a few thousand neurons.

    ``time_limit`` (seconds for the proof phases, everything after bounds and witness search; default
    :data:`DEFAULT_TIME_LIMIT`; None: no limit, run to completion): what is not decided in time
    stays unknown and is kept. ``threads``: solver threads (HiGHS fixes this at its first solve in
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
    """

    symbolic: bool = True
    random_points: int = 2048
    gradient_steps: int = 40
    gradient_restarts: int = 2
    seed: int = 0
    samples: np.ndarray | None = None
    strategy: str = "auto"
    solver: object = "highs"
    time_limit: float | None = DEFAULT_TIME_LIMIT
    threads: int | None = None
    jobs: int | None = None
    formulation: object = "bigm"
    margin: float = DEFAULT_MARGIN
    lp_tightening: bool = True
    solver_log: bool = False
    provers: tuple | None = None
    resume: object = None
    device: str = "cpu"
    executor: object = "local"
    workers: int = 1


@dataclass
class Screening:
    """Bounds, their decisions and the witness tracker after the cheap phases."""

    bounds: list
    decided: list
    tracker: WitnessTracker
    times: dict
    interrupted: bool = False

    def finish(self, net: Network, box: Box, extra_times: dict | None = None) -> "Analysis":
        layers, pool = collect(net, self.bounds, self.decided, self.tracker)
        return Analysis(net, box, tuple(layers), pool, {**self.times, **(extra_times or {})}, self.interrupted)


def decide_by_bounds(bounds: LayerBounds):
    """Initial ``(status, method)`` arrays of a layer from its bounds (undecided neurons: UNKNOWN, "")."""
    status = np.full(bounds.lower.size, Status.UNKNOWN, dtype=np.int8)
    method = np.full(bounds.lower.size, "", dtype=object)
    inactive, active = bounds.upper <= 0, (bounds.lower >= 0) & ~(bounds.upper <= 0)
    status[inactive], status[active] = Status.INACTIVE, Status.ACTIVE
    by_interval = (bounds.interval_upper <= 0) | (bounds.interval_lower >= 0)
    method[(inactive | active) & by_interval] = "interval"
    method[(inactive | active) & ~by_interval] = "symbolic"
    return status, method


#: strategy name -> "module:function(net, box, options, progress) -> Analysis", imported lazily.
STRATEGIES: dict[str, str] = {
    "bounds": "exactcomp.provers.schedule:analyze_with_schedule",
    "network": "exactcomp.provers.schedule:analyze_with_schedule",
    "auto": "exactcomp.provers.schedule:analyze_with_schedule",
    "per-neuron": "exactcomp.provers.per_neuron:per_neuron_strategy",
}


def analyze(net: Network, box: Box, options: AnalysisOptions | None = None, progress=None) -> Analysis:
    """Classify every hidden neuron with the strategy ``options.strategy`` (see :data:`STRATEGIES`).

    ``progress``, when given, is an object with ``phase(name, total)`` returning a callable
    ``advance(done, total, note="")``; the CLI passes a rich display. Ctrl-C stops the current
    phase and returns the sound partial result (undecided neurons unknown, ``interrupted`` set).
    A network with an input selection is analysed as :meth:`Network.with_full_input`.
    """
    from exactcomp.formulations import get_formulation

    from exactcomp.errors import ExactcompError

    options = options or AnalysisOptions()
    if options.strategy not in STRATEGIES:
        raise ExactcompError(f"unknown strategy '{options.strategy}'; available: {', '.join(STRATEGIES)}")
    _check_numbers(options)
    if options.strategy == "per-neuron" and (options.provers or options.resume is not None):
        raise ExactcompError("the per-neuron baseline runs no provers: --provers and --resume need the strategy "
                             "auto, network or bounds")
    get_formulation(options.formulation)   # unknown names fail here, before any work
    module, function = STRATEGIES[options.strategy].split(":")
    from exactcomp.validity import Validity

    net = net.with_full_input()  # bounds, witnesses and MILPs read the whole input box
    result = getattr(import_module(module), function)(net, box, options, progress)
    return replace(result, options=options, valid_for=Validity.of(net, (box,), options.margin))


def _check_numbers(options: AnalysisOptions) -> None:
    """The numeric options as the CLI validates them: integers >= their minimum, finite margin in
    (0, 1], positive finite time limit; anything else is an ExactcompError naming the option."""
    from exactcomp.errors import ExactcompError

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
    check_device(options.device)
    executor = options.executor
    if isinstance(executor, str) and not (executor in ("local", "ray") or executor.startswith("ray://")):
        raise ExactcompError(f"executor must be 'local', 'ray' or 'ray://HOST:PORT', got {executor!r}")


def check_device(device) -> None:
    """``cpu``, or ``cuda``/``cuda:N`` with torch built for CUDA and that GPU present; else an
    ExactcompError with one line saying what is missing."""
    from exactcomp.errors import ExactcompError

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


def collect(net, bounds, decided, tracker: WitnessTracker):
    """Final per-layer results: undecided neurons the tracker saw take both signs become unstable,
    and the witness points they cite are gathered into one array."""
    pool = tracker.pool()
    used: dict[int, int] = {}
    layers = []
    for k, ((status, method), b) in enumerate(zip(decided, bounds)):
        status, method = status.copy(), method.copy()
        unstable = (status == Status.UNKNOWN) & tracker.unstable(k)
        status[unstable] = Status.UNSTABLE
        method[unstable] = "witness"
        pos = np.where(unstable, tracker.max_point[k], -1)
        neg = np.where(unstable, tracker.min_point[k], -1)
        for arr in (pos, neg):
            for i in np.flatnonzero(arr >= 0):
                arr[i] = used.setdefault(int(arr[i]), len(used))
        layers.append(LayerAnalysis(net.hidden[k].layer_id, status, method, b.lower, b.upper, pos, neg))
    order = sorted(used, key=used.get)
    witnesses = pool[order] if order else np.empty((0, net.input_size))
    return layers, witnesses
