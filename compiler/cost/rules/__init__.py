"""Cost rules: one function per op group, registered per ``xrec.ir`` Op.

A rule is ``fn(node, ctx) -> Work`` (``ctx`` a :class:`xrec.cost.context.CostContext`) registered
with :func:`register_cost` together with the stage its work belongs to. Adding an op to
``xrec.ir.ops.Op`` means adding its rule in the module of its group below (a test checks every Op
has one):

  embedding.py    EMBEDDING, EMBEDDING_BAG, EMBEDDING_BAG_GROUP, JAGGED
  dense.py        LINEAR, MATMUL, MLP
  interaction.py  DOT_INTERACTION, FM, CROSS_LAYER
  elementwise.py  unary/binary elementwise, comparisons, logic, where, reductions, layer_norm, softmax
  layout.py       INPUT, PARAM, FULL, RESHAPE, PERMUTE, EXPAND, CAT, SLICE, INDEX
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from xrec.ir.graph import Node
from xrec.ir.ops import Op

from ..work import STAGES, Work

RULE_MODULES = {"embedding": "embedding.py", "dense": "dense.py", "interaction": "interaction.py",
                "other": "elementwise.py or layout.py"}


class CostError(ValueError):
    """The cost model cannot cost a graph (an op without a rule, a bad parameter)."""


@dataclass(frozen=True)
class CostRule:
    op: Op
    stage: str
    fn: Callable[..., Work]


_RULES: dict[Op, CostRule] = {}


def register_cost(ops: Op | Iterable[Op], *, stage: str):
    """Decorator: ``fn(node, ctx) -> Work`` costs ``ops``; its work counts in ``stage``."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    ops = (ops,) if isinstance(ops, Op) else tuple(ops)

    def deco(fn):
        for op in ops:
            if op in _RULES:
                raise ValueError(f"a cost rule for {op.value} is already registered ({_RULES[op].fn.__qualname__})")
            _RULES[op] = CostRule(op, stage, fn)
        return fn
    return deco


def known_ops() -> list[Op]:
    return sorted(_RULES, key=lambda o: o.value)


def rule_for(op: Op, node: Node | None = None) -> CostRule:
    """The rule for ``op``; a :class:`CostError` naming the op and where to add a rule otherwise."""
    try:
        return _RULES[op]
    except KeyError:
        where = f" (node %{node.name}{', ' + node.loc if node is not None and node.loc else ''})" if node else ""
        raise CostError(
            f"no cost rule for op {op.value!r}{where}: add one with @register_cost(Op.{op.name}, stage=...) in "
            f"compiler/cost/rules/ (embedding.py, dense.py, interaction.py, elementwise.py or layout.py), "
            f"or cost the graph with unknown='estimate' to use the conservative default (reported); "
            f"ops with rules: {', '.join(o.value for o in known_ops())}") from None


def _read(ctx, names) -> float:
    return float(sum(ctx.nbytes(i) for i in names))


def estimate(node: Node, ctx) -> Work:
    """The conservative default for an op without a rule: it reads every input and writes its output
    once (from main memory), does 4 FLOP-equivalents per output element, and is one call."""
    from ..work import MAIN
    out = ctx.nbytes(node.name)
    flops = 4.0 * ctx.numel(node.name) if hasattr(node.type, "shape") else 0.0
    dt = node.type.dtype.value if hasattr(node.type, "dtype") else "f32"
    return Work({dt: flops}, {MAIN: _read(ctx, node.inputs) + out}, calls=1)


# the groups register their rules on import
from . import dense, elementwise, embedding, interaction, layout  # noqa: E402,F401
