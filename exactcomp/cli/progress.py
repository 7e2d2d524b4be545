"""Progress display for long phases (rich), with a silent fallback.

An analysis calls ``progress.phase(name, total)`` and then the returned ``advance(done, total, note="")``.
Every bar shows the phase, the count done out of the total, a note (e.g. open candidates), the time
spent and an estimate of the time left.
"""

from __future__ import annotations

from contextlib import contextmanager


class RichProgress:
    """Draws one bar per phase on stderr while it runs."""

    def __init__(self, console):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[note]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                  TimeRemainingColumn(), console=console, transient=True)

    def __enter__(self):
        self._progress.start()
        return self

    def __exit__(self, *exc):
        self._progress.stop()

    def phase(self, name: str, total: int):
        task = self._progress.add_task(name, total=max(total, 1), note="")

        def advance(done: int, total_: int, note: str = ""):
            self._progress.update(task, completed=done, total=max(total_, 1), note=note)

        return advance


@contextmanager
def progress_display(console, enabled: bool):
    if not enabled:
        yield None
        return
    with RichProgress(console) as progress:
        yield progress
