"""The proof state the schedule owns, and the outcomes provers hand back to it.

A prover never changes the state's facts: it reads it (bounds, statuses, which neurons are open candidates,
the deadline) and yields :class:`Outcome` objects — decisions with their evidence, tightened bounds,
inputs worth trying as witnesses — which the schedule applies one by one (:meth:`ProofState.apply`),
so a prover sees its own earlier outcomes in the state and an interrupt keeps everything applied so
far. Rules of :meth:`ProofState.apply`: the first decision on a neuron wins; bounds only shrink
(``max`` of lowers, ``min`` of uppers); every point goes through the float64 witness tracker, and a
neuron that took both signs becomes unstable at the end (:meth:`ProofState.finish`). The one
exception: a prover may offer inputs straight to ``state.tracker`` (a witness is a float64 fact,
and searches such as gradient ascent offer thousands of small batches).

The state also carries the resources provers share: the solver back end and the formulation; and, when the
options give a payoff (:mod:`exactcomp.rewrite.payoff`), which undecided neurons can still change the written
model: the others are no candidates (:meth:`ProofState.candidates`) and end :attr:`Status.NOT_NEEDED`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from exactcomp.provers.budget import Budget
from exactcomp.results import OPEN_REASONS, Analysis, Reason, Side, Status, assemble
from exactcomp.witnesses.search import WitnessTracker


class OutOfTime(Exception):
    """The schedule's deadline has passed (raised by :meth:`ProofState.remaining`)."""


@dataclass(frozen=True)
class Candidate:
    """An open question: prove ``sign * g_{layer, neuron} <= -τ`` (``sign = +1``: the neuron never
    showed ``g > 0``, so it may be stably inactive; ``-1``: never ``g < 0``, maybe stably active)."""

    layer: int
    neuron: int
    sign: Side

    def __post_init__(self):
        object.__setattr__(self, "sign", Side(self.sign))   # ±1 given as a number is its Side


@dataclass(frozen=True)
class Decision:
    """``status`` (a :class:`Status`) of one neuron and how it was reached (``method``: the prover's
    name for proofs, or an unknown reason such as ``near_zero``); ``certificate`` is re-checked at the end."""

    layer: int
    neuron: int
    status: Status
    method: str                                       # a prover's name, or a Reason
    certificate: object = None


@dataclass
class Outcome:
    decisions: list = field(default_factory=list)
    bounds: list = field(default_factory=list)        # (layer, neurons, lower | None, upper | None)
    points: np.ndarray | None = None                  # inputs to try as witnesses (rows)
    stats: dict = field(default_factory=dict)         # counters added to the analysis statistics


@dataclass
class ProofState:
    """Everything known about the network over the box while the schedule runs (see module doc)."""

    net: object
    box: object
    options: object
    lower: list
    upper: list
    status: list
    method: list
    tracker: WitnessTracker
    deadline: float = float("inf")
    backend: object = None
    formulation: object = None
    certificates: dict = field(default_factory=dict)  # (layer, neuron) -> certificate of a proof
    stats: dict = field(default_factory=dict)
    times: dict = field(default_factory=dict)
    payoff: object = None                             # options.payoff (None: every neuron is worth deciding)
    _needed: object = None                            # cached needed masks, their key, when and at what cost made
    _needed_key: object = None
    _needed_at: float = 0.0
    _needed_cost: float = 0.0
    _version: int = 0                                 # changes with every applied outcome
    assessment: object = None                         # the payoff's last Assessment (what is left to gain)
    sizes: list = field(default_factory=list)         # (seconds, parameters written if stopped then), on change
    low_gain: bool = False                            # the open neurons could buy less than the payoff's min_gain
    schedule: list = field(default_factory=list)      # the provers that ran, in order (skipped ones are not)
    _started: float = field(default_factory=time.perf_counter)
    budget: Budget = field(default_factory=Budget)    # the proof budget's clock and the work done

    @classmethod
    def start(cls, net, box, options, deadline: float = float("inf"), backend=None, formulation=None) -> "ProofState":
        """Nothing known yet; with its resources: the solver ``backend`` and the ``formulation`` (objects)."""
        widths = [layer.width for layer in net.hidden]
        return cls(net, box, options, [np.full(w, -np.inf) for w in widths], [np.full(w, np.inf) for w in widths],
                   [np.full(w, Status.UNKNOWN, dtype=np.int8) for w in widths],
                   [np.full(w, Reason.NONE, dtype=object) for w in widths], WitnessTracker(net, box), deadline,
                   backend, formulation, payoff=getattr(options, "payoff", None),
                   budget=Budget(getattr(options, "work_limit", None)))

    # -- reading --------------------------------------------------------------------------------
    @property
    def margin(self) -> float:
        return self.options.margin

    def remaining(self) -> float | None:
        """Budget left before the deadline, in seconds or units of work (:attr:`budget`; None: no deadline);
        raises :class:`OutOfTime` when none."""
        if self.deadline == float("inf"):
            return None
        left = self.deadline - self.budget.now()
        if left <= 0:
            raise OutOfTime
        return left

    def undecided(self, k: int) -> np.ndarray:
        return (self.status[k] == Status.UNKNOWN) & (self.method[k] == Reason.NONE)

    def is_auxiliary(self, k: int) -> bool:
        """Layer ``k`` holds the comparison neurons of a max pooling (:mod:`exactcomp.ir.maxpool`): not
        neurons of the model, and not needed to compress it, so never a prover's candidates (bounds and
        witnesses still decide what they can, and their bounds are tightened for the layers after)."""
        return getattr(self.net.layers[k], "auxiliary", False)

    def candidates(self, k: int):
        """Inactive and active candidate masks of hidden layer ``k`` (0-based)."""
        if self.is_auxiliary(k):
            none = np.zeros(self.status[k].size, dtype=bool)
            return none, none
        open_ = self.undecided(k)
        needed = self.needed()
        if needed is not None:
            open_ = open_ & needed[k]
        return open_ & ~self.tracker.seen_positive(k), open_ & ~self.tracker.seen_negative(k)

    def needed(self, final: bool = False) -> list | None:
        """Per hidden layer, the undecided neurons worth proving (None without a payoff): those whose decision
        can still change the written model, none once all of them together can buy less than the payoff's
        ``min_gain`` (:class:`~exactcomp.rewrite.payoff.Payoff`). During the run the open neurons are those with
        no reason yet (or deferred), counted optimistically; ``final``: every undecided neuron. Recomputed when
        outcomes or witnesses arrived, at most once per :data:`PAYOFF_REFRESH` times its own cost (a stale
        answer only spends proofs that may not pay; under a work budget after every change, so that nothing depends
        on the clock)."""
        if self.payoff is None:
            return None
        key = (self._version, self.tracker.evaluated, final)
        now = time.perf_counter()
        if final or self._needed is None or (key != self._needed_key and (
                self.budget.by_work or now - self._needed_at >= PAYOFF_REFRESH * self._needed_cost)):
            self._assess(final)
            self._needed_key, self._needed_at, self._needed_cost = key, now, time.perf_counter() - now
        return self._needed

    def _assess(self, final: bool) -> None:
        open_, can_be_inactive = [], []
        for k in range(len(self.status)):
            unknown = self.status[k] == Status.UNKNOWN
            if not final:
                unknown &= np.isin(self.method[k], OPEN_REASONS)
            unknown &= ~self.tracker.unstable(k) & (not self.is_auxiliary(k))
            open_.append(unknown)
            can_be_inactive.append(~self.tracker.seen_positive(k))
        try:
            found = self.payoff(self.net, self.box, self.status, open_, can_be_inactive)
        except Exception:  # noqa: BLE001 - a guide to where proofs pay must never end a sound run: decide everything
            self.stats["payoff_errors"] = self.stats.get("payoff_errors", 0) + 1
            self.payoff, self._needed = None, None
            return
        if isinstance(found, list):               # a plain needed-masks function
            self._needed = found
            return
        self.assessment = found
        if not self.sizes or self.sizes[-1][1] != found.size_now:
            self.sizes.append((round(time.perf_counter() - self._started, 3), int(found.size_now)))
        threshold = getattr(self.payoff, "min_gain", 0.0) * self.net.parameter_count
        if not final and found.gain < threshold:
            self.low_gain = True
        skip = getattr(self.payoff, "skip_unneeded", True)
        self._needed = [np.zeros_like(m) for m in open_] if self.low_gain and not final else (
            found.needed if skip else open_)

    def worth(self, c: Candidate) -> float:
        """What proving ``c`` is worth, in parameters of the written model (its share of its group's payoff,
        :class:`~exactcomp.rewrite.payoff.Assessment`); 1 for every candidate without a payoff."""
        a = self.assessment
        if a is None or a.worth is None:
            return 1.0
        return max(float(a.worth[c.layer][c.neuron]), 1e-9)

    def open_candidates(self) -> list[Candidate]:
        """Every open question, layer by layer (earlier layers first: their proofs tighten later ones)."""
        out = []
        for k in range(len(self.status)):
            inactive, active = self.candidates(k)
            out += [Candidate(k, int(j), Side.INACTIVE) for j in np.flatnonzero(inactive)]
            out += [Candidate(k, int(j), Side.ACTIVE) for j in np.flatnonzero(active)]
        return out

    def candidate_count(self) -> int:
        return int(sum(a.sum() + b.sum() for a, b in map(self.candidates, range(len(self.status)))))

    def has_open_work(self) -> bool:
        """Whether any candidate is open or was deferred by a prover to a later one."""
        needed = self.needed() or [True] * len(self.status)
        return self.candidate_count() > 0 or any(
            ((s == Status.UNKNOWN) & (m == Reason.DEFERRED) & n).any() for s, m, n in zip(self.status, self.method, needed))

    def is_open(self, c: Candidate) -> bool:
        return bool(self.candidates(c.layer)[0 if c.sign > 0 else 1][c.neuron])

    def bounds(self, depth: int | None = None) -> list:
        depth = len(self.lower) if depth is None else depth
        return [(self.lower[i], self.upper[i]) for i in range(depth)]

    def stable_masks(self, depth: int):
        return ([self.status[i] == Status.INACTIVE for i in range(depth)],
                [self.status[i] == Status.ACTIVE for i in range(depth)])

    def trunk_model(self, depth: int):
        """The exact MILP model of hidden layers ``1..depth`` with the current bounds and proofs."""
        return self.formulation.build(self.net, self.box, self.bounds(depth), depth, *self.stable_masks(depth))

    # -- changing (the schedule only) -----------------------------------------------------------
    def apply(self, outcome: Outcome) -> None:
        self._version += 1
        for k, neurons, lo, hi in outcome.bounds:
            if lo is not None:
                self.lower[k][neurons] = np.maximum(self.lower[k][neurons], lo)
            if hi is not None:
                self.upper[k][neurons] = np.minimum(self.upper[k][neurons], hi)
        if outcome.points is not None and len(outcome.points):
            self.tracker.offer(self.box.clip(np.asarray(outcome.points, float).reshape(-1, self.box.size)))
        decided = False
        for d in outcome.decisions:
            if self.status[d.layer][d.neuron] != Status.UNKNOWN or self._contradicted(d):
                continue
            if d.status == Status.UNKNOWN and self.method[d.layer][d.neuron] not in OPEN_REASONS:
                continue
            self.status[d.layer][d.neuron] = d.status
            self.method[d.layer][d.neuron] = d.method
            decided |= d.status != Status.UNKNOWN
            if d.certificate is not None:
                self.certificates[(d.layer, d.neuron)] = (d.method, d.certificate)
        for key, value in outcome.stats.items():
            self.stats[key] = self.stats.get(key, 0) + value
        if decided and self.payoff is not None:
            self.needed()      # the size record follows the proofs (rate-limited like any refresh)

    def _contradicted(self, d: Decision) -> bool:
        """A proof that a float64 witness refutes is never applied (it would be a prover bug)."""
        seen = (self.tracker.seen_positive(d.layer) if d.status == Status.INACTIVE else
                self.tracker.seen_negative(d.layer) if d.status == Status.ACTIVE else None)
        if seen is not None and seen[d.neuron]:
            self.stats["refuted_proofs"] = self.stats.get("refuted_proofs", 0) + 1
            return True
        return False

    def mark_open(self, reason: Reason) -> None:
        """Give every still-undecided neuron (open or deferred) the unknown reason ``reason``."""
        for k in range(len(self.status)):
            unknown = (self.status[k] == Status.UNKNOWN) & np.isin(self.method[k], OPEN_REASONS)
            self.method[k][unknown] = Reason.COMPARISON if self.is_auxiliary(k) else reason

    def finish(self, interrupted: bool) -> Analysis:
        """The immutable :class:`Analysis` (:func:`exactcomp.results.assemble`): neurons seen with both signs
        are unstable (witnesses); undecided comparisons of a max pooling get ``comparison``; with a payoff,
        undecided neurons that cannot change the written model are not needed, and the open ones left by
        ``min_gain`` get ``low_gain``."""
        auxiliary = frozenset(k for k in range(len(self.net.hidden)) if self.is_auxiliary(k))
        t0 = time.perf_counter()
        needed = self.needed(final=True)
        not_needed = None
        if needed is not None:
            self.times["payoff"] = time.perf_counter() - t0
            if getattr(self.payoff, "skip_unneeded", True):
                not_needed = [~n for n in needed]
            for k in range(len(self.status)) if self.low_gain else ():
                left = (self.status[k] == Status.UNKNOWN) & np.isin(self.method[k], OPEN_REASONS) & needed[k]
                self.method[k][left] = Reason.LOW_GAIN
        anytime = {}
        if self.assessment is not None:
            anytime = {"sizes": tuple(self.sizes), "gain_left": int(self.assessment.gain)}
        return assemble(self.net, self.box, self.status, self.method, self.lower, self.upper, self.tracker,
                        self.times, interrupted, {**self.stats, **self.budget.stats()}, auxiliary, not_needed, schedule=tuple(self.schedule),
                        **anytime)


#: A payoff refresh waits at least this many times its last cost (bounds its share of the run to ~1/(1+this)).
PAYOFF_REFRESH = 9.0
