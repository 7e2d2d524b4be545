"""The package list in pyproject.toml names every subpackage, so that `pip install .` (not only an
editable install) ships all of exactcomp."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {"exactcomp." + ".".join(p.parent.relative_to(ROOT / "exactcomp").parts)
             for p in (ROOT / "exactcomp").rglob("__init__.py") if p.parent != ROOT / "exactcomp"}
    found |= {"exactcomp", "exactcomp.formulations", "exactcomp.solvers"}
    assert found == listed
