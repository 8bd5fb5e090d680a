"""Lower the optimized IR to a cpu :class:`~.plan.Program` (kernel calls, loops, buffer plan).

The driver runs these planning steps in order on one
:class:`~.context.LowerContext`, each in its own file with its own test:

    fold        fold.py       values computed from parameters alone are evaluated now (numpy
                              interpreter) and become weights
    inline      inline.py     elementwise values computed inside the loop of their one consumer
    outputs     signature.py  outputs written straight into the caller's tensors
    concat      concat.py     values written straight into their slice of a concat's buffer
    inputs      signature.py  the inputs' accepted dtypes and views
    ops         rules/        one rule per remaining op, in graph order, each reading and writing views
    copy-out    signature.py  outputs not written in place are copied
    arena       arena.py      tile buffers get arena offsets from their live ranges (first-fit)

An op that breaks row-locality (mixes batch rows) or has no rule raises
:class:`LoweringError` naming the op and its source line.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from xrec.ir import Graph, Op
from xrec.ir.printer import print_node

from . import concat, fold, inline, signature
from .arena import plan_arena
from .context import LowerContext
from .errors import LoweringError, unsupported
from .plan import Program
from .rules import rule_for

__all__ = ["LoweringError", "STAGES", "lower"]


def _fold(ctx: LowerContext) -> None:
    ctx.const_vals = fold.fold_constants(ctx.g)


def _inline(ctx: LowerContext) -> None:
    ctx.inline = inline.choose_inline(ctx.g, ctx.const_vals, ctx.rowwise)


def _ops(ctx: LowerContext) -> None:
    for n in ctx.g.nodes:
        if n.op in (Op.INPUT, Op.PARAM, Op.JAGGED) or n.name in ctx.const_vals or n.name in ctx.inline:
            if n.op is Op.JAGGED:
                signature.bind_jagged(ctx, n)
            continue
        if not ctx.rowwise(n.name):
            raise unsupported(n, f"its result {n.type} does not have the batch as leading dim: the cpu "
                                 "target runs every op row by row over the batch")
        rule_for(n)(ctx, n)


def _copy_out(ctx: LowerContext) -> None:
    signature.write_outputs(ctx)
    concat.check_placements(ctx)


def _arena(ctx: LowerContext) -> None:
    ctx.arena_bytes = plan_arena(ctx.steps, ctx.buffers)


# the planning steps, in order (name, step); each reads what the earlier ones decided
STAGES: list[tuple[str, Callable[[LowerContext], None]]] = [
    ("fold", _fold),
    ("inline", _inline),
    ("outputs", signature.plan_outputs),
    ("concat", concat.plan_concats),
    ("inputs", signature.bind_inputs),
    ("ops", _ops),
    ("copy-out", _copy_out),
    ("arena", _arena),
]


def run_stages(ctx: LowerContext, until: str | None = None) -> LowerContext:
    """Run the planning steps on ``ctx`` in order, stopping after the one named ``until`` (for tests/dumps)."""
    names = [name for name, _ in STAGES]
    if until is not None and until not in names:
        raise ValueError(f"no cpu lowering stage {until!r}; stages: {', '.join(names)}")
    for name, stage in STAGES:
        stage(ctx)
        if name == until:
            break
    return ctx


def program(ctx: LowerContext) -> Program:
    g = ctx.g
    return Program(
        name=g.name, graph_text=[print_node(g, n) for n in g.nodes if n.op not in (Op.INPUT, Op.PARAM)],
        symbols=[ctx.B.name], inputs=ctx.inputs, outputs=ctx.outputs,
        weights=list(ctx.weights.values()), bags=ctx.bags, steps=ctx.steps, buffers=ctx.buffers,
        pair_tables=ctx.pair_tables, arena_bytes=ctx.arena_bytes, bounds_check=ctx.bounds_check, notes=ctx.notes)


def lower(g: Graph, *, bounds_check: bool = True) -> tuple[Program, dict[str, np.ndarray]]:
    """The program for ``g`` and the extra arrays (folded values) its weight slots name."""
    ctx = run_stages(LowerContext(g, bounds_check=bounds_check))
    return program(ctx), ctx.extra
