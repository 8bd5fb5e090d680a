"""Feature interactions: dot_interaction on its kernel (pair tables in the source), fm as a loop."""
from __future__ import annotations

from xrec.ir import Op
from xrec.ir.printer import print_node
from xrec.lowering import register_lowering

from ..arena import reads_of, writes_of
from ..context import matrix_parts
from ..errors import TARGET, unsupported
from ..plan import FMStep, InteractionStep


@register_lowering(Op.DOT_INTERACTION, TARGET)
def lower_dot_interaction(ctx, n):
    src = n.inputs[0]
    t = ctx.g.type_of(src)
    F, D = int(t.shape[1]), int(t.shape[2])
    v = ctx.view_of(src, n)
    if not (v.rowwise and v.ld != "0" and v.strides == (D, 1)):
        v = ctx.copy_contiguous(src, v, n)
    out = ctx.out_view(n)
    pairs = n.attr("pairs")
    name = f"kPairs{len(ctx.pair_tables)}"
    ctx.pair_tables[name] = ([int(p[0]) for p in pairs], [int(p[1]) for p in pairs])
    ptr, ld, _ = matrix_parts(out)
    ctx.add(InteractionStep(node=n.name, text=print_node(ctx.g, n), reads=reads_of(v), writes=writes_of(out),
                            t=v.ptr, ldt=v.ld, F=F, D=D, pairs=name, P=len(pairs), out=ptr, ldo=ld))
    ctx.set(n, out)


@register_lowering(Op.FM, TARGET)
def lower_fm(ctx, n):
    v = ctx.view_of(n.inputs[0], n)
    if len(v.dims) != 2:
        raise unsupported(n, "fm input must be [B, F, K]")
    out = ctx.out_view(n)
    ctx.add(FMStep(node=n.name, text=print_node(ctx.g, n), reads=reads_of(v), writes=writes_of(out), v=v, out=out))
    ctx.set(n, out)
