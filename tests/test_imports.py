"""The package's modules import one another one way: no import circles.

The graph is read from the source (nothing is imported), so a circle is found even where it works
today because one side imports lazily: a function-level import is an edge like any other, since
it runs as soon as the function does. Only imports under ``if TYPE_CHECKING:`` are left out: they
never run. An import of a package itself (``from loadbench.sim import SimConfig``) is an edge to
its ``__init__``; an import from a module inside it is an edge to that module alone (the parents'
``__init__`` modules run too, but a package importing its own submodules is not a circle).
Subcommands dispatched by name (``loadbench.cli.COMMANDS``) are not imports and are not edges.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "loadbench"

#: An import graph: module -> {imported module: line of the first such import}.
Graph = dict[str, dict[str, int]]


def module_files(package_dir: Path) -> dict[str, Path]:
    """Every module of the package in ``package_dir``, by dotted name (a package by its own name)."""
    root = package_dir.parent
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node``, at any depth, except those that run only for a type checker."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                if isinstance(other, ast.Import | ast.ImportFrom):
                    yield other
                else:
                    yield from _imports(other)
        else:
            yield from _imports(child)


def _targets(node: ast.Import | ast.ImportFrom, package: str, modules: dict[str, Path]) -> Iterator[str]:
    """The package's modules that ``node`` imports; ``package`` is where a relative import starts."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names if alias.name in modules)
        return
    if node.level:
        parts = package.split(".")
        base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        if submodule in modules:
            yield submodule
        elif base in modules:
            yield base


def import_graph(package_dir: Path) -> Graph:
    """Which of the package's modules each module imports, and on which line first."""
    modules = module_files(package_dir)
    graph: Graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            for target in _targets(node, package, modules):
                if target != name:
                    edges.setdefault(target, node.lineno)
        graph[name] = edges
    return graph


def _reachable(graph: Graph, start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def circles(graph: Graph) -> list[list[str]]:
    """The strongly connected components with more than one module: in each, every module imports
    every other, directly or through the rest. Sorted, each sorted."""
    reach = {name: _reachable(graph, name) for name in graph}
    found = set()
    for name in graph:
        component = frozenset(other for other in reach[name] if name in reach[other])
        if len(component) > 1:
            found.add(component)
    return sorted(sorted(c) for c in found)


def describe(graph: Graph, component: list[str]) -> str:
    """A circle and the imports that make it: ``module:line -> module`` for each edge inside it."""
    edges = [
        f"    {source}:{line} -> {target}"
        for source in component
        for target, line in sorted(graph[source].items())
        if target in component
    ]
    return "  " + " <-> ".join(component) + "\n" + "\n".join(edges)


def test_the_package_has_no_import_circles() -> None:
    graph = import_graph(PACKAGE_DIR)
    assert len(graph) > 50, "the package's modules were not found"
    found = circles(graph)
    assert not found, f"{len(found)} import circles:\n" + "\n".join(describe(graph, c) for c in found)


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root / "pkg"


def test_the_check_finds_lazy_and_relative_circles_and_excuses_type_checking(tmp_path: Path) -> None:
    package = _write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import A\n",
            # a <-> b: one side at module level, the other inside a function
            "pkg/a.py": "import pkg.b\nA = 1\n",
            "pkg/b.py": "def f():\n    from pkg.a import A\n    return A\n",
            # c -> a only for the type checker: not an edge
            "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import A\n",
            # sub.d <-> sub.e <-> pkg.f through relative imports of both levels
            "pkg/sub/__init__.py": "",
            "pkg/sub/d.py": "from . import e\n",
            "pkg/sub/e.py": "from ..f import g\n",
            "pkg/f.py": "def g():\n    from .sub.d import e\n",
            # typing.TYPE_CHECKING spelled out, and an else branch that does run
            "pkg/h.py": "import typing\nif typing.TYPE_CHECKING:\n    import pkg.i\nelse:\n    import pkg.i\n",
            "pkg/i.py": "import pkg.h\n",
            "pkg/j.py": "import typing\nif typing.TYPE_CHECKING:\n    import pkg.k\n",
            "pkg/k.py": "import pkg.j\nimport os\nfrom pkg import nothing_here\n",
        },
    )
    graph = import_graph(package)
    assert graph["pkg.sub.d"] == {"pkg.sub.e": 1}
    assert graph["pkg.sub.e"] == {"pkg.f": 1}
    assert graph["pkg.f"] == {"pkg.sub.d": 2}
    assert graph["pkg.c"] == {}
    assert graph["pkg.k"] == {"pkg.j": 1, "pkg": 3}
    assert circles(graph) == [
        ["pkg.a", "pkg.b"],
        ["pkg.f", "pkg.sub.d", "pkg.sub.e"],
        ["pkg.h", "pkg.i"],
    ]
    report = describe(graph, ["pkg.a", "pkg.b"])
    assert "pkg.b:2 -> pkg.a" in report and "pkg.a:1 -> pkg.b" in report


def test_the_contract_depends_on_no_box() -> None:
    # The leaf types every box shares: a box that depends on them must not, through them,
    # depend on another box (which is why they left metrics/, workloads/ and load/).
    graph = import_graph(PACKAGE_DIR)
    contract = {m for m in graph if m == "loadbench.contract" or m.startswith("loadbench.contract.")}
    assert contract >= {"loadbench.contract.record", "loadbench.contract.prompt", "loadbench.contract.sender"}
    outside = {f"{m} -> {t}": line for m in contract for t, line in graph[m].items() if t not in contract}
    assert not outside, outside
