"""Lowering rules: one registry keyed by IR ``Op``, per target (in the spirit of JAX's ``mlir.register_lowering``).

A target registers one rule per op it lowers::

    from xrec.lowering import register_lowering

    @register_lowering(Op.RELU, "xla")            # or a list of ops sharing one rule
    def lower_relu(ctx, node): ...

and looks rules up through a per-compile :class:`TargetLowering`::

    low = lowering_for("xla", strict=options.strict)
    for node in graph.nodes:
        value = low.rule(node)(ctx, node)          # the rule's signature is the target's business
    writer.target_info["fallbacks"] = low.fallbacks_used()

An op without a rule on a target is a :class:`LoweringError` naming the op,
the node (and its source line), the target, and the ops that target lowers.

A fallback (say, running an op the triton target has no kernel for as a torch
step) is an explicit, listed decision: ``register_fallback(target, op,
reason, rule)``. When a compile uses one, :meth:`TargetLowering.rule` prints
it (``xrec.progress.say``), records it (``fallbacks_used()``, for the
manifest), and refuses it with a LoweringError when the target's options say
``strict=True``. ``fallbacks(target)`` lists every registered fallback.

The IR interpreter registers its semantics as the ``"reference"`` target's
rules (xrec/ir/interpreter.py), the xla target its StableHLO rules
(targets/xla/), the cpu and triton targets theirs (targets/cpu/rules/,
targets/triton/rules/). Every new op gets a rule on "reference" first (the
definition of its meaning), then one per target.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

from .ir.ops import Op

Rule = Callable[..., Any]

_RULES: dict[str, dict[Op, Rule]] = {}
_FALLBACKS: dict[str, dict[Op, "Fallback"]] = {}


def describe_node(node) -> str:
    """``%name = op(...)`` and where it came from in the model's source."""
    return f"%{node.name} = {node.op.value}(...)" + (f" at {node.loc}" if getattr(node, "loc", "") else "")


class LoweringError(NotImplementedError):
    """A target cannot lower a node: names the op, the node, the target, and the ops the target does know.

    ``LoweringError("plain message")`` (the form the old per-target classes used) keeps the message as is;
    with ``target``/``node``/``op`` the message is composed from them.
    """

    def __init__(self, message: str = "", *, target: str | None = None, node=None, op: Op | None = None,
                 known: Iterable[Op | str] | None = None, hint: str | None = None):
        self.target = target
        self.node = node
        self.op = op if op is not None else getattr(node, "op", None)
        self.known = tuple(sorted(k.value if isinstance(k, Op) else str(k) for k in known)) if known is not None else None
        self.hint = hint
        self.reason = message
        if target is None and node is None and op is None:
            super().__init__(message)
            return
        what = describe_node(node) if node is not None else (f"op {self.op.value!r}" if self.op else "the graph")
        text = f"{'target ' + repr(target) if target else 'xrec'} cannot lower {what}"
        if message:
            text += f": {message}"
        if self.known is not None:
            text += f"; target {target!r} lowers: {', '.join(self.known) or '(no ops)'}"
        if hint:
            text += f". {hint}"
        super().__init__(text)


@dataclass(frozen=True)
class Fallback:
    """A listed decision: ``op`` on ``target`` runs through a generic path instead of a rule of its own."""

    target: str
    op: Op
    reason: str
    rule: Rule | None = None       # None: the target applies its own generic path (see TargetLowering.use_fallback)


def _ops(op: Op | Iterable[Op]) -> tuple[Op, ...]:
    ops = (op,) if isinstance(op, Op) else tuple(op)
    for o in ops:
        if not isinstance(o, Op):
            raise TypeError(f"lowering rules are keyed by xrec.ir.Op, got {o!r}")
    return ops


def register_lowering(op: Op | Iterable[Op], target: str, *, replace: bool = False) -> Callable[[Rule], Rule]:
    """Decorator: ``rule`` lowers ``op`` (one Op or several) on ``target``.

    Registering a second rule for the same (op, target) is an error unless ``replace=True``.
    """
    ops = _ops(op)

    def deco(rule: Rule) -> Rule:
        table = _RULES.setdefault(target, {})
        for o in ops:
            if o in table and table[o] is not rule and not replace:
                raise ValueError(f"target {target!r} already has a lowering rule for {o.value!r} "
                                 f"({getattr(table[o], '__qualname__', table[o])}); pass replace=True to override")
            table[o] = rule
        return rule
    return deco


def register_fallback(target: str, op: Op | Iterable[Op], reason: str, rule: Rule | None = None) -> None:
    """List the decision that ``op`` on ``target`` takes a fallback path, and why."""
    if not reason:
        raise ValueError("a fallback needs a reason (it is printed and recorded in the manifest)")
    for o in _ops(op):
        _FALLBACKS.setdefault(target, {})[o] = Fallback(target, o, reason, rule)


def rules_of(target: str) -> Mapping[Op, Rule]:
    """The rules registered for ``target`` (a live read-only view)."""
    return MappingProxyType(_RULES.setdefault(target, {}))


def lowering_rule(target: str, op: Op) -> Rule | None:
    """The rule ``target`` registered for ``op``, or None."""
    return _RULES.get(target, {}).get(op)


def fallbacks(target: str) -> list[Fallback]:
    """Every fallback ``target`` has listed, in op order."""
    fb = _FALLBACKS.get(target, {})
    return [fb[o] for o in Op if o in fb]


def known_ops(target: str) -> list[Op]:
    """Ops ``target`` lowers with a rule of its own, in ``Op`` order."""
    table = _RULES.get(target, {})
    return [o for o in Op if o in table]


class TargetLowering:
    """Rule lookup for one compile on one target: applies the fallback policy and records what it used."""

    def __init__(self, target: str, *, strict: bool = False, say: Callable[[str], None] | None = None):
        self.target = target
        self.strict = strict
        self._say = say
        self._used: list[dict] = []

    def _error(self, node, message: str, hint: str) -> LoweringError:
        return LoweringError(message, target=self.target, node=node, known=known_ops(self.target), hint=hint)

    def rule(self, node) -> Rule:
        """The rule lowering ``node``: the op's own, else a listed fallback's (printed, recorded, refused when
        strict); else a LoweringError."""
        rule = lowering_rule(self.target, node.op)
        if rule is not None:
            return rule
        fb = self.use_fallback(node)
        if fb.rule is None:
            raise self._error(node, f"its fallback ({fb.reason}) has no rule registered", "Register the fallback "
                              "with a rule, or have the target apply it through use_fallback()")
        return fb.rule

    def use_fallback(self, node) -> Fallback:
        """The listed fallback for ``node``'s op (printed, recorded); LoweringError when there is none or
        ``strict`` refuses it."""
        fb = _FALLBACKS.get(self.target, {}).get(node.op)
        if fb is None:
            raise self._error(node, f"no lowering rule for op {node.op.value!r}",
                              f"Add one with @register_lowering(Op.{node.op.name}, {self.target!r}) "
                              f"(see xrec/lowering.py), or compile for a target that lowers it")
        if self.strict:
            raise self._error(node, f"it would take the fallback listed for {node.op.value!r} ({fb.reason}), "
                              "and the target's options say strict=True",
                              "Drop -O strict=true to accept the fallback, or add a rule for the op")
        self._used.append({"op": node.op.value, "node": node.name, "loc": getattr(node, "loc", ""),
                           "reason": fb.reason})
        msg = f"{self.target}: {describe_node(node)} takes a fallback: {fb.reason}"
        if self._say is not None:
            self._say(msg)
        else:
            from .progress import say
            say(msg)
        return fb

    def fallbacks_used(self) -> list[dict]:
        """The fallbacks this compile took: [{"op", "node", "loc", "reason"}] (for the manifest)."""
        return list(self._used)


def lowering_for(target: str, *, strict: bool = False) -> TargetLowering:
    """A :class:`TargetLowering` for one compile on ``target``."""
    return TargetLowering(target, strict=strict)
