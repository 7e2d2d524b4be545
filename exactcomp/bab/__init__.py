"""Branch and bound over ReLU splits (β-CROWN / BaBSR style): the batched torch search
(:mod:`exactcomp.bab.engine`), its float64 bound (:mod:`exactcomp.bab.split_bounds`), certificates and their
independent check (:mod:`exactcomp.bab.certificate`), and layers as torch operators
(:mod:`exactcomp.bab.torch_operators`). torch is imported only when a search runs."""

from exactcomp.bab.certificate import Certificate, Leaf, check_certificate, covers_box
from exactcomp.bab.engine import BabOptions, BabResult, branch_and_bound

__all__ = ["BabOptions", "BabResult", "Certificate", "Leaf", "branch_and_bound", "check_certificate", "covers_box"]
