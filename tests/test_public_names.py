"""The attribute paths the README names work after a plain ``import exactcomp`` (issue 20, point 5),
while ``import exactcomp.cli.main`` stays light (no numpy: the CLI takes charge of Ctrl-C first)."""

from __future__ import annotations

import subprocess
import sys


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_readme_attribute_paths_after_import_exactcomp():
    proc = _python(
        "import exactcomp\n"
        "assert callable(exactcomp.formulations.bigm.build_bigm)\n"
        "assert callable(exactcomp.solvers.get_solver)\n"
        "assert exactcomp.solvers.get_solver('highs').name == 'highs'\n"
        "from exactcomp.verify.compare import TOLERANCES\n"
        "assert exactcomp.TOLERANCES is TOLERANCES and set(TOLERANCES) == {'float64', 'float32', 'float16'}\n"
        "assert callable(exactcomp.verify)   # still the API function, not the submodule\n"
        "assert 'TOLERANCES' in dir(exactcomp)\n"
        "import exactcomp.formulations, exactcomp.solvers\n"
        "assert exactcomp.formulations.REGISTRY and exactcomp.solvers.REGISTRY\n")
    assert proc.returncode == 0, proc.stderr


def test_unknown_names_are_still_attribute_errors():
    proc = _python(
        "import exactcomp\n"
        "for name in ('nonexistent', 'formulation', '_private', 'bigm'):\n"
        "    try:\n"
        "        getattr(exactcomp, name)\n"
        "    except AttributeError as exc:\n"
        "        assert name in str(exc)\n"
        "    else:\n"
        "        raise SystemExit(f'exactcomp.{name} exists')\n"
        "assert not hasattr(exactcomp, 'nonexistent')\n")
    assert proc.returncode == 0, proc.stderr


def test_the_cli_module_and_the_package_import_without_numpy():
    proc = _python(
        "import sys\n"
        "import exactcomp, exactcomp.cli.main\n"
        "heavy = [m for m in ('numpy', 'scipy', 'onnx', 'exactcomp.formulations', 'exactcomp.solvers') if m in sys.modules]\n"
        "assert not heavy, heavy\n")
    assert proc.returncode == 0, proc.stderr


def test_every_building_block_the_readme_names_resolves_after_import_exactcomp():
    import re
    import subprocess
    import sys
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    not_attributes = {"exactcomp.report", "exactcomp.witnesses.sha256"}   # a schema name, a metadata key
    paths = sorted(set(re.findall(r"`(exactcomp(?:\.[A-Za-z_]\w*)+)", text)) - not_attributes)
    assert "exactcomp.io.onnx_import.import_model" in paths
    code = "import exactcomp\nfor p in %r:\n    eval(p)\n" % (paths,)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
