"""Where the command line writes: a rich console on stdout or stderr, and JSON on stdout."""

from __future__ import annotations

import sys


def console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    console = Console(file=stream, highlight=False)
    if not console.is_terminal:
        console = Console(file=stream, highlight=False, width=160)
    return console


def print_json(data: dict) -> None:
    from exactcomp.io.files import json_bytes

    sys.stdout.write(json_bytes(data).decode())
    sys.stdout.flush()
