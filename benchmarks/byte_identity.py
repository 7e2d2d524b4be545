"""Refactoring guard (issue 22): the written model of every shipped model and of the 18 benchmark networks is
byte-identical between an earlier commit (``--before``, default: the commit recorded below) and the working
tree, in one run, side by side.

    python benchmarks/byte_identity.py [--before REF] [--budget 10] [--only NAME ...] [--out DIR]

For each model, two comparisons:

- ``bounds``: ``exactcomp compress --strategy bounds`` (interval/CROWN bounds and the seeded witness search:
  deterministic), run by both versions; the written ONNX files must be equal byte for byte.
- ``replay``: the earlier version runs the default strategy for ``--budget`` seconds and writes its report;
  then both versions replay that report (``--resume REPORT --strategy bounds``: the same decisions, no new
  proofs) and write a model; equal byte for byte. A time budget alone is not reproducible across runs (the
  machine's load moves it), the replay is: it checks import, the decisions' use, rewriting and export.

Both also compare the report's set of JSON keys (the CLI's fields must not change; the working tree may add only
the fields of :data:`ADDED_FIELDS`, features added on purpose) and the exit codes.
The earlier version runs from a ``git worktree`` of ``--before``, laid out as the installed package
(``formulations/`` and ``solvers/`` as ``exactcomp.formulations``/``exactcomp.solvers``) on ``PYTHONPATH``,
with this venv's dependencies. The 18 networks come from ``benchmarks/train_nets.py`` (trained if absent).
Writes ``DIR/byte_identity.json`` and prints a table; exit 1 on any difference.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: the last commit before the refactoring of issue 22 began
BASELINE = "7366f9d"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default=BASELINE, help="git revision of the earlier version")
    ap.add_argument("--budget", type=float, default=10.0, help="seconds of the earlier version's default run")
    ap.add_argument("--only", nargs="*", help="model names (file stems) to run")
    ap.add_argument("--out", type=Path, default=Path("byte-identity"))
    args = ap.parse_args()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    before = _stage(args.before, args.out / "before-src")
    models = [m for m in _models() if not args.only or m[0] in args.only]
    rows = []
    for name, model, box in models:
        rows.append(_compare(name, model, box, before, args))
        print(_line(rows[-1]), flush=True)
    (args.out / "byte_identity.json").write_text(json.dumps({"before": _rev(args.before), "after": _rev("HEAD"),
                                                            "dirty": _dirty(), "rows": rows}, indent=1))
    bad = [r["model"] for r in rows if not r["identical"]]
    print(f"{len(rows) - len(bad)} of {len(rows)} models byte-identical" + (f"; differ: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


def _models() -> list:
    shipped = [(p.stem, p, p.with_suffix(".box.json")) for p in sorted((ROOT / "models").glob("*.onnx"))]
    nets = ROOT / "benchmarks" / "networks"
    if len(list(nets.glob("mnist_*.onnx"))) < 18:
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_nets.py"), "--out", str(nets)], check=True)
    return shipped + [(p.stem, p, p.with_suffix(".box.json")) for p in sorted(nets.glob("mnist_*.onnx"))]


def _stage(rev: str, where: Path) -> Path:
    """The package of revision ``rev`` laid out for ``PYTHONPATH`` (returns the directory to put on it)."""
    tree = where / "tree"
    if where.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)
        shutil.rmtree(where)
    where.mkdir(parents=True)
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev], check=True,
                   capture_output=True)
    site = where / "site"
    shutil.copytree(tree / "exactcomp", site / "exactcomp")
    for sub in ("formulations", "solvers"):
        shutil.copytree(tree / sub, site / "exactcomp" / sub)
    return site


def _run(site: Path | None, argv: list, log: Path) -> int:
    env = dict(os.environ)
    if site is not None:
        env["PYTHONPATH"] = str(site) + os.pathsep + env.get("PYTHONPATH", "")
    with open(log, "w") as out:   # run outside the checkout: the current directory comes first on sys.path
        out.write(subprocess.run([sys.executable, "-c", "import exactcomp; print('exactcomp from', exactcomp.__file__)"],
                                 env=env, cwd=log.parent, capture_output=True, text=True).stdout)
        out.flush()
        return subprocess.run([sys.executable, "-m", "exactcomp", *argv], env=env, cwd=log.parent, stdout=out,
                                      stderr=subprocess.STDOUT).returncode


def _compare(name: str, model: Path, box: Path, before: Path, args) -> dict:
    work = args.out / name
    work.mkdir(exist_ok=True)
    row = {"model": name}
    base = ["compress", str(model), "--domain", str(box), "--quiet", "--no-witnesses"]
    first = work / "before-default.report.json"
    _run(before, base + ["-o", str(work / "before-default.onnx"), "--report", str(first),
                         "--time-limit", str(args.budget)], work / "before-default.log")
    for mode, extra in (("bounds", ["--strategy", "bounds"]),
                        ("replay", ["--strategy", "bounds", "--resume", str(first)])):
        sides = {}
        for side, site in (("before", before), ("after", None)):
            out, report = work / f"{side}-{mode}.onnx", work / f"{side}-{mode}.report.json"
            code = _run(site, base + extra + ["-o", str(out), "--report", str(report)], work / f"{side}-{mode}.log")
            sides[side] = {"exit": code, "sha256": _sha(out), "keys": _keys(report), "code": _origin(work / f"{side}-{mode}.log")}
        same = (sides["before"]["sha256"] == sides["after"]["sha256"] is not None
                and "before-src" in sides["before"]["code"] and "before-src" not in sides["after"]["code"]
                and sides["before"]["exit"] == sides["after"]["exit"] and _same_fields(sides["before"]["keys"], sides["after"]["keys"]))
        row[mode] = {**sides, "identical": same}
    row["identical"] = row["bounds"]["identical"] and row["replay"]["identical"]
    return row


#: Report fields added on purpose since the baseline, by features (issue 23: the not_needed status, the payoff's
#: min_gain, gain_left and size record): the only keys the working tree may add; none may go.
ADDED_FIELDS = ("analysis.complete", "analysis.min_gain", "analysis.gain_left", "analysis.sizes", "times.payoff",
                "analysis.work_limit", "analysis.work", "analysis.stats.work")


def _same_fields(before: list | None, after: list | None) -> bool:
    if before is None or after is None:
        return before == after
    added = set(after) - set(before)
    return set(before) <= set(after) and all(
        k.startswith(ADDED_FIELDS) or k.rsplit(".", 1)[-1] == "not_needed" for k in added)


def _origin(log: Path) -> str:
    lines = log.read_text().splitlines()
    return lines[0].removeprefix("exactcomp from ") if lines else ""


def _sha(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def _keys(report: Path) -> list | None:
    """Every key path of the report's JSON (lists: their first element), sorted."""
    if not report.exists():
        return None
    paths = set()

    def walk(value, prefix):
        if isinstance(value, dict):
            for k, v in value.items():
                paths.add(prefix + k)
                walk(v, prefix + k + ".")
        elif isinstance(value, list) and value:
            walk(value[0], prefix + "[].")
    walk(json.loads(report.read_text()), "")
    return sorted(paths)


def _line(row: dict) -> str:
    cells = [f"{m}: {'same' if row[m]['identical'] else 'DIFFERENT'} ({(row[m]['after']['sha256'] or 'none')[:12]}, "
             f"exit {row[m]['before']['exit']}/{row[m]['after']['exit']})" for m in ("bounds", "replay")]
    return f"{row['model']:34s} " + "  ".join(cells)


def _rev(rev: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", rev], capture_output=True, text=True).stdout.strip()


def _dirty() -> bool:
    return bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "exactcomp", "formulations",
                                "solvers"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    sys.exit(main())
