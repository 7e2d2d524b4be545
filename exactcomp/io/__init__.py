"""ONNX in and out: the importer (tracing the graph into the IR: ``onnx_import`` with ``onnx_values``,
``onnx_ops``, ``onnx_conv``, ``onnx_pool``, ``onnx_head``), the exporter (``onnx_export``), atomic file writes (``files``),
the witnesses file (``witness_file``) and reports read back for ``--resume`` (``resume``)."""

from importlib import import_module as _import_module
from importlib.util import find_spec as _find_spec


def __getattr__(name: str):
    """Submodules on first access (``exactcomp.io.onnx_import.import_model`` after ``import exactcomp``),
    without importing onnx for ``import exactcomp.io``."""
    if not name.startswith("_") and _find_spec(f"{__name__}.{name}") is not None:
        return _import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
