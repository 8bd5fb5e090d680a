"""Reductions over non-batch dims (sum, mean, amax, p-norm): one loop nest over the input's expression."""
from __future__ import annotations

from xrec.ir import Op
from xrec.ir.printer import print_node
from xrec.lowering import register_lowering

from ..arena import expr_buffers, writes_of
from ..context import index_vars, static_dims
from ..errors import TARGET, unsupported
from ..plan import ReduceStep

KIND = {Op.SUM: "sum", Op.MEAN: "mean", Op.AMAX: "amax", Op.NORM: "norm"}


@register_lowering(tuple(KIND), TARGET)
def lower_reduce(ctx, n):
    src = n.inputs[0]
    t = ctx.g.type_of(src)
    dims = sorted({d % t.rank for d in n.attr("dims")})
    if 0 in dims:
        raise unsupported(n, "a reduction over the batch dim")
    expr = ctx.expr_of(src, index_vars(t.rank))
    out = ctx.out_view(n)
    ctx.add(ReduceStep(node=n.name, text=print_node(ctx.g, n), reads=expr_buffers(expr), writes=writes_of(out),
                       out=out, expr=expr, in_dims=static_dims(t.shape[1:], n), reduced=tuple(d - 1 for d in dims),
                       kind=KIND[n.op], p=float(n.attr("p", 2.0))))
    ctx.set(n, out)
