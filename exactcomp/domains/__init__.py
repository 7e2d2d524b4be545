"""Input domains beyond one box file: VNN-LIB properties (``vnnlib``), unions of boxes and the union rule
(``union``, ``merge``), and domains built from data or balls around inputs (``derive``)."""

from exactcomp.domains.union import Domain, load_domain

__all__ = ["Domain", "load_domain"]
