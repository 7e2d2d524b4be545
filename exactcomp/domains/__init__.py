"""Input domains beyond one box file: VNN-LIB properties (``vnnlib``), unions of boxes and the union rule
(``union``, ``merge``), domains built from data or balls around inputs (``derive``), and reading a domain
file once, from its bytes (``source``: pipes such as ``/dev/stdin``; ONNX, NumPy and binary files refused)."""

from exactcomp.domains.union import Domain, load_domain

__all__ = ["Domain", "load_domain"]
