"""``network-milp``: the single network-wide MILP of Serra et al. (NeurIPS 2021).

One big-M model of the layers up to the deepest candidate, with the margin-relaxed rows of
:mod:`exactcomp.formulations.bigm` for candidates, maximising ``Σ p + Σ q`` (``p = z`` for inactive,
``q = 1 - z`` for active candidates) subject to ``Σ p + Σ q >= 1``. Every incumbent's input is
clipped to the box and run through the network in float64; the solve stops at the first incumbent
that flips a candidate and the witnessed candidates leave the objective before the next round.
Infeasible proves every candidate left (method ``milp``). A flip the float64 pass does not confirm
(within τ of zero, or solver tolerance) *defers* its candidate to the per-neuron ``milp`` prover.
With a back end that has ``lazy_fixings`` (SCIP) the rounds become one search (the paper's single
tree): solutions that flip only witnessed candidates are rejected inside the search.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from exactcomp.solvers import SolveStatus
from exactcomp.results import Reason, Side, Status
from exactcomp.provers.lp import deepest_candidate_layer
from exactcomp.provers.milp import proven_edge
from exactcomp.provers.state import Candidate, Decision, OutOfTime, Outcome


def _prove_all(state, depth: int) -> Outcome:
    """Every candidate in the model proven: no flip with margin τ is feasible, so ``σ g < -τ``."""
    out = Outcome()
    for c in state.open_candidates():
        if c.layer < depth:
            out.decisions.append(Decision(c.layer, c.neuron, c.sign.status,
                                          "milp"))
            out.bounds.append(proven_edge(c, state.margin))
    return out


def _mark(state, depth: int, reason: Reason) -> Outcome:
    out = Outcome()
    for i in range(depth):
        inactive, active = state.candidates(i)
        out.decisions += [Decision(i, int(j), Status.UNKNOWN, reason) for j in np.flatnonzero(inactive | active)]
    return out


class NetworkMilp:
    name = "network-milp"

    def __init__(self, minimum: int = 0):
        self.minimum = minimum   # run only when more candidates than this are open

    def run(self, state, progress=None):
        depth = deepest_candidate_layer(state) + 1
        count = state.candidate_count()
        if count == 0 or count <= self.minimum:
            return
        relax_inactive, relax_active = zip(*(state.candidates(i) for i in range(depth)))
        milp = state.formulation.build(state.net, state.box, state.bounds(depth), depth, *state.stable_masks(depth),
                                       relax_inactive=list(relax_inactive), relax_active=list(relax_active),
                                       margin=state.margin)
        report = progress.phase("network MILP", count) if progress else None
        if "lazy_fixings" in getattr(state.backend, "capabilities", ()):
            yield from _single_tree_rounds(state, milp, depth, report, count)
            return
        rounds = 0
        while state.candidate_count():
            c, offset = _candidate_objective(state, milp, depth)
            if not c.any():
                return
            # Σp + Σq >= 1 as a row: infeasible proves every candidate in the objective
            session = state.backend.session(milp.with_objective_cutoff(c, offset, 0.5))
            watch = _IncumbentWatch(state, milp, depth)
            result = session.solve(**state.budget.solver_limits(state.remaining()), incumbent=watch, stop_at=0.5)
            state.budget.charge_milp(result)
            rounds += 1
            yield Outcome(stats={"milp_rounds": 1})
            if report:
                report(count - state.candidate_count(), count, f"round {rounds}")
            if result.status == SolveStatus.INFEASIBLE:
                yield _prove_all(state, depth)
                return
            if result.x is not None:
                watch(result.x)
            if watch.new_witnesses or watch.suspect_count:
                yield _defer(state, watch.suspect)
                continue
            if result.status == SolveStatus.TIME_LIMIT:
                raise OutOfTime
            yield _mark(state, depth, Reason.SOLVER_ERROR)
            return


def _candidate_objective(state, milp, depth: int):
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


def _defer(state, suspect) -> Outcome:
    """Suspects still without a witness leave the network model; the ``milp`` prover decides them."""
    out = Outcome()
    for i, mask in enumerate(suspect):
        inactive, active = state.candidates(i)
        out.decisions += [Decision(i, int(j), Status.UNKNOWN, Reason.DEFERRED)
                          for j in np.flatnonzero(mask & (inactive | active))]
    return out


class _IncumbentWatch:
    """The ``incumbent`` hook of a network round: float64-check each incumbent's input.

    Records new witnesses (stops the solve) and *suspects*: candidates whose binary the incumbent
    flips although the float64 forward pass does not confirm the flip.
    """

    def __init__(self, state, milp, depth: int):
        self.state, self.milp, self.depth = state, milp, depth
        self.before = [state.candidates(i) for i in range(depth)]
        self.suspect = [np.zeros(state.status[i].size, bool) for i in range(depth)]
        self.new_witnesses = 0
        self.suspect_count = 0

    def __call__(self, values: np.ndarray) -> bool:
        state, milp = self.state, self.milp
        state.tracker.offer(state.box.clip(values[milp.blocks["x"]])[None, :])   # a float64 fact
        new = 0
        for i, (inactive, active) in enumerate(self.before):
            now_inactive, now_active = state.candidates(i)
            new += int((inactive & ~now_inactive).sum() + (active & ~now_active).sum())
            z = np.zeros(inactive.size)
            z[milp.blocks[f"zn{i + 1}"]] = values[milp.blocks[f"z{i + 1}"]]
            self.suspect[i] |= (now_inactive & (z > 0.5)) | (now_active & (z < 0.5))
        self.new_witnesses += new
        self.suspect_count = int(sum(s.sum() for s in self.suspect))
        return bool(new or self.suspect_count)


def _with_indicators(state, milp, depth: int):
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


def _single_tree_rounds(state, milp, depth: int, report, count: int):
    """The paper's single-tree method, for back ends with ``lazy_fixings`` (SCIP).

    One search over the model of :func:`_with_indicators`. Every solution the solver finds is
    float64-checked (new witnesses recorded); if its indicators on still-unwitnessed candidates sum
    to less than 0.5, it only flips witnessed candidates and is rejected, and the indicators of all
    witnessed candidates are fixed to 0 for the rest of the search (valid: only the others are still
    in question), so the tree is never restarted. Infeasible at the end proves every candidate whose
    indicator is still free. A solution that is accepted (a flip the float64 pass does not confirm:
    within τ of zero) stops the search; its candidates are deferred and the search restarts without them.
    """
    x_cols = milp.blocks["x"]
    searches = 0
    while state.candidate_count():
        model, indicators = _with_indicators(state, milp, depth)
        if not indicators:
            return
        layer, neuron, inactive, cols = (np.array(v) for v in zip(*indicators))

        def open_indicators() -> np.ndarray:
            """Which indicators still belong to unwitnessed candidates (one mask per layer, then gathered)."""
            masks = [state.candidates(i) for i in range(depth)]
            return np.array([masks[i][0 if ina else 1][j] for i, j, ina in zip(layer, neuron, inactive)])

        def lazy(values):
            state.tracker.offer(state.box.clip(values[x_cols])[None, :])   # a float64 fact
            is_open = open_indicators()
            return values[cols[is_open]].sum() < 0.5, cols[~is_open]

        result = state.backend.session(model).solve(**state.budget.solver_limits(state.remaining()), lazy=lazy,
                                                    stop_at=0.5)
        state.budget.charge_milp(result)
        searches += 1
        yield Outcome(stats={"milp_rounds": 1})
        if report:
            report(count - state.candidate_count(), count, f"search {searches}")
        if result.status == SolveStatus.INFEASIBLE:
            still = open_indicators()
            out = Outcome()
            for i, j, ina in zip(layer[still], neuron[still], inactive[still]):
                c = Candidate(int(i), int(j), Side.INACTIVE if ina else Side.ACTIVE)
                out.decisions.append(Decision(c.layer, c.neuron, c.sign.status, "milp"))
                out.bounds.append(proven_edge(c, state.margin))
            yield out
            return
        if result.x is not None:   # accepted: flips not confirmed in float64 go to the per-neuron prover
            lazy(result.x)
            suspects = open_indicators() & (result.x[cols] > 1e-6)
            yield Outcome(decisions=[Decision(int(i), int(j), Status.UNKNOWN, Reason.DEFERRED)
                                     for i, j in zip(layer[suspects], neuron[suspects])])
            continue
        if result.status == SolveStatus.TIME_LIMIT:
            raise OutOfTime
        yield _mark(state, depth, Reason.SOLVER_ERROR)
        return
