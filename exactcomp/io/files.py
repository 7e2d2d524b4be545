"""File output that never destroys a user's file and never leaves half a result.

* :func:`write_atomic` — one file appears complete or not at all (temporary file beside it, renamed).
* :class:`OutputSet` — several outputs of one command as a unit: before any work, every target is
  checked (not an input, not another output, symlinks and hard links resolved; its directory exists
  and accepts a new file); the contents are written to temporary files beside their targets; only
  when all are written are they renamed into place, with interrupts held for those few renames and
  earlier versions restored if a rename fails. On any failure no temporary file is left behind and
  no target is touched.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Callable, IO

import numpy as np

from exactcomp.errors import ExactcompError


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(fh)`` on a temporary file beside ``path``, then rename it onto ``path``."""
    path = Path(path)
    tmp = _write_temporary(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _write_temporary(path: Path, write: Callable[[IO[bytes]], None]) -> str:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether ``a`` and ``b`` name the same file: equal after resolving symlinks, or (both
    existing) the same inode, which also catches hard links."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


class OutputSet:
    """The outputs of one command, written all together or not at all (see module doc)."""

    def __init__(self):
        self._targets: dict[str, Path] = {}      # label -> path
        self._staged: dict[str, str] = {}        # label -> temporary file

    def add(self, label: str, path: str | Path | None) -> None:
        """Plan output ``label`` (e.g. ``"--report"``) at ``path`` (None: not written)."""
        if path is None:
            return
        path = Path(path)
        for other, existing in self._targets.items():
            if same_file(path, existing):
                raise ExactcompError(f"{path}: {label} and {other} name the same file; give them different paths")
        self._targets[label] = path

    def check(self, inputs: dict[str, str | Path | None]) -> None:
        """Refuse targets that are inputs, directories or unwritable, before any work is done."""
        from exactcomp.interrupts import held

        for label, path in self._targets.items():
            for what, source in inputs.items():
                if source is not None and same_file(path, source):
                    raise ExactcompError(f"{path}: {label} would overwrite the {what} {source}; "
                                         "choose another output path")
            if path.is_dir():
                raise ExactcompError(f"{path}: {label} is a directory")
            parent = path.parent
            if not parent.is_dir():
                raise ExactcompError(f"{path}: {label}: directory {parent} does not exist")
            try:   # a real probe: permission bits do not tell (root, read-only mounts, ACLs)
                with held():   # an interrupt is raised once the probe is gone, never leaves it behind
                    fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
                    os.close(fd)
                    os.unlink(probe)
            except OSError as exc:
                raise ExactcompError(f"{path}: {label}: cannot write in {parent}: {exc.strerror or exc}") from None

    def stage(self, label: str, write: Callable[[IO[bytes]], None]) -> None:
        """Write output ``label``'s content to a temporary file beside its target."""
        path = self._targets[label]
        try:
            self._staged[label] = _write_temporary(path, write)
        except OSError as exc:
            self.discard()
            raise ExactcompError(f"{path}: {label}: cannot write: {exc.strerror or exc}") from None

    def commit(self) -> list[Path]:
        """Rename every staged file into place; on a failed rename restore what was replaced."""
        from exactcomp.interrupts import deferred

        done: list[tuple[Path, str | None]] = []
        with deferred():
            try:
                for label, tmp in self._staged.items():
                    path = self._targets[label]
                    backup = _keep_previous(path)
                    try:
                        os.replace(tmp, path)
                    except OSError:
                        if backup is not None:
                            Path(backup).unlink(missing_ok=True)
                        raise
                    done.append((path, backup))
            except OSError as exc:
                for replaced, backup in reversed(done):   # put back what was there before
                    if backup is not None:
                        os.replace(backup, replaced)
                    else:
                        replaced.unlink(missing_ok=True)
                self.discard()
                raise ExactcompError(f"{path}: cannot write: {exc.strerror or exc}; no output was changed") from None
            for _, backup in done:
                if backup is not None:
                    Path(backup).unlink(missing_ok=True)
        written = [self._targets[label] for label in self._staged]
        self._staged.clear()
        return written

    def discard(self) -> None:
        """Remove every staged temporary file (targets untouched)."""
        for tmp in self._staged.values():
            Path(tmp).unlink(missing_ok=True)
        self._staged.clear()

    def __enter__(self) -> "OutputSet":
        return self

    def __exit__(self, *exc) -> None:
        self.discard()


def _keep_previous(path: Path) -> str | None:
    """A hard link to the current ``path`` (if any) so that a failed commit can restore it."""
    if not path.exists() or path.is_symlink():
        return None
    backup = tempfile.mktemp(prefix=f".{path.name}.", suffix=".bak", dir=path.parent)
    try:
        os.link(path, backup)
    except OSError:   # no hard links here: the rename is still atomic per file
        return None
    return backup


def json_bytes(data: dict) -> bytes:
    """Strict JSON (no NaN or Infinity: non-finite numbers become null), UTF-8, newline-terminated."""
    return (json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n").encode()


def json_safe(obj):
    """``obj`` with numpy scalars/arrays converted and non-finite floats replaced by None."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path, data: dict) -> Path:
    text = json_bytes(data)
    return write_atomic(path, lambda fh: fh.write(text))


def npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def write_npy(path: str | Path, array: np.ndarray) -> Path:
    return write_atomic(path, lambda fh: np.save(fh, array))
