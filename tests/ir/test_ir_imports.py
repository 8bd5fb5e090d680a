"""The IR package's modules import in one direction (no cycles), so each can be read and loaded on its own."""
import ast
from pathlib import Path

import xrec.ir

IR = Path(xrec.ir.__file__).parent


def _local_imports(path: Path) -> set[str]:
    """Sibling modules a module imports anywhere in its body (function-level imports count too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out.update(a.name for a in node.names)
    return out & {p.stem for p in IR.glob("*.py")}


def test_no_import_cycles_between_ir_modules():
    deps = {p.stem: _local_imports(p) for p in IR.glob("*.py") if p.stem != "__init__"}
    state: dict[str, int] = {}

    def visit(m, path):
        if state.get(m) == 1:
            raise AssertionError(f"import cycle: {' -> '.join(path + [m])}")
        if state.get(m) == 2:
            return
        state[m] = 1
        for d in sorted(deps.get(m, ())):
            visit(d, path + [m])
        state[m] = 2

    for m in sorted(deps):
        visit(m, [])
    assert "printer" not in deps["graph"] and "graph" in deps["printer"]


def test_a_graph_reprs_in_one_line_and_prints_through_the_printer():
    from conftest import imported_zoo
    from xrec.ir import print_graph
    _, g = imported_zoo("dlrm-small")
    assert repr(g).startswith("Graph('dlrm-small', ") and "\n" not in repr(g)
    assert print_graph(g).startswith("graph dlrm-small(")
