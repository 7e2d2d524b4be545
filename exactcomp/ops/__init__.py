"""Op units: an op added to exactcomp in one module.

Each module of this package is one op, declared next to its maths: its IR class (a layer the bounds,
formulations, witnesses and rewrite rules use through the linear-operator interface of
:class:`~exactcomp.ir.network.Dense` / :class:`~exactcomp.ir.conv.Conv`), how the ONNX importer reads it, how
the exporter writes it, how ``inspect`` names it, and (where it is not that of its base class) its torch
operator for branch and bound. It registers these in the dispatch tables of the stages that use them
(:data:`exactcomp.io.onnx_conv.CONV_READERS`, :data:`exactcomp.io.onnx_nodes.CONV_WRITERS`,
:data:`exactcomp.bab.torch_operators.TORCH_OPERATORS`, ...), so adding an op touches no other file:
every module here is imported with this package, which the importer and the exporter import.
``docs/extending.md`` walks through :mod:`exactcomp.ops.conv1d`.
"""

from __future__ import annotations

import importlib
import pkgutil

#: The op units found in this package (module names), imported in order.
UNITS = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")))

for _unit in UNITS:
    importlib.import_module(f"{__name__}.{_unit}")
