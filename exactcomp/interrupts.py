"""Interrupts: Ctrl-C (SIGINT) and SIGTERM both stop the work at hand the same way.

Python turns SIGINT into ``KeyboardInterrupt``; :func:`handle_interrupts` makes SIGTERM (what
``timeout``, CI systems and schedulers send) do the same and records which signal arrived, so that
every phase that already ends cleanly on Ctrl-C (keeping its sound partial result) also ends cleanly
on SIGTERM, and the command line can exit with ``128 + signal``. Inside :func:`deferred` (the few
milliseconds in which outputs are renamed into place) a signal is only recorded, so a set of
outputs is never left half-renamed; the work is complete by then, and the caller may consult
:func:`received`.

An interrupt never lands inside an import: ``KeyboardInterrupt`` raised in the middle of a native
library's initialisation (numpy, scipy, onnx, onnxruntime, highspy, torch) leaves it half-initialised:
``ImportError: initialization failed``, a traceback, or a crash. The command line imports the libraries a
command needs first, with :func:`import_quietly` (the interrupt is held and raised once they are all
imported), and the handler defers an interrupt that arrives while the main thread is inside any other
import (a library loaded lazily mid-work) until that import is over.

The command line's own part (which libraries each command needs first) is :mod:`exactcomp.cli.signals`;
this module is below every other one of the package (io, witness search and fine-tuning hold interrupts
too).

What no code of exactcomp can guard: the interpreter's own start-up, before the console script's
:func:`~exactcomp.cli.main.entry` installs the handler (25 ms on an idle machine, a few times that
under load: the interpreter's core, where
SIGINT and SIGTERM still have their default action and kill the process; then ``site`` and ``import
exactcomp.cli``, where Python's own SIGINT handler raises ``KeyboardInterrupt`` with a traceback and
SIGTERM still kills).
"""

from __future__ import annotations

import _thread
import signal
import sys
import threading
import time
from contextlib import contextmanager
from importlib import _bootstrap, import_module

#: signal: the last interrupt seen; count: interrupts seen; deferring: depth of :func:`deferred`;
#: pending: an interrupt held until the main thread's import is over (see :func:`interrupt_handler`).
_state = {"signal": None, "count": 0, "deferring": 0, "pending": None}
#: The frame of every import of a module not loaded yet (``import``, ``__import__``, ``import_module``).
_IMPORT_CODE = getattr(getattr(_bootstrap, "_find_and_load", None), "__code__", None)   # CPython 3.11-3.14
_POLL_SECONDS = 0.002


def received() -> int | None:
    """The number of the last interrupting signal (SIGINT or SIGTERM) seen, or None."""
    return _state["signal"]


def signal_name(signum: int | None) -> str:
    return {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}.get(signum, "an interrupt")


def interrupt_handler(signum, frame):
    _state["signal"] = signum
    _state["count"] += 1
    if _state["deferring"]:
        return
    if _importing(frame):
        _hold_until_imported(signum)
        return
    _state["pending"] = None
    raise KeyboardInterrupt


def _importing(frame) -> bool:
    """Whether ``frame`` (or one of its callers) is an import of a module not loaded yet: its code or
    a native library's initialisation (which runs Python code, and thus signal handlers) is running."""
    while frame is not None and _IMPORT_CODE is not None:
        if frame.f_code is _IMPORT_CODE:
            return True
        frame = frame.f_back
    return False


def _hold_until_imported(signum: int) -> None:
    """Raise the interrupt ``signum`` in the main thread as soon as it has finished its imports.

    A watcher thread (a bare one: the main thread, interrupted anywhere, may hold ``threading``'s
    locks) looks at the main thread's stack every few milliseconds; once no import is on it, it
    delivers the signal again (:func:`_thread.interrupt_main`), to :func:`interrupt_handler` if that is still
    installed, which now raises. An interrupt that finds the main thread importing again is held again.
    """
    first = _state["pending"] is None
    _state["pending"] = signum
    if first:
        _thread.start_new_thread(_deliver_after_import, (threading.main_thread().ident,))


def _deliver_after_import(main_ident: int) -> None:
    while True:
        time.sleep(_POLL_SECONDS)
        signum = _state["pending"]
        if signum is None:   # raised meanwhile (a later interrupt outside any import)
            return
        if not _importing(sys._current_frames().get(main_ident)):
            break
    _state["pending"] = None
    if signal.getsignal(signum) is interrupt_handler:
        _thread.interrupt_main(signum)


def import_quietly(*modules: str) -> None:
    """Import ``modules`` (those installed; a missing or broken one is left to its importer to report)
    with interrupts held; an interrupt that arrived meanwhile is raised (``KeyboardInterrupt``) once
    they are all imported, so that none is left half-initialised.

    The command line calls it for the native libraries a command needs, before the command's work.
    """
    with held():
        for name in modules:
            if name not in sys.modules:
                try:
                    import_module(name)
                except ImportError:
                    pass


@contextmanager
def handle_interrupts():
    """Within the block, SIGINT and SIGTERM raise ``KeyboardInterrupt`` and are recorded.

    Outside the main thread (where Python cannot install handlers) the block does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state.update(signal=_state["pending"], deferring=0)   # an interrupt held in an import is still to come
    previous = {s: signal.signal(s, interrupt_handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


@contextmanager
def deferred():
    """Within the block an interrupt is only recorded (see :func:`received`), never raised."""
    _state["deferring"] += 1
    try:
        yield
    finally:
        _state["deferring"] -= 1


@contextmanager
def held():
    """Within the block an interrupt is only recorded; it is raised (``KeyboardInterrupt``) as soon as
    the block is over (by the outermost one, when blocks nest; never inside :func:`deferred`). For work
    that must not stop half-way: a native library's initialisation, an update of related state.
    Outside the main thread (where signals are never delivered) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen = _state["count"]
    with deferred():
        yield
    if _state["count"] != seen and not _state["deferring"]:
        raise KeyboardInterrupt


def finished() -> None:
    """The command is over and its exit status settled: from now on SIGINT and SIGTERM are ignored,
    so that neither the status nor the interpreter's teardown (``atexit``) is cut short, and the
    process is not killed by the signal once Python has put back the default handlers at its very end."""
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)
