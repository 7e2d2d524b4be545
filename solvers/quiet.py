"""Keep native solver output off the user's standard output.

Solver libraries print from C/C++ straight to file descriptor 1 (HiGHS ≥ 1.16 prints its banner
whenever a ``Highs`` object is created, whatever ``output_flag`` says), which Python's
``sys.stdout`` cannot intercept. Two tools:

* :func:`quiet_native_stdout` — a context manager for library code: while at least one thread is
  inside it, fd 1 points at ``/dev/null``; C stdio buffers are flushed on the way in and out, so
  nothing printed inside leaks later. Python's own ``print`` goes to fd 1 too, so keep the block short
  (object construction, a solve).
* :func:`redirect_native_stdout` — for the command line: for the rest of the process, fd 1 goes to
  ``/dev/null`` (or to stderr when the user asked for solver logs) while ``sys.stdout`` is rebound
  to a private copy of the original stdout, so exactcomp's own output (tables, ``--json``) is the
  only thing on stdout. Child processes inherit the redirected fd 1.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import threading
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_saved_fd: int | None = None


def _flush_native() -> None:
    try:
        sys.stdout.flush()
    except (AttributeError, OSError, ValueError):
        pass
    libc = _libc()
    if libc is not None:
        libc.fflush(None)


@functools.lru_cache(maxsize=1)
def _libc():
    try:
        return ctypes.CDLL(None)
    except (OSError, AttributeError):  # no C library to talk to (not on Linux/macOS)
        return None


@contextmanager
def quiet_native_stdout(enabled: bool = True):
    """Send fd 1 to ``/dev/null`` inside the block (re-entrant and thread-safe; see module doc)."""
    global _depth, _saved_fd
    if not enabled:
        yield
        return
    with _lock:
        if _depth == 0:
            try:
                _flush_native()
                _saved_fd = os.dup(1)
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.close(devnull)
            except OSError:   # no fd 1 at all (closed stdout): nothing to protect
                _saved_fd = None
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved_fd is not None:
                _flush_native()
                os.dup2(_saved_fd, 1)
                os.close(_saved_fd)
                _saved_fd = None


def redirect_native_stdout(to_stderr: bool = False) -> None:
    """For the rest of the process, native writes to fd 1 go to ``/dev/null`` (or stderr when
    ``to_stderr``), and ``sys.stdout`` writes to the original standard output (see module doc)."""
    try:
        sys.stdout.flush()
        private = os.dup(1)
    except (AttributeError, OSError, ValueError):
        return
    target = os.dup(2) if to_stderr else os.open(os.devnull, os.O_WRONLY)
    os.dup2(target, 1)
    os.close(target)
    sys.stdout = os.fdopen(private, "w", buffering=1, encoding=sys.stdout.encoding or "utf-8",
                           errors=getattr(sys.stdout, "errors", None) or "strict")
