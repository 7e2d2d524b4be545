"""The witnesses file that ``compress`` stores beside a compressed model, tied to that model.

``small.onnx`` gets ``small.witnesses.npy`` (the witness inputs, shape ``(count, *input shape)``), and
the model's metadata records the file's SHA-256 under :data:`WITNESSES_KEY`. ``verify`` uses the file
only when the hashes match, so a file left from another model is ignored (and reported), never used.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

#: Metadata key of a compressed model holding the SHA-256 of its stored witnesses file.
WITNESSES_KEY = "exactcomp.witnesses.sha256"


def stored_witnesses_path(model_path: str | Path) -> Path:
    """Where ``compress`` stores the witnesses of a compressed model: ``small.onnx`` -> ``small.witnesses.npy``."""
    return Path(model_path).with_suffix(".witnesses.npy")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored_witnesses(model_path: str | Path) -> tuple[Path | None, str | None]:
    """The witnesses file stored beside a compressed model, if it belongs to that model.

    Returns ``(path, None)`` when the file exists and its SHA-256 equals the one recorded in the
    model's metadata (:data:`WITNESSES_KEY`), ``(None, note)`` when a file exists but does not belong
    to this model (stale, or the model records none), and ``(None, None)`` when there is no file.
    """
    from exactcomp.io.onnx_meta import model_metadata

    path = stored_witnesses_path(model_path)
    if not path.is_file():
        return None, None
    expected = model_metadata(model_path).get(WITNESSES_KEY)
    try:
        actual = sha256_bytes(path.read_bytes())
    except OSError as exc:
        return None, f"ignored {path}: cannot read it ({exc.strerror or exc})"
    if expected != actual:
        why = "it was written for another model" if expected else f"{model_path} records no witnesses file"
        return None, f"ignored {path}: {why}"
    return path, None
