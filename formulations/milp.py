"""A solver-neutral mixed-integer linear program.

    optimise  c·x + offset      (``sense`` = "max" or "min")
    subject to  row_lower <= A x <= row_upper
                col_lower <=  x  <= col_upper
                x_i integer where ``integrality[i]``

``A`` is a ``scipy.sparse.csr_matrix``. ``blocks`` maps names (``"x"`` for the input, ``"h1"``,
``"z1"``, ... per hidden layer) to index arrays of variables (``"zn1"``, ...: the neuron of each
binary of ``"z1"``, ...), and ``neurons`` maps each binary
variable back to its ``(layer_id, neuron)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True, eq=False)
class MILP:
    c: np.ndarray
    A: sp.csr_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    integrality: np.ndarray
    sense: str = "max"
    offset: float = 0.0
    blocks: dict = field(default_factory=dict)
    neurons: dict = field(default_factory=dict)

    def __post_init__(self):
        n = self.c.size
        if self.A.shape[1] != n or self.col_lower.size != n or self.col_upper.size != n or self.integrality.size != n:
            raise ValueError("MILP column data sizes disagree")
        if self.row_lower.size != self.A.shape[0] or self.row_upper.size != self.A.shape[0]:
            raise ValueError("MILP row data sizes disagree")
        if self.sense not in ("max", "min"):
            raise ValueError("sense must be 'max' or 'min'")

    @property
    def num_vars(self) -> int:
        return self.c.size

    @property
    def num_rows(self) -> int:
        return self.A.shape[0]

    def with_objective(self, c: np.ndarray, offset: float = 0.0, sense: str = "max") -> "MILP":
        return replace(self, c=np.asarray(c, float), offset=float(offset), sense=sense)

    def with_objective_cutoff(self, c: np.ndarray, offset: float, at_least: float) -> "MILP":
        """Maximise ``c·x + offset`` subject to the extra row ``c·x + offset >= at_least``.

        Infeasibility then proves ``max < at_least``, and branch and bound prunes every node whose
        relaxation cannot reach it (an objective cutoff that works for any back end).
        """
        c = np.asarray(c, float)
        A = sp.vstack([self.A, sp.csr_matrix(c[None, :])], format="csr")
        return replace(self, c=c, offset=float(offset), sense="max", A=A,
                       row_lower=np.append(self.row_lower, at_least - offset),
                       row_upper=np.append(self.row_upper, np.inf))

    def objective_value(self, x: np.ndarray) -> float:
        return float(self.c @ x + self.offset)
