"""Emission of a fused elementwise cluster (clusters.py): one generated kernel launch.

Not an op rule: a cluster is a unit of the schedule, lowered as a whole by
``elementwise.generate``. Inputs the kernel reads as full tiles must be row
views (else copied first); only values used outside the cluster are stored.
"""
from __future__ import annotations

from .. import elementwise as ew
from ..context import LowerContext
from ..program import Arg, Launch, Variant
from ..tiles import cdiv_grid


def cluster_outputs(ctx: LowerContext, cl: ew.Cluster) -> list[str]:
    """Members of ``cl`` used outside it (or graph outputs), in member order."""
    members = set(cl.members)
    return [m for m in cl.members
            if m in ctx.outputs or any(u.name not in members for u in ctx.g.users.get(m, []))]


def emit_cluster(ctx: LowerContext, cl: ew.Cluster) -> None:
    gen = ew.generate(ctx.g, cl, cluster_outputs(ctx, cl))
    ctx.sources.setdefault(gen.name, gen.source)
    args = []
    for j, (x, k) in enumerate(zip(gen.inputs, gen.input_kinds)):
        v = ctx.views[x]
        if k == "f" and not v.is_rows():
            v = ctx.materialize(x)
        elif k == "c" and v.strides[-1] != 1:
            v = ctx.materialize(x)
        stride = v.strides[0] if k in ("f", "r") else 0
        args += [Arg("ptr", v, name=f"X{j}"), Arg("i32", expr=stride, name=f"X{j}_rs")]
    for j, o in enumerate(gen.outputs):
        v = ctx.loc(o)
        args += [Arg("ptr", v, name=f"Y{j}"), Arg("i32", expr=v.strides[0], name=f"Y{j}_rs")]
    args.append(Arg("i32", expr=cl.R, name="R"))
    ctx.steps.append(Launch(
        kernel=gen.name, args=args,
        variants=[Variant(None, (cdiv_grid(cl.R, gen.block_r), (1, 1), (1, 1)),
                          dict(K=cl.K, BLOCK_R=gen.block_r, BLOCK_K=gen.block_k))],
        batch=cl.R, note=f"{gen.note}: " + ", ".join(f"%{m}" for m in cl.members)))
