"""Helpers of the fault suite: run the real CLI in a subprocess and watch every file around it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path


def cli(*args, cwd=None, timeout=300, **kwargs) -> subprocess.CompletedProcess:
    """``python -m exactcomp ARGS`` as a user runs it (process-level stdout and signal handling)."""
    return subprocess.run([sys.executable, "-m", "exactcomp", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, **kwargs)


def popen(*args, cwd=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "exactcomp", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd)


def snapshot(*folders: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folders`` (symlinks recorded as their target)."""
    out = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_symlink():
                out[str(path)] = "-> " + os.readlink(path)
            elif path.is_file():
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def changes(before: dict[str, str], after: dict[str, str]) -> set[str]:
    """Paths created, removed or modified between two snapshots."""
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int = 2, needle: str | None = None) -> None:
    """Exit ``code``, exactly one line on stderr starting with the program name, no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("exactcomp"), proc.stderr
    assert "Traceback" not in proc.stderr
    if needle is not None:
        assert needle in lines[0], lines[0]


def handler_installed(pid: int, signum: int) -> bool:
    """Whether process ``pid`` catches ``signum`` (Linux: the SigCgt mask in /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False
