"""The package layout: imports flow one way between subpackages, and the README lists the tree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "audify_batch"

# Root modules every part may import; they import no part.
ROOT = {"records", "fs"}
# What each subpackage may import from, besides itself and the root modules.
ALLOWED: dict[str, set[str]] = {
    **{name: set() for name in ROOT},
    "ingest": set(),
    "model": {"ingest"},
    "store": set(),
    "run": {"ingest", "model", "store"},
    "report": {"ingest", "model", "store"},
    "review": {"ingest", "model", "store"},
    "app": {"ingest", "model", "store", "report", "review"},
    "cli": {"ingest", "model", "store", "run", "report", "review", "app"},
    "orchestration": {"ingest", "model", "store", "run", "report"},
}


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path) -> set[str]:
    """Absolute names of the audify_batch modules ``path`` imports (at any level of the file)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {n for n in names if n.split(".")[0] == "audify_batch"}


def _part(module: str) -> str | None:
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else None


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {i for i in _imports(path) if i in modules} for name, path in modules.items()}


def test_every_module_belongs_to_a_known_part() -> None:
    parts = {_part(m) for m in _modules()} - {None}
    assert parts <= set(ALLOWED), f"parts without import rules: {parts - set(ALLOWED)}"


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_no_part_imports_upward(part: str) -> None:
    graph = _graph()
    bad = {
        (module, target)
        for module, targets in graph.items()
        if _part(module) == part
        for target in targets
        if _part(target) not in ALLOWED[part] | {part, None} | (set() if part in ROOT else ROOT)
    }
    assert not bad, f"{part} imports what it may not: {sorted(bad)}"


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target] if target in path else [node, target]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def _readme_layout() -> dict[str, set[str]]:
    """``audify_batch/<part>/`` -> the module names the README's layout section lists for it."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Layout", 1)[1].split("```", 2)[1]
    listed = {}
    for line in section.splitlines():
        match = re.match(r"\s*audify_batch/(\w+)/\s+.*?:\s*([\w, ]+)$", line)
        if match:
            listed[match.group(1)] = {name.strip() for name in match.group(2).split(",")}
    return listed


def test_readme_layout_lists_every_part_and_module() -> None:
    actual = {
        d.name: {p.stem for p in d.glob("*.py") if p.stem != "__init__"}
        for d in PACKAGE.iterdir()
        if (d / "__init__.py").is_file()
    }
    assert _readme_layout() == actual


def test_every_part_says_what_it_is_for() -> None:
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc.splitlines()) == 1, f"{init} needs a one-line docstring"
