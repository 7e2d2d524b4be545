"""The package's shape, checked from its source (issue 22): no import cycles, no lower stage importing a
higher one, no module over 300 lines and no function over 60 lines (beyond the listed debts, which may only
shrink).

Imports are read with :mod:`ast`, those inside functions (lazy imports) included: an import deferred to call
time is still a dependency. ``import a.b.c`` and ``from a.b import c`` depend on the deepest module named
that exists (a package's ``__init__`` counts as the package).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: source folder -> the package it installs as (pyproject's package-dir)
SOURCES = {"exactcomp": "exactcomp", "formulations": "exactcomp.formulations", "solvers": "exactcomp.solvers"}

#: stage of each module or package (longest prefix wins); a module may import its own stage or lower ones.
#: ir < io, bounds < witnesses, provers, bab < rewrite < verify < pipeline < api < cli (issue 22).
STAGES = {
    "exactcomp.errors": 0, "exactcomp.interrupts": 0, "exactcomp.version": 0, "exactcomp.registry": 0,
    "exactcomp.ir": 1,
    "exactcomp.domain": 2, "exactcomp.domains": 2, "exactcomp.validity": 2, "exactcomp.results": 2,
    "exactcomp.options": 2, "exactcomp.executors": 2, "exactcomp.formulations": 2, "exactcomp.solvers": 2,
    "exactcomp.io": 3, "exactcomp.ops": 3,
    "exactcomp.bounds": 4,
    "exactcomp.witnesses": 5, "exactcomp.bab": 5,
    "exactcomp.provers": 6,
    "exactcomp.analysis": 7,
    "exactcomp.rewrite": 8,
    "exactcomp.verify": 9,
    "exactcomp.pipeline": 10, "exactcomp.report": 10,
    "exactcomp.api": 11,
    "exactcomp.finetune": 12,
    "exactcomp.cli": 13,
    "exactcomp.__main__": 14, "exactcomp": 14,
}

#: modules over 300 lines and functions over 60 lines still to split (issue 22); remove entries as they go.
LONG_MODULES: set = set()
LONG_FUNCTIONS: set = set()


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in SOURCES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    resolved = {_resolve(t) for t in targets if t.split(".")[0] == "exactcomp"}
    return {t for t in resolved if t and t != module}


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _stage(module: str) -> int:
    name = module
    while name not in STAGES:
        name = name.rpartition(".")[0]
        assert name, f"{module} has no stage in STAGES: give it one"
    return STAGES[name]


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for root in sorted(GRAPH):
        if root in index:
            continue
        work = [(root, iter(sorted(GRAPH[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(GRAPH[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_checker_sees_a_cycle_and_an_upward_import():
    """The checks can fail: a made-up graph with a cycle, and a stage violation, are found."""
    global GRAPH
    saved = GRAPH
    try:
        GRAPH = {"exactcomp.ir.a": {"exactcomp.io.b"}, "exactcomp.io.b": {"exactcomp.ir.a"}}
        assert _cycles() == [["exactcomp.io.b", "exactcomp.ir.a"]]
    finally:
        GRAPH = saved
    assert _stage("exactcomp.ir.network") < _stage("exactcomp.cli.main")


def test_the_version_is_the_one_pyproject_declares():
    import tomllib

    from exactcomp.version import __version__

    assert __version__ == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_no_import_cycles():
    assert _cycles() == []


def test_no_lower_stage_imports_a_higher_one():
    upward = sorted(f"{m} (stage {_stage(m)}) imports {t} (stage {_stage(t)})"
                    for m, targets in GRAPH.items() for t in targets if _stage(t) > _stage(m))
    assert upward == []


def _long_functions(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    return {f"{module}.{node.name}" for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60}


@pytest.mark.parametrize("limit, debts, find", [
    (300, LONG_MODULES, lambda m, p: {m} if len(p.read_text().splitlines()) > 300 else set()),
    (60, LONG_FUNCTIONS, lambda m, p: _long_functions(p, m)),
])
def test_no_long_modules_or_functions_beyond_the_listed_debts(limit, debts, find):
    over = set().union(*(find(m, p) for m, p in MODULES.items()))
    assert over - debts == set(), f"over {limit} lines: split them"
    assert debts - over == set(), "paid debts: remove them from the list"


def test_every_plug_in_point_is_one_kind_of_registry():
    """One registry style (issue 22): names -> objects or lazy 'module:attr', one error for unknown names."""
    import exactcomp.executors
    import exactcomp.formulations
    import exactcomp.provers
    import exactcomp.solvers
    from exactcomp.analysis import STRATEGIES
    from exactcomp.errors import ExactcompError
    from exactcomp.finetune.scores import SCORES
    from exactcomp.registry import Registry

    registries = [exactcomp.solvers.REGISTRY, exactcomp.formulations.REGISTRY, exactcomp.provers.PROVERS,
                  exactcomp.executors.EXECUTORS, STRATEGIES, SCORES]
    for registry in registries:
        assert type(registry) is Registry and registry.kind
        for name in registry:
            if registry is not exactcomp.solvers.REGISTRY:    # optional libraries may be missing here
                assert registry.load(name) is not None
        with pytest.raises(ExactcompError, match=f"unknown {registry.kind} 'nope'; available: {next(iter(registry))}"):
            registry.load("nope")
    mine = Registry("thing", {"path": "os.path:join", "obj": len})
    assert mine.load("path")("a", "b") == str(Path("a") / "b") and mine.load("obj") is len


def test_no_private_name_is_imported_from_another_module():
    """A name that starts with ``_`` is its module's own business (issue 22): share it under a public name."""
    found = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("exactcomp"):
                found += [f"{module} imports {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert found == []
