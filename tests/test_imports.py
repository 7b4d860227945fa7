"""d2v's module-level import graph has no cycles.

Static: every module under d2v/ is parsed with `ast`, and an edge drawn for each import that runs when
the module is imported (module level, including under `if`/`try` and in class bodies; not inside
functions, which run later, nor under `if TYPE_CHECKING:`, which never runs). A module depends on
the modules it names: `import a.b` names a.b; `from a import x` (or `from . import x`) names a, whose
namespace it reads, and also a.x when x is a submodule. The parent packages Python imports implicitly
are not edges: every submodule would otherwise depend on its package's __init__.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

import d2v

ROOT = Path(d2v.__file__).parent


def discover(root: Path = ROOT) -> dict[str, tuple[Path, bool]]:
    """Module name -> (source file, is a package) for every .py file under `root`."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = (path, is_package)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_level_imports(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements that execute when the module is imported."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue  # runs when called, not on import
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from module_level_imports(node.body)
            yield from module_level_imports(node.orelse)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                for child in getattr(node, field, []) or []:  # statements, except handlers, match cases
                    yield from module_level_imports([child] if isinstance(child, ast.stmt) else child.body)


def imports_of(source: str, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules of `known` that `module` (its source given) imports at module level."""
    package = module if is_package else module.rpartition(".")[0]
    edges: set[str] = set()
    for node in module_level_imports(ast.parse(source).body):
        if isinstance(node, ast.Import):
            edges.update(alias.name for alias in node.names if alias.name in known)
            continue
        base_parts = package.split(".")
        if node.level > 1:
            base_parts = base_parts[: len(base_parts) - (node.level - 1)]
        base = ".".join(base_parts) if node.level else ""
        if node.module:
            base = f"{base}.{node.module}" if base else node.module
        if base in known:
            edges.add(base)
        edges.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known)
    edges.discard(module)
    return edges


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = discover(root)
    known = set(modules)
    return {
        name: imports_of(path.read_text(encoding="utf-8"), name, is_package, known)
        for name, (path, is_package) in modules.items()
    }


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One cycle as a path that returns to its start (a -> b -> a), or None if the graph is acyclic."""
    state: dict[str, str] = {}  # "open" while on the DFS stack, then "done"
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for child in sorted(graph.get(node, ())):
            if state.get(child) == "open":
                return stack[stack.index(child):] + [child]
            if child not in state and (cycle := visit(child)) is not None:
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_d2v_has_no_import_cycles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle in d2v: " + " -> ".join(cycle or [])


def test_the_graph_sees_the_real_edges() -> None:
    graph = import_graph()
    assert {"d2v.report.build"} <= graph["d2v.report"]  # the package's __init__
    # backend -> s3 only inside open_backend, and s3 never back to backend: both build on interface.
    assert "d2v.artifacts.interface" in graph["d2v.artifacts.s3"] and "d2v.artifacts.backend" not in graph["d2v.artifacts.s3"]
    assert "d2v.artifacts.s3" not in graph["d2v.artifacts.backend"]  # imported inside open_backend only
    assert "d2v.report" not in graph["d2v.report.sections"]
    assert len(graph) > 80 and "d2v.train.schedules" in graph["d2v.eval.ctc"]


KNOWN = {"p", "p.a", "p.b", "p.sub", "p.sub.c", "p.sub.d", "p.e", "p.f"}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import p.a\nimport os", {"p.a"}),
        ("from p import a, b", {"p", "p.a", "p.b"}),
        ("from . import d", {"p.sub", "p.sub.d"}),  # relative, from p.sub.c
        ("from .. import e\nfrom ..f import g", {"p", "p.e", "p.f"}),
        ("from p.sub.d import something", {"p.sub.d"}),
        ("def later():\n    import p.a\nasync def later2():\n    from p import b", set()),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import p.a\nelse:\n    import p.b", {"p.b"}),
        ("try:\n    import p.a\nexcept ImportError:\n    import p.b\nclass K:\n    import p.e", {"p.a", "p.b", "p.e"}),
        ("try:\n    def f():\n        import p.a\nfinally:\n    pass\nwith x:\n    from p import f", {"p", "p.f"}),
        ("import p.sub.c", set()),  # itself
    ],
)
def test_import_forms(source: str, expected: set[str]) -> None:
    assert imports_of(source, "p.sub.c", False, KNOWN) == expected


def test_a_package_resolves_relative_imports_against_itself() -> None:
    assert imports_of("from . import c\nfrom .d import x", "p.sub", True, KNOWN) == {"p.sub.c", "p.sub.d"}


def test_find_cycle_names_the_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"pkg": {"pkg.build"}, "pkg.build": {"pkg.sections"}, "pkg.sections": {"pkg"}}) == [
        "pkg", "pkg.build", "pkg.sections", "pkg",
    ]
    assert find_cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) is None  # a diamond is fine
    assert find_cycle({"a": {"a"}}) == ["a", "a"]
