"""Reading an ONNX file with one-line errors naming it (:class:`~exactcomp.errors.ModelError`): missing, not ONNX,
external data missing, or rejected by the ONNX checker."""

from __future__ import annotations

from pathlib import Path

import onnx

from exactcomp.errors import ModelError


def load_onnx_file(path: Path) -> onnx.ModelProto:
    """The model stored at ``path``, checked by ``onnx.checker``."""
    if not path.exists():
        raise ModelError(f"{path}: no such file")
    try:
        model = onnx.load(str(path))
    except FileNotFoundError as exc:
        raise ModelError(f"{path}: external data file not found ({exc.filename or exc})") from None
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise ModelError(f"{path}: not a valid ONNX model ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:  # noqa: BLE001 - ValidationError and C++ errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: malformed ONNX model: {first}") from None
    return model
