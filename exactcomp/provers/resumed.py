"""``resume``: the first prover when ``AnalysisOptions.resume`` holds an earlier report (:mod:`exactcomp.io.resume`).

It hands the earlier bounds, proofs (status and method as reported; counted as ``resumed_proofs``)
and unknown reasons of ``near_zero`` neurons to the schedule, and offers the earlier witnesses again.
"""

from __future__ import annotations

import numpy as np

from exactcomp.results import Status
from exactcomp.provers.state import Decision, Outcome

_STATUS = {"stably_active": Status.ACTIVE, "stably_inactive": Status.INACTIVE}


class ResumedProofs:
    name = "resume"

    def run(self, state, progress=None):
        data = state.options.resume
        out = Outcome(points=data.witnesses if len(data.witnesses) else None)
        proofs = 0
        for k, (statuses, methods, lower, upper) in enumerate(data.layers):
            everyone = np.arange(lower.size)
            out.bounds.append((k, everyone, lower, upper))
            for j, (status, method) in enumerate(zip(statuses, methods)):
                if status in _STATUS:
                    out.decisions.append(Decision(k, j, int(_STATUS[status]), str(method or "resumed")))
                    proofs += 1
        out.stats["resumed_proofs"] = proofs
        yield out
