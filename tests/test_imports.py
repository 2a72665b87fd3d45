"""The package's import graph has no circle: each module's place is clear from its imports.

Every `import` of an ibutils module counts, also those inside functions (a lazy import is
still a dependency), read from the source without importing anything.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import ibutils

PACKAGE = Path(ibutils.__file__).parent


def _imports(path: Path) -> set[str]:
    """The ibutils modules that `path` imports (`ibutils` itself is `__init__`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "ibutils":
                    found.add(parts[1] if len(parts) > 1 else "__init__")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] != "ibutils":
                continue
            if len(parts) > 1:
                found.add(parts[1])
            else:  # from ibutils import mi, plots
                found |= {a.name for a in node.names if (PACKAGE / f"{a.name}.py").exists()}
    return found


def import_graph() -> dict[str, set[str]]:
    return {p.stem: _imports(p) - {p.stem} for p in sorted(PACKAGE.glob("*.py"))}


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_circles_are_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert circles(graph) == [{"a", "b", "c"}]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_imports_are_read_from_source():
    graph = import_graph()
    assert {"mi", "train"} <= graph["infoplane"]
    assert graph["mi"] == {"gaussian", "pairwise"}
    assert graph["pairwise"] == {"vecmath"} and graph["vecmath"] == set()
    assert "vecmath" in graph["train"]
    assert "gaussian" in graph["linear"]


def test_no_import_circles():
    found = circles(import_graph())
    assert not found, f"import circles in ibutils: {found}"


def test_estimators_and_the_probe_sit_low():
    graph = import_graph()
    assert graph["gaussian"] == set() and graph["progress"] == set()
    assert graph["estimators"] == {"mi"}, graph["estimators"]
    assert graph["probe"] <= {"estimators", "mi", "plots", "progress"}, graph["probe"]
    assert "estimators" in graph["infoplane"] and "estimators" in graph["experiments"]


def test_the_api_page_lists_modules_from_the_bottom_of_the_import_graph_up():
    """book/api.md says so: each module on it imports only modules listed before it (or none of
    the page's)."""
    text = (PACKAGE.parents[0] / "book" / "api.md").read_text(encoding="utf-8")
    listed = re.search(r"\.\. autosummary::\n\n((?:   \S+\n)+)", text).group(1).split()
    modules = [name.removeprefix("ibutils.") for name in listed]
    graph = import_graph()
    for position, module in enumerate(modules):
        later = graph[module] & set(modules[position + 1:])
        assert not later, f"book/api.md lists {module} before {sorted(later)}, which it imports"
    sections = re.findall(r"^\.\. automodule:: ibutils\.(\w+)", text, flags=re.M)
    assert sections == modules, "the sections are not in the list's order"
