"""canonicalize: fold no-op layout ops, merge reshape chains and adjacent slices, CSE, DCE."""
from __future__ import annotations

from ..ir import Graph, GraphBuilder, Node, Op
from ..ir.types import dims_equal
from . import register_pass


def _same_shape(a, b) -> bool:
    return len(a) == len(b) and all(dims_equal(x, y) for x, y in zip(a, b))


def _merge_slices(b: GraphBuilder, n: Node) -> list[str] | None:
    """CAT inputs with runs of adjacent unit-step slices of one tensor merged into one slice."""
    dim = n.attr("dim")
    out: list[str] = []
    changed = False
    for name in n.inputs:
        src = next((x for x in reversed(b.nodes) if x.name == name), None)
        if out and src is not None and src.op is Op.SLICE and src.attr("dim") == dim \
                and src.attr("step", 1) == 1:
            prev = next((x for x in reversed(b.nodes) if x.name == out[-1]), None)
            if prev is not None and prev.op is Op.SLICE and prev.inputs == src.inputs \
                    and prev.attr("dim") == dim and prev.attr("step", 1) == 1 \
                    and prev.attr("end") is not None and prev.attr("end") == src.attr("start"):
                t = _sliced_type(b, src, prev.attr("start"), src.attr("end"))
                if _same_shape(t.shape, b.types[src.inputs[0]].shape):
                    merged = src.inputs[0]               # the slices reassemble their whole source
                else:
                    merged = b.emit(Op.SLICE, src.inputs, t, {"dim": dim, "start": prev.attr("start"),
                                                              "end": src.attr("end"), "step": 1},
                                    hint="slice", loc=src.loc)
                out[-1] = merged
                changed = True
                continue
        out.append(name)
    return out if changed else None


def _sliced_type(b: GraphBuilder, src: Node, start, end):
    from ..ir.rules import slice_length
    from ..ir import TensorType
    base = b.types[src.inputs[0]]
    shape = list(base.shape)
    d = src.attr("dim")
    shape[d] = slice_length(base.shape[d], start, end, 1)
    return TensorType(tuple(shape), base.dtype)


def _simplify(b: GraphBuilder, n: Node) -> str | None:
    """A value equivalent to ``n`` that needs no new node, or None."""
    t = n.type
    if n.op in (Op.RESHAPE, Op.EXPAND) and _same_shape(b.types[n.inputs[0]].shape, t.shape):
        return n.inputs[0]
    if n.op is Op.PERMUTE and tuple(n.attr("perm")) == tuple(range(len(t.shape))):
        return n.inputs[0]
    if n.op is Op.CAT and len(n.inputs) == 1:
        return n.inputs[0]
    if n.op is Op.SLICE and n.attr("step", 1) == 1 and _same_shape(b.types[n.inputs[0]].shape, t.shape):
        return n.inputs[0]
    return None


@register_pass("canonicalize", stage="canonicalize")
def canonicalize(g: Graph) -> Graph:
    """Fold no-op layout ops, merge reshape chains and adjacent slices, CSE and DCE."""
    b = GraphBuilder(g)
    seen: dict[tuple, str] = {}
    defs: dict[str, Node] = {}
    for n in g.nodes:
        n = n.with_(inputs=tuple(b.resolve(i) for i in n.inputs))
        # reshape of reshape -> one reshape
        if n.op is Op.RESHAPE:
            src = defs.get(n.inputs[0])
            if src is not None and src.op is Op.RESHAPE:
                n = n.with_(inputs=src.inputs)
        if n.op is Op.CAT:
            merged = _merge_slices(b, n)
            if merged is not None:
                n = n.with_(inputs=tuple(merged))
            # flatten nested cats on the same dim
            flat = []
            for i in n.inputs:
                src = defs.get(i)
                if src is not None and src.op is Op.CAT and src.attr("dim") == n.attr("dim") \
                        and g.num_uses(i) <= 1:
                    flat.extend(src.inputs)
                else:
                    flat.append(i)
            if flat != list(n.inputs):
                n = n.with_(inputs=tuple(flat))
                merged = _merge_slices(b, n)
                if merged is not None:
                    n = n.with_(inputs=tuple(merged))
        same = _simplify(b, n)
        if same is not None:
            b.replace(n.name, same)
            continue
        if n.op is not Op.INPUT:
            key = (n.op, n.inputs, n.attrs, str(n.type))
            if key in seen:
                b.replace(n.name, seen[key])
                continue
            seen[key] = n.name
        b.add(n)
        defs[n.name] = b.nodes[-1]
    return b.finish()
