"""Argument types of the command line: each parses one option's text or raises ``ArgumentTypeError`` with a
one-line reason (argparse turns it into ``exactcomp CMD: error: argument --X: ...``, exit 2)."""

from __future__ import annotations

import argparse
import math

#: The most --random-points: exactcomp.domain.MAX_RANDOM_POINTS, written out (this module must not import numpy;
#: the other limits are exactcomp.options.MAX_JOBS, MAX_THREADS and MAX_MARGIN).
MAX_COUNT = 10_000_000


def number_type(cast, low, high=None, low_open: bool = False):
    """An argparse type: ``cast(text)``, finite, ``low <= value`` (``<`` when ``low_open``), ``<= high``."""
    kind = "an integer" if cast is int else "a number"

    def parse(text: str):
        try:
            value = cast(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"not {kind}: {text!r}") from None
        if cast is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value < low or (low_open and value == low) or (high is not None and value > high):
            fmt = (lambda v: str(v)) if cast is int else (lambda v: f"{v:g}")
            lo = f"> {fmt(low)}" if low_open else f">= {fmt(low)}"
            hi = f" and <= {fmt(high)}" if high is not None else ""
            raise argparse.ArgumentTypeError(f"must be {lo}{hi}, got {text}")
        return value
    return parse


seconds_type = number_type(float, 0.0, low_open=True)


def time_limit_type(text: str):
    """Seconds (> 0, finite) or ``none`` for no limit."""
    return None if text.strip().lower() == "none" else seconds_type(text)


def prover_list_type(text: str) -> tuple:
    from exactcomp.provers import PROVERS

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in PROVERS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown prover {unknown[0] if unknown else repr(text)}; "
                                         f"available: {', '.join(PROVERS)}")
    return names


def count_type(text: str) -> int:
    """A count of random points: an integer from 0 to MAX_COUNT."""
    value = number_type(int, 0)(text)
    if value > MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_COUNT:,} (points are drawn and run in batches; "
                                         f"10 million already take minutes), got {text}")
    return value


seed_type = number_type(int, 0, 2 ** 63 - 1)
tolerance_type = number_type(float, 0.0)


def executor_type(text: str) -> str:
    if text in ("local", "ray") or (text.startswith("ray://") and len(text) > len("ray://")):
        return text
    raise argparse.ArgumentTypeError(f"'{text}': choose local, ray or ray://HOST:PORT")


def fraction_type(text: str) -> float:
    """A fraction in [0, 1): ``0.005`` or ``0.5%``."""
    value = (number_type(float, 0.0, 100.0)(text[:-1]) / 100.0) if text.strip().endswith("%") else number_type(float, 0.0)(text)
    if value >= 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction below 1 (0.005 or 0.5%), got {text}")
    return value
