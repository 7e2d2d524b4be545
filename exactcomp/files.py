"""Atomic file output: a file appears complete or not at all (never half-written)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable, IO

import numpy as np


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(fh)`` on a temporary file beside ``path``, then rename it onto ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, data: dict) -> Path:
    text = json.dumps(data, indent=2, default=_json_default) + "\n"
    return write_atomic(path, lambda fh: fh.write(text.encode()))


def write_npy(path: str | Path, array: np.ndarray) -> Path:
    return write_atomic(path, lambda fh: np.save(fh, array))


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj)}")
