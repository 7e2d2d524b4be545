"""The command line: parsing (:mod:`exactcomp.cli.main`), the commands (``commands``, ``compress``,
``bench``), the report and its table (``report``), progress display (``progress``) and signal handling
(``signals``). Kept light: heavy modules load only when a command runs."""

from exactcomp.cli.main import entry, main

__all__ = ["entry", "main"]
