"""Interrupts: Ctrl-C (SIGINT) and SIGTERM both stop the work at hand the same way.

Python turns SIGINT into ``KeyboardInterrupt``; :func:`handle_interrupts` makes SIGTERM (what
``timeout``, CI systems and schedulers send) do the same and records which signal arrived, so that
every phase that already ends cleanly on Ctrl-C (keeping its sound partial result) also ends cleanly
on SIGTERM, and the command line can exit with ``128 + signal``. Inside :func:`deferred` (the few
milliseconds in which outputs are renamed into place) a signal is only recorded, so a set of
outputs is never left half-renamed; the work is complete by then, and the caller may consult
:func:`received`.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

_state = {"signal": None, "deferring": 0}


def received() -> int | None:
    """The number of the last interrupting signal (SIGINT or SIGTERM) seen, or None."""
    return _state["signal"]


def signal_name(signum: int | None) -> str:
    return {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}.get(signum, "an interrupt")


def _handler(signum, frame):
    _state["signal"] = signum
    if _state["deferring"]:
        return
    raise KeyboardInterrupt


@contextmanager
def handle_interrupts():
    """Within the block, SIGINT and SIGTERM raise ``KeyboardInterrupt`` and are recorded.

    Outside the main thread (where Python cannot install handlers) the block does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state.update(signal=None, deferring=0)
    previous = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}
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
