"""Complete stability analysis: LP bound tightening and the network-wide MILP (NeurIPS 2021).

After the screening (bounds and witness search, :func:`exactcomp.analysis.screen`), every neuron
not decided by bounds that still lacks a witness of one sign is a *candidate*: an *inactive
candidate* (never seen ``g > 0``) must be proven ``g <= -τ`` on the box, an *active candidate*
(never seen ``g < 0``) ``g >= τ``. Three phases decide them:

1. **LP bound tightening**, layer by layer: over the LP relaxation of the big-M model of the layers
   before (triangle relaxation, the tightest bounds known), ``max g`` / ``min g`` for candidates (and
   for the unstable neurons of layers feeding later candidates, to shrink their big-Ms). An LP optimum
   ``<= -τ`` (``>= τ``) proves the candidate (method ``lp``); otherwise the bound, widened by τ,
   replaces the old one. Every LP solution's input is offered as a witness. One HiGHS instance per
   layer, re-solved with a new objective, so each LP warm-starts from the last basis.
2. **The network-wide MILP**: one big-M model of the layers up to the deepest candidate, with the
   margin-relaxed rows of :mod:`exactcomp.formulations.bigm` for candidates, maximising
   ``Σ p + Σ q`` (``p = z`` for inactive, ``q = 1 - z`` for active candidates). Every incumbent's
   input is clipped to the box and run through the network in float64; the solve stops at the first
   incumbent that flips a candidate (``stop_at = 0.5``) and the witnessed candidates leave the
   objective before the next round (warm-started from a witness). When the solver's dual bound is
   below 0.5, every candidate left in the objective is proven (method ``milp``). A candidate flipped
   by an incumbent whose float64 forward pass does not confirm it (within τ of zero, or solver
   tolerance) leaves the objective and goes to phase 3.
3. **Per-neuron MILPs** for the last candidates: is ``±g >= -τ`` feasible over the exact big-M
   model? Infeasible proves the neuron (method ``milp``); a feasible point is float64-checked as a
   witness, and if it is none, ``±g >= τ`` infeasible means the extreme lies within τ of zero
   (kept as ``near_zero``). The candidates of one layer are checked concurrently
   (``AnalysisOptions.jobs`` threads, one HiGHS instance each).

Time limit (``AnalysisOptions.time_limit``) and Ctrl-C leave the remaining candidates unknown.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace

import numpy as np

from exactcomp.formulations import get_formulation
from exactcomp.solvers import SolveStatus, get_solver

from .analysis import DEFAULT_JOBS, Analysis, AnalysisOptions, Status, screen
from .domain import Box
from .network import Network

#: With at most this many candidates after LP tightening, ``auto`` uses per-neuron feasibility MILPs
#: instead of the network-wide model. Measured on the benchmark networks: the candidates left after
#: the witness search are nearly all stable, and proving "no candidate flips" in one model took far
#: longer than proving each neuron alone (MNIST 2x100: > 200 s for 3 candidates jointly, 35 s one by
#: one), so ``auto`` always goes per neuron; ``network`` runs the paper's method.
AUTO_PER_NEURON_MAX = 10**9


class _OutOfTime(Exception):
    pass


@dataclass
class _State:
    """Mutable working state of a complete analysis (copied into an immutable Analysis at the end)."""

    net: Network
    box: Box
    options: AnalysisOptions
    backend: object
    lower: list
    upper: list
    status: list
    method: list
    tracker: object
    deadline: float
    formulation: object = None
    times: dict = field(default_factory=dict)
    stats: dict = field(default_factory=lambda: {"lp_solves": 0, "milp_rounds": 0, "per_neuron_milps": 0})

    @property
    def margin(self) -> float:
        return self.options.margin

    def remaining(self) -> float | None:
        if self.deadline == float("inf"):
            return None
        left = self.deadline - time.perf_counter()
        if left <= 0:
            raise _OutOfTime
        return left

    def candidates(self, k: int):
        """Inactive and active candidate masks of layer ``k`` (0-based)."""
        open_ = (self.status[k] == Status.UNKNOWN) & (self.method[k] == "")
        return open_ & ~self.tracker.seen_positive(k), open_ & ~self.tracker.seen_negative(k)

    def prove(self, k: int, neurons, inactive: bool, how: str) -> None:
        self.status[k][neurons] = Status.INACTIVE if inactive else Status.ACTIVE
        self.method[k][neurons] = how

    def bounds(self, depth: int):
        return [(self.lower[i], self.upper[i]) for i in range(depth)]

    def trunk_model(self, depth: int):
        """The exact MILP model of hidden layers ``1..depth`` with the current bounds and proofs."""
        return self.formulation.build(self.net, self.box, self.bounds(depth), depth, *self.stable_masks(depth))

    def stable_masks(self, depth: int):
        return ([self.status[i] == Status.INACTIVE for i in range(depth)],
                [self.status[i] == Status.ACTIVE for i in range(depth)])


def network_analysis(net: Network, box: Box, options: AnalysisOptions, progress=None) -> Analysis:
    """Strategy ``network``: screening, LP tightening, network-wide MILP rounds, per-neuron leftovers."""
    return _complete(net, box, options, progress, per_neuron_max=0)


def auto_analysis(net: Network, box: Box, options: AnalysisOptions, progress=None) -> Analysis:
    """Strategy ``auto`` (default): as ``network``, but few candidates go straight to per-neuron MILPs."""
    return _complete(net, box, options, progress, per_neuron_max=AUTO_PER_NEURON_MAX)


def _complete(net, box, options, progress, per_neuron_max: int) -> Analysis:
    screening = screen(net, box, options, progress)
    t_start = time.perf_counter()
    deadline = t_start + options.time_limit if options.time_limit is not None else float("inf")
    backend = get_solver(options.solver, threads=options.threads, verbose=options.solver_log)
    state = _State(net, box, options, backend,
                   lower=[b.lower.copy() for b in screening.bounds], upper=[b.upper.copy() for b in screening.bounds],
                   status=[s.copy() for s, _ in screening.decided], method=[m.copy() for _, m in screening.decided],
                   tracker=screening.tracker, deadline=deadline, formulation=get_formulation(options.formulation))
    interrupted = screening.interrupted
    reason = "interrupted"
    phases = [("lp", _tighten_all)] if options.lp_tightening else []
    phases += [("milp", lambda s, p: _network_rounds(s, p, per_neuron_max)), ("per_neuron", _per_neuron_leftovers)]
    try:
        for name, phase in ([] if interrupted else phases):
            t0 = time.perf_counter()
            try:
                phase(state, progress)   # each phase returns at once when it has nothing to do
            finally:
                state.times[name] = state.times.get(name, 0.0) + time.perf_counter() - t0
    except KeyboardInterrupt:
        interrupted = True
    except _OutOfTime:
        reason = "time_limit"
    stopped = interrupted or reason == "time_limit"
    for k in range(len(state.status)):
        open_ = (state.status[k] == Status.UNKNOWN) & np.isin(state.method[k], ["", "deferred"])
        state.method[k][open_] = reason if stopped else ""
    bounds = [replace(b, lower=state.lower[k], upper=state.upper[k]) for k, b in enumerate(screening.bounds)]
    decided = list(zip(state.status, state.method))
    result = replace(screening, bounds=bounds, decided=decided, interrupted=interrupted)
    analysis = result.finish(net, box, state.times)
    return replace(analysis, stats=dict(state.stats))


# --- phase 1: LP bound tightening ---------------------------------------------------------------

def _tighten_all(state: _State, progress) -> None:
    depth = _deepest_candidate_layer(state)
    # layer 1's interval bounds over the box are already exact; later proofs only shrink these sets
    todo = {k: np.flatnonzero(_lp_targets(state, k, depth)) for k in range(1, depth + 1)}
    total = int(sum(t.size for t in todo.values()))
    report = progress.phase("LP tightening", total) if progress else None
    done = 0
    for k, targets in todo.items():
        if not targets.size:
            continue
        _tighten_layer(state, k, targets, k < depth,
                       lambda n: report(done + n, total, f"layer {k + 1}") if report else None)
        done += targets.size


def _deepest_candidate_layer(state: _State) -> int:
    layers = [k for k in range(len(state.status)) if any(m.any() for m in state.candidates(k))]
    return max(layers) if layers else -1


def _lp_targets(state: _State, k: int, depth: int) -> np.ndarray:
    """Candidates of layer ``k``, plus its undecided neurons when a deeper layer has candidates."""
    inactive, active = state.candidates(k)
    targets = inactive | active
    if k < depth:
        targets |= state.status[k] != Status.ACTIVE
        targets &= state.status[k] != Status.INACTIVE
        targets &= state.method[k] == ""
    return targets


def _tighten_layer(state: _State, k: int, targets: np.ndarray, feeding: bool, report) -> None:
    """LP max/min of the pre-activations ``targets`` of layer ``k`` over the relaxation of layers < k.

    Directions already witnessed are skipped unless the layer ``feeding`` a deeper candidate's model.
    """
    from exactcomp.formulations.bigm import preactivation_objective

    net, tau = state.net, state.margin
    milp = state.trunk_model(k)
    session = state.backend.session(milp, relax=True)
    x_cols = milp.blocks["x"]
    for n, j in enumerate(targets):
        for sign in (1.0, -1.0):
            seen = state.tracker.seen_positive(k)[j] if sign > 0 else state.tracker.seen_negative(k)[j]
            if state.status[k][j] != Status.UNKNOWN:
                break
            if seen and not feeding:
                continue
            c, off = preactivation_objective(milp, net, k, j, sign)
            session.set_objective(c, off, "max")
            result = session.solve(time_limit=state.remaining())
            state.stats["lp_solves"] += 1
            if result.x is not None:
                state.tracker.offer(state.box.clip(result.x[x_cols])[None, :])
            if result.dual_bound is None:
                continue
            if sign > 0:
                state.upper[k][j] = min(state.upper[k][j], result.dual_bound + tau)
            else:
                state.lower[k][j] = max(state.lower[k][j], -result.dual_bound - tau)
            if result.dual_bound <= -tau:   # max(±g) <= -τ: proven with the margin
                state.prove(k, j, inactive=sign > 0, how="lp")
        if report:
            report(n + 1)


# --- phase 2: the network-wide MILP ----------------------------------------------------------

def _candidate_objective(state: _State, milp, depth: int):
    """Objective ``Σ p + Σ q`` over the binaries of the candidates in layers ``1..depth``."""
    c = np.zeros(milp.num_vars)
    offset = 0.0
    for i in range(depth):
        inactive, active = state.candidates(i)
        zvars, zneurons = milp.blocks[f"z{i + 1}"], milp.blocks[f"zn{i + 1}"]
        c[zvars[inactive[zneurons]]] += 1.0
        c[zvars[active[zneurons]]] -= 1.0
        offset += float(active[zneurons].sum())
    return c, offset


def _network_rounds(state: _State, progress, per_neuron_max: int) -> None:
    depth = _deepest_candidate_layer(state) + 1
    count = _candidate_count(state)
    if count == 0 or count <= per_neuron_max:
        return
    relax_inactive, relax_active = zip(*(state.candidates(i) for i in range(depth)))
    milp = state.formulation.build(state.net, state.box, state.bounds(depth), depth, *state.stable_masks(depth),
                      relax_inactive=list(relax_inactive), relax_active=list(relax_active), margin=state.margin)
    report = progress.phase("network MILP", count) if progress else None
    if "lazy_fixings" in getattr(state.backend, "capabilities", ()):
        return _single_tree_rounds(state, milp, depth, report, count)
    while _candidate_count(state):
        c, offset = _candidate_objective(state, milp, depth)
        if not c.any():
            return
        # Σp + Σq >= 1 as a row: infeasible proves every candidate in the objective
        session = state.backend.session(milp.with_objective_cutoff(c, offset, 0.5))
        watch = _IncumbentWatch(state, milp, depth)
        result = session.solve(time_limit=state.remaining(), incumbent=watch, stop_at=0.5)
        state.stats["milp_rounds"] += 1
        if report:
            report(count - _candidate_count(state), count, f"round {state.stats['milp_rounds']}")
        if result.status == SolveStatus.INFEASIBLE:
            for i in range(depth):
                inactive, active = state.candidates(i)
                state.prove(i, np.flatnonzero(inactive), True, "milp")
                state.prove(i, np.flatnonzero(active), False, "milp")
            return
        if result.x is not None:
            watch(result.x)
        if watch.new_witnesses or watch.suspect_count:
            _defer_suspects(state, watch)
            continue
        if result.status == SolveStatus.TIME_LIMIT:
            raise _OutOfTime
        _mark(state, depth, "solver_error")
        return


def _with_indicators(state: _State, milp, depth: int):
    """``milp`` plus indicator columns ``p`` (``p <= z``, inactive candidates) and ``q`` (``q <= 1 - z``,
    active ones) in ``[0, 1]`` and the row ``Σp + Σq >= 1``; objective ``max Σp + Σq``.

    Returns the model and ``[(layer, neuron, inactive, column)]`` of the indicators.
    """
    import scipy.sparse as sp

    found = []
    for i in range(depth):
        inactive, active = state.candidates(i)
        for zvar, j in zip(milp.blocks[f"z{i + 1}"], milp.blocks[f"zn{i + 1}"]):
            if inactive[j] or active[j]:
                found.append((i, int(j), bool(inactive[j]), int(zvar)))
    n, k = milp.num_vars, len(found)
    cols = n + np.arange(k)
    z_sign = np.array([-1.0 if inactive else 1.0 for _, _, inactive, _ in found])   # p - z <= 0 | q + z <= 1
    link = sp.csr_matrix((np.concatenate([np.ones(k), z_sign]),
                          (np.tile(np.arange(k), 2), np.concatenate([cols, [z for *_, z in found]]).astype(int))),
                         shape=(k, n + k))
    total = sp.csr_matrix((np.ones(k), (np.zeros(k, int), cols)), shape=(1, n + k))
    model = replace(milp, c=np.concatenate([np.zeros(n), np.ones(k)]), offset=0.0, sense="max",
                    A=sp.vstack([sp.hstack([milp.A, sp.csr_matrix((milp.num_rows, k))]), link, total], format="csr"),
                    row_lower=np.concatenate([milp.row_lower, np.full(k, -np.inf), [1.0]]),
                    row_upper=np.concatenate([milp.row_upper, np.where(z_sign > 0, 1.0, 0.0), [np.inf]]),
                    col_lower=np.concatenate([milp.col_lower, np.zeros(k)]),
                    col_upper=np.concatenate([milp.col_upper, np.ones(k)]),
                    integrality=np.concatenate([milp.integrality, np.zeros(k, bool)]))
    return model, [(i, j, inactive, int(col)) for (i, j, inactive, _), col in zip(found, cols)]


def _single_tree_rounds(state: _State, milp, depth: int, report, count: int) -> None:
    """The paper's single-tree method, for back ends with ``lazy_fixings`` (SCIP).

    One search over the model of :func:`_with_indicators`. Every solution the solver finds is
    float64-checked (new witnesses recorded); if its indicators on still-unwitnessed candidates sum
    to less than 0.5, it only flips witnessed candidates and is rejected, and the indicators of all
    witnessed candidates are fixed to 0 for the rest of the search (valid: only the others are still
    in question), so the tree is never restarted. Infeasible at the end proves every candidate whose
    indicator is still free. A solution that is accepted (a flip the float64 pass does not confirm:
    within τ of zero) stops the search; its candidates go to the per-neuron phase and the search
    restarts without them.
    """
    x_cols = milp.blocks["x"]
    while _candidate_count(state):
        model, indicators = _with_indicators(state, milp, depth)
        if not indicators:
            return

        layer, neuron, inactive, cols = (np.array(v) for v in zip(*indicators))

        def open_indicators() -> np.ndarray:
            """Which indicators still belong to unwitnessed candidates (one mask per layer, then gathered)."""
            masks = [state.candidates(i) for i in range(depth)]
            return np.array([masks[i][0 if ina else 1][j] for i, j, ina in zip(layer, neuron, inactive)])

        def lazy(values):
            state.tracker.offer(state.box.clip(values[x_cols])[None, :])
            is_open = open_indicators()
            return values[cols[is_open]].sum() < 0.5, cols[~is_open]

        result = state.backend.session(model).solve(time_limit=state.remaining(), lazy=lazy, stop_at=0.5)
        state.stats["milp_rounds"] += 1
        if report:
            report(count - _candidate_count(state), count, f"search {state.stats['milp_rounds']}")
        if result.status == SolveStatus.INFEASIBLE:
            for i, j, ina in zip(*(v[open_indicators()] for v in (layer, neuron, inactive))):
                state.prove(int(i), int(j), bool(ina), "milp")
            return
        if result.x is not None:   # accepted: flips not confirmed in float64 go to the per-neuron phase
            lazy(result.x)
            suspects = open_indicators() & (result.x[cols] > 1e-6)
            for i, j in zip(layer[suspects], neuron[suspects]):
                state.method[int(i)][int(j)] = "deferred"
            continue
        if result.status == SolveStatus.TIME_LIMIT:
            raise _OutOfTime
        _mark(state, depth, "solver_error")
        return


class _IncumbentWatch:
    """The ``incumbent`` hook of a network round: float64-check each incumbent's input.

    Records new witnesses (stops the solve) and *suspects*: candidates whose binary the incumbent
    flips although the float64 forward pass does not confirm the flip.
    """

    def __init__(self, state: _State, milp, depth: int):
        self.state, self.milp, self.depth = state, milp, depth
        self.before = [state.candidates(i) for i in range(depth)]
        self.suspect = [np.zeros(state.status[i].size, bool) for i in range(depth)]
        self.new_witnesses = 0
        self.suspect_count = 0

    def __call__(self, values: np.ndarray) -> bool:
        state, milp = self.state, self.milp
        x = state.box.clip(values[milp.blocks["x"]])
        state.tracker.offer(x[None, :])
        new = 0
        for i, (inactive, active) in enumerate(self.before):
            now_inactive, now_active = state.candidates(i)
            new += int((inactive & ~now_inactive).sum() + (active & ~now_active).sum())
            z = np.zeros(inactive.size)
            z[milp.blocks[f"zn{i + 1}"]] = values[milp.blocks[f"z{i + 1}"]]
            flipped = (now_inactive & (z > 0.5)) | (now_active & (z < 0.5))
            self.suspect[i] |= flipped
        self.new_witnesses += new
        self.suspect_count = int(sum(s.sum() for s in self.suspect))
        return bool(new or self.suspect_count)


def _defer_suspects(state: _State, watch: _IncumbentWatch) -> None:
    """Suspects still without a witness leave the network model; phase 3 decides them one by one."""
    for i, suspect in enumerate(watch.suspect):
        inactive, active = state.candidates(i)
        state.method[i][suspect & (inactive | active)] = "deferred"


def _mark(state: _State, depth: int, reason: str) -> None:
    for i in range(depth):
        inactive, active = state.candidates(i)
        state.method[i][inactive | active] = reason


def _candidate_count(state: _State) -> int:
    return int(sum(a.sum() + b.sum() for a, b in map(state.candidates, range(len(state.status)))))


# --- phase 3: per-neuron MILPs -----------------------------------------------------------------

def _per_neuron_leftovers(state: _State, progress) -> None:
    for i in range(len(state.method)):
        state.method[i][state.method[i] == "deferred"] = ""
    total = _candidate_count(state)
    if not total:
        return
    report = progress.phase("per-neuron MILPs", total) if progress else None
    done = [0]

    def tick():
        done[0] += 1
        if report:
            report(done[0], total)

    for k in range(len(state.status)):
        inactive, active = state.candidates(k)
        if (inactive | active).any():
            _per_neuron_layer(state, k, inactive, active, tick)


def _per_neuron_layer(state: _State, k: int, inactive, active, tick) -> None:
    """One feasibility MILP per candidate over the exact big-M model of layers < k.

    For an inactive candidate: maximise ``g`` subject to ``g >= -τ``. Infeasible proves
    ``g < -τ`` on the box; the first incumbent is float64-checked and, if it is no witness, a second
    model asks for ``g >= τ``: infeasible means the maximum lies within τ of zero (``near_zero``).
    Active candidates likewise with ``-g``. The candidates of a layer are independent, so up to
    ``options.jobs`` of them are solved at once, each in its own thread (HiGHS releases the GIL);
    results, incumbent inputs included, are merged into the state by the calling thread only.
    """
    milp = state.trunk_model(k)
    jobs = [(j, 1.0) for j in np.flatnonzero(inactive)] + [(j, -1.0) for j in np.flatnonzero(active)]
    runner = _NeuronChecks(state, milp, k)
    out_of_time = False
    for (j, sign), verdict in runner.run(jobs, _worker_count(state, len(jobs))):
        for points in verdict.points:
            state.tracker.offer(points[None, :])
        state.stats["per_neuron_milps"] += verdict.milps
        seen = state.tracker.seen_positive(k)[j] if sign > 0 else state.tracker.seen_negative(k)[j]
        if seen or verdict.kind == "skipped":
            pass
        elif verdict.kind == "infeasible":
            state.prove(k, j, inactive=sign > 0, how="milp")
        elif verdict.kind == "time_limit":
            out_of_time = True
        else:   # near_zero, solver_error, no_witness (a feasible point that is no float64 witness)
            state.method[k][j] = "near_zero" if verdict.kind == "near_zero" else "solver_error"
        tick()
    if out_of_time:
        raise _OutOfTime


def _worker_count(state: _State, jobs: int) -> int:
    """Threads for ``jobs`` checks: 1 unless the back end declares it can solve ``"concurrent"``ly."""
    if "concurrent" not in getattr(state.backend, "capabilities", ()):
        return 1
    wanted = state.options.jobs if state.options.jobs is not None else DEFAULT_JOBS
    return max(1, min(wanted, jobs))


@dataclass
class _Verdict:
    kind: str          # infeasible | witness | near_zero | no_witness | solver_error | time_limit | skipped
    points: list = field(default_factory=list)   # inputs of the solver's feasible points
    milps: int = 0


class _NeuronChecks:
    """Runs the per-neuron feasibility checks of one layer, concurrently, and stops them on Ctrl-C."""

    def __init__(self, state: _State, milp, k: int):
        self.state, self.milp, self.k = state, milp, k
        self.sessions: set = set()
        self.cancelled = threading.Event()
        self.lock = threading.Lock()

    def run(self, jobs, workers: int):
        """Yield ``((j, sign), _Verdict)`` as checks finish (in the calling thread)."""
        if workers == 1:
            for job in jobs:
                yield job, self.check(*job)
            return
        pool = ThreadPoolExecutor(workers, thread_name_prefix="exactcomp-milp")
        futures = {pool.submit(self.check, *job): job for job in jobs}
        try:
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                for future in done:
                    yield futures[future], future.result()
        except BaseException:   # Ctrl-C (or an error): stop the running solves, drop the queued ones
            self.cancel()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def cancel(self) -> None:
        self.cancelled.set()
        with self.lock:
            for session in self.sessions:
                session.interrupt()

    def check(self, j: int, sign: float) -> _Verdict:
        """Decide one candidate: ``sign * g_kj >= -τ`` feasible?, then ``>= τ`` if no witness."""
        from exactcomp.formulations.bigm import preactivation_objective

        state, tau = self.state, self.state.margin
        if not state.candidates(self.k)[0 if sign > 0 else 1][j]:   # witnessed meanwhile
            return _Verdict("skipped")
        c, off = preactivation_objective(self.milp, state.net, self.k, j, sign)
        verdict = _Verdict("no_witness")
        for at_least in (-tau, tau):
            kind = self._feasible(c, off, at_least, verdict)
            if kind != "no_witness" or self._is_witness(verdict.points, j, sign):
                verdict.kind = ("near_zero" if at_least > 0 and kind == "infeasible" else
                                "witness" if kind == "no_witness" else kind)
                return verdict
        return verdict

    def _feasible(self, c, off, at_least: float, verdict: _Verdict) -> str:
        """Solve ``max c·x + off`` s.t. ``>= at_least``: infeasible / no_witness / time_limit / ..."""
        state, x_cols = self.state, self.milp.blocks["x"]
        if self.cancelled.is_set():
            return "interrupted"
        left = None if state.deadline == float("inf") else state.deadline - time.perf_counter()
        if left is not None and left <= 0:
            return "time_limit"
        model = state.formulation.strengthen(self.milp.with_objective_cutoff(c, off, at_least), state.net,
                                             state.backend, time_limit=left)
        session = state.backend.session(model, relax=not self.milp.integrality.any())
        with self.lock:
            self.sessions.add(session)
        if self.cancelled.is_set():
            session.interrupt()
        try:   # any feasible point answers the question: stop at the first incumbent
            result = session.solve(time_limit=left, incumbent=lambda values: True, stop_at=at_least)
        finally:
            with self.lock:
                self.sessions.discard(session)
        verdict.milps += 1
        if result.x is not None:
            verdict.points.append(state.box.clip(result.x[x_cols]))
            return "no_witness"
        return {SolveStatus.INFEASIBLE: "infeasible", SolveStatus.TIME_LIMIT: "time_limit",
                SolveStatus.STOPPED: "interrupted"}.get(result.status, "solver_error")

    def _is_witness(self, points, j: int, sign: float) -> bool:
        if not points:
            return False
        _, pre = self.state.net.forward(np.asarray(points), return_preactivations=True)
        return bool((sign * pre[self.k][:, j] > 0).any())
