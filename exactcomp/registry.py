"""The one registry style of exactcomp: a name → entry mapping where an entry is the object itself or
``"module:attr"`` naming it (imported on first use, so optional libraries load only when used).

Every plug-in point is a :class:`Registry`: solver back ends (``exactcomp.solvers.REGISTRY``, classes),
formulations (``exactcomp.formulations.REGISTRY``, instances), provers (``exactcomp.provers.PROVERS``,
classes), executors (``exactcomp.executors.EXECUTORS``, factories), strategies
(``exactcomp.analysis.STRATEGIES``, functions) and stabilize's unit scores (``exactcomp.finetune.scores.SCORES``).
Register your own with ``REGISTRY["name"] = obj`` or ``"your.module:Name"``; :meth:`Registry.load` returns the
entry, imported if needed, or raises :class:`~exactcomp.errors.ExactcompError` naming the kind and the choices.
"""

from __future__ import annotations

from importlib import import_module

from exactcomp.errors import ExactcompError


class Registry(dict):
    """``name -> object | "module:attr"`` for one kind of plug-in (``kind`` names it in errors)."""

    def __init__(self, kind: str, entries: dict | None = None):
        super().__init__(entries or {})
        self.kind = kind

    def load(self, name: str):
        """The entry registered as ``name`` (a ``"module:attr"`` entry imported now)."""
        if name not in self:
            raise ExactcompError(f"unknown {self.kind} '{name}'; available: {', '.join(self)}")
        return resolve(self[name])

    def __reduce__(self):
        return (Registry, (self.kind, dict(self)))


def resolve(entry):
    """``entry`` itself, or the attribute a ``"module:attr"`` string names."""
    if not isinstance(entry, str):
        return entry
    module, sep, attr = entry.partition(":")
    if not sep:
        raise ExactcompError(f"registry entry '{entry}' must be an object or 'module:attr'")
    return getattr(import_module(module), attr)
