"""Error hierarchy. Every error a user can cause derives from :class:`ExactcompError`.

The CLI prints ``exactcomp: error: <message>`` for these and exits with status 2; any other
exception is a bug in exactcomp and is reported with a traceback.
"""

from __future__ import annotations


class ExactcompError(Exception):
    """Base class of all errors caused by user input or by a failed check."""


class ModelError(ExactcompError):
    """The ONNX file cannot be read, is malformed, or holds unsupported content."""


class UnsupportedOpError(ModelError):
    """A node inside the ReLU trunk has an op type exactcomp cannot represent exactly."""


class DomainError(ExactcompError):
    """The input domain (box file or samples) is malformed or inconsistent with the model."""


class VerificationError(ExactcompError):
    """A compressed model does not match its original within tolerance."""
