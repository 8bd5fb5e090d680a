"""The modules of xrec.bench import each other without cycles (imports inside functions count too)."""
from __future__ import annotations

import ast
from pathlib import Path

import xrec.bench

PACKAGE = "xrec.bench"


def import_graph(folder: Path, package: str) -> dict[str, set[str]]:
    """module -> the modules of ``package`` it imports anywhere in its source (top level or in a function)."""
    modules = {p.stem: p for p in folder.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        here = package if name == "__init__" else f"{package}.{name}"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package if node.level == 1 else package.rsplit(".", node.level - 1)[0]
                    mod = f"{base}.{node.module}" if node.module else base
                else:
                    mod = node.module or ""
                # `from . import report` names a module; `from .timing import measure` names its module
                targets = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}".removeprefix(
                    package + ".") in modules] or [mod]
            for t in targets:
                if t == package or t.startswith(package + "."):
                    short = t.removeprefix(package).removeprefix(".").split(".")[0] or "__init__"
                    if short in modules and short != name:
                        edges.add(short)
        graph[here.removeprefix(package).removeprefix(".") or "__init__"] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle found by depth-first search, each once (rotated to start at its least name)."""
    found: set[tuple[str, ...]] = set()

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                cyc = path[path.index(nxt):]
                k = cyc.index(min(cyc))
                found.add(tuple(cyc[k:] + cyc[:k]))
            else:
                visit(nxt, path + [nxt])

    for start in sorted(graph):
        visit(start, [start])
    return [list(c) for c in sorted(found)]


def test_bench_modules_import_each_other_without_cycles():
    graph = import_graph(Path(xrec.bench.__file__).parent, PACKAGE)
    assert {"cli", "systems", "timing", "report", "model_bench", "kernel_bench"} <= set(graph)
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle_through_a_function_level_import(tmp_path):
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "a.py").write_text("from .b import thing\n")
    (tmp_path / "b.py").write_text("def f():\n    from . import c\n")
    (tmp_path / "c.py").write_text("import pkg.a\n")
    (tmp_path / "d.py").write_text("from .a import thing\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph == {"__init__": set(), "a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
