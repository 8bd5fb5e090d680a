"""The lowering context shared by every rule: static shapes, module arguments, weights and their layouts."""
from __future__ import annotations

from dataclasses import dataclass, field

from xrec.ir import Graph, Node, Op
from xrec.ir.types import BATCH
from xrec.lowering import LoweringError, describe_node, register_lowering

from . import layout as L
from .mlir import ELEM, Builder, Value, ssa_name


TARGET = "xla"


def rule(*ops: Op):
    """Decorator: register a function ``(ctx, node) -> Value`` as the xla lowering of ``ops``."""
    return register_lowering(ops, TARGET)


_where = describe_node


def unsupported(n: Node, why: str) -> LoweringError:
    """The xla target cannot lower ``n`` (for a reason other than a missing rule)."""
    return LoweringError(why, target=TARGET, node=n)


@dataclass(frozen=True)
class FeatureSlot:
    """One bucketed sparse feature: where its KJT arrays come from and where its static form goes.

    All features travel in three arguments (few host->device transfers per call):
    ``ids [batch, sum M_f]`` (feature f in columns ``column .. column + max_ids``),
    ``lengths [batch, F]`` (feature f in column ``index``) and, for features with
    per-sample weights, ``weights [batch, sum M_w]`` (columns from ``weights_column``).
    """

    jagged: str                 # the JAGGED node
    feature: str
    indices: int                # flat input positions
    offsets: int
    include_last_offset: bool
    max_ids: int
    num_rows: int | None
    index: int                  # column in lengths
    column: int                 # first column in ids
    weights: int | None = None  # flat position of per-sample weights (INPUT), if any
    weights_column: int | None = None


@dataclass
class Lowered:
    text: str
    batch: int                                    # static batch of the executable
    args: list[dict] = field(default_factory=list)
    features: list[FeatureSlot] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)
    fallbacks: list[dict] = field(default_factory=list)   # fallbacks taken (xrec.lowering), for the manifest


@dataclass(frozen=True)
class Plan:
    batch: int                  # static batch (already rounded by the layout)
    layout: L.Layout
    budgets: dict               # feature name -> ids per bag
    weights: str = "args"       # "args" | "constants"
    strict: bool = False        # refuse listed fallbacks (the xla target lists none)


# ---------------------------------------------------------------- context
class Ctx:
    def __init__(self, g: Graph, plan: Plan):
        self.g, self.plan, self.lay = g, plan, plan.layout
        self.b = Builder()
        self.vals: dict[str, Value] = {}
        self.padded: dict[str, Value] = {}     # value -> copy with its last dim zero-padded to lanes
        self.args: list[tuple[int, dict, Value]] = []   # (order class, spec, value)
        self._params: dict[tuple, Value] = {}
        self._names: set[str] = set()
        self.slots: dict[str, FeatureSlot] = {}
        self.sparse_args: dict[str, Value] = {}
        self.input_pos = {n.name: k for k, n in enumerate(g.input_nodes)}

    # ---- shapes
    def shape(self, n: Node, t=None) -> tuple[int, ...]:
        t = t or n.type
        out = []
        for d in t.shape:
            if isinstance(d, int):
                out.append(d)
                continue
            extra = sorted(s.name for s in d.free_symbols if s != BATCH)
            if extra:
                raise unsupported(n, f"its shape {t} depends on {', '.join(extra)}; the xla target needs static "
                                     "shapes (only the batch B becomes the executable's static batch)")
            out.append(int(d.subs(BATCH, self.plan.batch)))
        return tuple(out)

    def batch_dims(self, n: Node, t=None) -> set[int]:
        t = t or n.type
        return {i for i, d in enumerate(t.shape) if not isinstance(d, int) and BATCH in d.free_symbols}

    # ---- values
    def value(self, n: Node, name: str) -> Value:
        if name not in self.vals:
            src = self.g.node(name)
            raise unsupported(n, f"it reads %{name} ({src.op.value}, kind {src.attr('kind', '?')}) which has no "
                                 "static form: sparse inputs can only feed embedding bags")
        return self.vals[name]

    def arg(self, order: int, hint: str, shape, elem: str, spec: dict) -> Value:
        name = ssa_name(hint)
        base, k = name, 1
        while name in self._names:
            name, k = f"{base}_{k}", k + 1
        self._names.add(name)
        v = Value(f"%{name}", tuple(int(d) for d in shape), elem)
        spec = {"name": name, **spec, "shape": list(v.shape), "dtype": elem}
        self.args.append((order, spec, v))
        return v

    def weight(self, n: Node, name: str, t: dict) -> Value:
        """A weight as the layout wants it: a transformed argument/constant, or transformed in-graph."""
        src = self.g.node(name)
        if src.op is not Op.PARAM:            # a computed weight: transform it in the graph
            v = self.value(n, name)
            if t.get("transpose"):
                v = self.b.transpose(v, [1, 0])
            if t.get("pad_to"):
                v = self.b.pad(v, [w - d for w, d in zip(t["pad_to"], v.shape)])
            return self.b.convert(v, t.get("dtype", v.elem))
        key = (src.attr("name"), L.transform_key(t))
        if key in self._params:
            return self._params[key]
        arr = self.g.params[src.attr("name")]
        shape = L.transformed_shape(arr.shape, t)
        elem = t.get("dtype") or ELEM[src.type.dtype.value]
        if self.plan.weights == "constants":
            v = self.b.array(L.apply_transform(arr, t))
        elif elem == "i64":     # jax puts 64-bit ints on devices as int32: pass int32, widen in the graph
            if arr.size and (arr.min() < -2**31 or arr.max() >= 2**31):
                raise unsupported(n, f"int64 parameter {src.attr('name')!r} holds values beyond int32")
            v = self.arg(3, "p_" + src.attr("name"), shape, "i32",
                         {"role": "param", "param": src.attr("name"), "transform": {**t, "dtype": "i32"}})
            v = self.b.convert(v, "i64")
        else:
            v = self.arg(3, "p_" + src.attr("name"), shape, elem,
                         {"role": "param", "param": src.attr("name"), "transform": t})
        self._params[key] = v
        return v

    def padded_last(self, n: Node, name: str) -> Value:
        """``name`` with its last dim zero-padded to the layout's lanes (cached per value)."""
        if name in self.padded:
            return self.padded[name]
        v = self.value(n, name)
        want = self.lay.lanes(v.shape[-1])
        p = self.b.pad(v, [0] * (v.rank - 1) + [want - v.shape[-1]])
        self.padded[name] = p
        return p

    def dot(self, x: Value, w: Value) -> Value:
        """x[..., K] @ w[K, N] with compute-dtype operands and an f32 result."""
        ce = self.lay.compute_elem
        return self.b.dot_general(self.b.convert(x, ce), self.b.convert(w, ce), ([x.rank - 1], [0]),
                                  out_elem="f32", precision=self.lay.precision)

    def add_bias(self, y: Value, bias: Value) -> Value:
        return self.b.binary("add", y, self.b.broadcast(bias, y.shape, [y.rank - 1]))
