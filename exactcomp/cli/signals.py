"""The command line's interrupts: which native libraries each command imports before its work
(:func:`command_libraries`), and the handling itself (:mod:`exactcomp.interrupts`, re-exported here)."""

from __future__ import annotations

from exactcomp.interrupts import (interrupt_handler, deferred, finished, handle_interrupts, held, import_quietly,
                                  received, signal_name)

__all__ = ["COMMAND_LIBRARIES", "STARTUP_LIBRARIES", "interrupt_handler", "command_libraries", "deferred", "finished",
           "handle_interrupts", "held", "import_quietly", "received", "signal_name"]

#: The native libraries the command line imports before any command's work (the parser needs them).
STARTUP_LIBRARIES = ("numpy", "scipy.sparse")
#: Those a command always loads before its work starts (model import, domain checks, verification).
#: Libraries needed only by some runs (highspy, scipy.optimize, torch for branch and bound, the other
#: solvers, matplotlib, onnx for ``domain --model``) are loaded when the work needs them, under the
#: handler's import guard (:func:`interrupt_handler`).
COMMAND_LIBRARIES = {
    "compress": ("scipy.linalg", "onnx", "onnxruntime"),
    "verify": ("scipy.linalg", "onnx", "onnxruntime"),
    "inspect": ("scipy.linalg", "onnx"),
    "bench": ("scipy.linalg", "onnx", "onnxruntime"),
    "stabilize": ("scipy.linalg", "onnx", "onnxruntime", "torch"),
}


def command_libraries(args) -> tuple[str, ...]:
    """The native libraries the parsed command ``args`` needs before its work (see :data:`COMMAND_LIBRARIES`);
    torch too when its ``--device`` is not the CPU (checked before the work)."""
    names = COMMAND_LIBRARIES.get(getattr(args, "command", None), ())
    if str(getattr(args, "device", "cpu")) != "cpu":
        names += ("torch",)
    return names
