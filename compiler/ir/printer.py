"""Textual form of the IR (what `xrec ir` prints)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .features import GroupFeature
from .ops import Op
from .types import dim_str

if TYPE_CHECKING:                      # graph.py imports this module (Graph.__str__), not the reverse
    from .graph import Graph, Node


def _fmt_attr(v) -> str:
    if isinstance(v, GroupFeature):
        extra = ""
        if v.padding_idx is not None:
            extra += f",pad={v.padding_idx}"
        if v.has_psw:
            extra += ",psw"
        return f"{v.feature}:{v.mode}[{v.num_rows}x{v.dim}{extra}]"
    if isinstance(v, tuple):
        if len(v) > 12 and all(isinstance(x, tuple) for x in v):
            return f"<{len(v)} entries>"
        return "(" + ", ".join(_fmt_attr(x) for x in v) + ")"
    if hasattr(v, "value") and hasattr(v, "name") and not isinstance(v, (int, float, str)):
        return str(v.value)
    if isinstance(v, float):
        return repr(v)
    if not isinstance(v, (int, str, type(None), bool)):
        return dim_str(v)
    return str(v)


def print_node(g: Graph, n: Node) -> str:
    args = []
    for i in n.inputs:
        src = g.by_name.get(i)
        if src is not None and src.op is Op.PARAM:
            args.append("@" + src.attr("name"))
        else:
            args.append("%" + i)
    attrs = ", ".join(f"{k}={_fmt_attr(v)}" for k, v in n.attrs)
    body = f"{n.op.value}({', '.join(args)}{'; ' + attrs if attrs else ''})"
    return f"  %{n.name} = {body} : {n.type}"


def print_graph(g: Graph, show_params: bool = False) -> str:
    ins = [n for n in g.nodes if n.op is Op.INPUT]
    sig = ", ".join(f"%{n.name}: {n.type}" for n in ins)
    lines = [f"graph {g.name}({sig}) {{"]
    nparams = 0
    for n in g.nodes:
        if n.op is Op.INPUT:
            continue
        if n.op is Op.PARAM:
            nparams += 1
            if not show_params:
                continue
        lines.append(print_node(g, n))
    lines.append("  return " + ", ".join("%" + o for o in g.outputs))
    lines.append("}")
    mb = g.param_bytes() / 2**20
    lines.append(f"// {len(g.nodes)} values, {nparams} parameters ({mb:.1f} MiB)")
    return "\n".join(lines)
