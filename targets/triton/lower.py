"""Lower the optimized IR to a ``Program``: Triton kernel launches, views, and (listed) torch steps.

The driver runs these planning steps in order on one
:class:`~.context.LowerContext`, each in its own file with its own test
(tests/targets/triton/test_<file>.py):

    inputs      signature.py   buffers and views of the user's inputs; batch symbols
    params      signature.py   views of the parameters in weights.bin
    fusion      fusion.py      concatenations that absorb DLRM's dot interaction
    clusters    clusters.py    connected elementwise / row-reduction work -> one generated kernel each
    schedule    schedule.py    units (nodes, clusters) in a dependency order close to the IR's
    placement   placement.py   values written straight into their slot of a concatenation
    emit        rules/         per unit: a cluster's kernel (rules/cluster.py) or the node's rule
                               from xrec.lowering (register_lowering(op, "triton")); a missing or
                               declined rule takes the op's listed torch fallback (rules/fallback.py)

Per op (rules/): EMBEDDING_BAG_GROUP / EMBEDDING_BAG -> ``embedding_bag_group_kernel`` (every
table of one row format in one launch); MLP / LINEAR / CROSS_LAYER -> ``linear_kernel`` per layer
(bias, activation or the cross formula in the epilogue); DOT_INTERACTION -> ``interaction_kernel``,
fused with DLRM's following ``cat(dense, interactions)``; FM -> ``fm_kernel``; RESHAPE / SLICE /
EXPAND / PERMUTE are views; CAT along columns costs nothing for inputs written into their slots.
"""
from __future__ import annotations

from typing import Callable

from xrec.ir import Graph
from xrec.lowering import TargetLowering

from .clusters import find_clusters
from .context import ERR, LowerContext
from .options import TritonOptions
from .fusion import find_interaction_fusions
from .placement import place_concat_inputs
from .program import ERRFLAG, Buffer, Program
from .rules import TARGET, emit_cluster, lower_node
from .schedule import schedule
from .signature import declare_inputs, declare_params, weights_layout

__all__ = ["STAGES", "context", "lower", "run_stages", "weights_layout"]


def _emit(ctx: LowerContext) -> None:
    for unit in ctx.schedule:
        if isinstance(unit, int):
            emit_cluster(ctx, ctx.clusters[unit])
        else:
            lower_node(ctx, ctx.g.node(unit))
    if ctx.errors:
        ctx.buffers[ERR] = Buffer(ERR, ERRFLAG, "i32", (2 * len(ctx.errors),))


# the planning steps, in order (name, step); each reads what the earlier ones decided
STAGES: list[tuple[str, Callable[[LowerContext], None]]] = [
    ("inputs", declare_inputs),
    ("params", declare_params),
    ("fusion", find_interaction_fusions),
    ("clusters", find_clusters),
    ("schedule", schedule),
    ("placement", place_concat_inputs),
    ("emit", _emit),
]


def run_stages(ctx: LowerContext, until: str | None = None) -> LowerContext:
    """Run the planning steps on ``ctx`` in order, stopping after the one named ``until`` (for tests/dumps)."""
    names = [name for name, _ in STAGES]
    if until is not None and until not in names:
        raise ValueError(f"no triton lowering stage {until!r}; stages: {', '.join(names)}")
    for name, stage in STAGES:
        stage(ctx)
        if name == until:
            break
    return ctx


def context(g: Graph, layout: dict, options, lowering: TargetLowering | None = None) -> LowerContext:
    """The LowerContext of one compile (``options``: TritonOptions or a dict of them)."""
    options = TritonOptions.parse(options)
    return LowerContext(g, layout, options, lowering or TargetLowering(TARGET, strict=options.strict))


def lower(g: Graph, layout: dict, options, lowering: TargetLowering | None = None) -> tuple[Program, dict[str, str]]:
    """The program for ``g`` with parameters at ``layout`` (ArtifactWriter.write_weights) and its
    generated kernel sources (name -> source). ``lowering`` records the fallbacks taken (default: a
    fresh one honouring ``options["strict"]``)."""
    ctx = run_stages(context(g, layout, options, lowering))
    outs = [ctx.views[o] for o in g.outputs]
    prog = Program(name=g.name, buffers=ctx.buffers, steps=ctx.steps, outputs=outs, inputs=ctx.inputs,
                   symbols=ctx.symbols, errors=ctx.errors, err_buffer=ERR if ctx.errors else None,
                   options=ctx.opts.program_options())
    return prog, ctx.sources
