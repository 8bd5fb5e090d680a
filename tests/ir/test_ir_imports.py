"""The IR package's modules import in one direction (no cycles), so each can be read and loaded on its own."""
import ast
from pathlib import Path

import xrec.ir

IR = Path(xrec.ir.__file__).parent


def _runtime_nodes(tree):
    """Every node, except those under ``if TYPE_CHECKING:`` (imports for annotations only)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _local_imports(path: Path) -> set[str]:
    """Sibling modules a module imports at run time (function-level imports count too)."""
    out = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
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
    assert "graph" not in deps["printer"] and "printer" in deps["graph"]


def test_a_graph_reprs_in_one_line_and_prints_as_its_text_form():
    from conftest import imported_zoo
    from xrec.ir import print_graph
    _, g = imported_zoo("dlrm-small")
    assert repr(g).startswith("Graph('dlrm-small', ") and "\n" not in repr(g)
    assert str(g) == print_graph(g) and str(g).startswith("graph dlrm-small(")
