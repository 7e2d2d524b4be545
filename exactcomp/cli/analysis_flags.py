"""``exactcomp compress``'s analysis flags, generated from the fields of
:class:`~exactcomp.options.AnalysisOptions` (flag, help, kind of value and argparse extras live beside each
field, in one place): :func:`add_analysis_flags` adds them to a parser, :func:`analysis_kwargs` reads them back
as keyword arguments of ``exactcomp.compress`` / ``exactcomp.analyze``."""

from __future__ import annotations

import dataclasses

from exactcomp.cli.argtypes import (count_type, executor_type, number_type, prover_list_type, seed_type,
                                    time_limit_type)

def _strategies() -> dict:
    from exactcomp.analysis import STRATEGIES

    return {"choices": list(STRATEGIES)}


def _formulations() -> dict:
    from exactcomp.formulations import REGISTRY

    return {"choices": list(REGISTRY)}


#: kind of value -> the argparse options it becomes (a ``("int" | "open_float", low, high)`` kind is a range)
_KINDS = {"count": lambda: {"type": count_type}, "seed": lambda: {"type": seed_type},
          "time_limit": lambda: {"type": time_limit_type}, "provers": lambda: {"type": prover_list_type},
          "executor": lambda: {"type": executor_type},
          "strategy": _strategies, "formulation": _formulations}


def flagged_fields() -> list:
    """The fields of :class:`~exactcomp.options.AnalysisOptions` that have a command-line form."""
    from exactcomp.options import AnalysisOptions

    return [f for f in dataclasses.fields(AnalysisOptions) if "flag" in f.metadata]


def add_analysis_flags(parser) -> None:
    """One argument per flagged field, with the field's default (``--margin``: None, so that the options'
    own default applies) and its validation (the argparse type of its kind)."""
    for f in flagged_fields():
        meta = dict(f.metadata)
        flag, kind, help_ = meta.pop("flag"), meta.pop("kind"), meta.pop("help")
        extra = {"dest": f.name, "help": help_.replace("%", "%%"), **meta}
        if "action" not in extra:
            extra["default"] = None if f.name == "margin" else f.default
            extra.update(_typed(kind))
        parser.add_argument(flag, **extra)


def _typed(kind) -> dict:
    if kind is None:
        return {}
    if isinstance(kind, tuple):
        name, low, high = kind
        return {"type": number_type(float if name == "open_float" else int, low, high, low_open=name == "open_float")}
    return _KINDS[kind]()


def analysis_kwargs(args) -> dict:
    """The analysis options the command line set, as keyword arguments (``--margin`` only when given)."""
    out = {f.name: getattr(args, f.name) for f in flagged_fields()}
    if out.get("margin") is None:
        out.pop("margin", None)
    return out
