"""What is read from an ONNX file without importing it: its external-data files and its metadata."""

from __future__ import annotations

from pathlib import Path

import onnx


def external_data_files(path: str | Path) -> list[Path]:
    """The external-data files an ONNX file at ``path`` refers to (empty if unreadable or none)."""
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - a bad model is reported by import_model
        return []
    files = {path.parent / ExternalDataInfo(t).location for t in _get_all_tensors(model) if uses_external_data(t)}
    return sorted(files)


def model_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of the ONNX file at ``path`` (empty if unreadable)."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - a bad model is reported when it is run
        return {}
    return {p.key: p.value for p in model.metadata_props}
