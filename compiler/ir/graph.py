"""IR nodes and graphs: small immutable records.

A ``Graph`` is a topologically ordered tuple of ``Node``s in SSA form (each
node defines one value named ``node.name``), the names of the outputs, and
the parameter arrays the ``PARAM`` nodes refer to. Passes never mutate a
graph; they build a new one with ``GraphBuilder``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from types import MappingProxyType
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from .features import GroupFeature
from .ops import Op
from .printer import print_graph
from .types import TensorType, JaggedType, Type


@dataclass(frozen=True, slots=True)
class FeatureInputs:
    """The IR values one feature of an embedding-bag op reads."""

    feature: GroupFeature
    table: str
    jagged: str
    psw: str | None
    remap: str | None


class MlpLayer(NamedTuple):
    weight: Any          # the [N, K] weight: its IR value name (or its array, see mlp_layers)
    bias: Any            # the [N] bias, None without one
    act: str             # activation after the layer ("none", "relu", ...)


def mlp_layers(node: "Node", values: Sequence | None = None) -> list[MlpLayer]:
    """The layers of an MLP node, whose inputs are x, then per layer its weight and (if it has one) bias.

    With ``values`` (the node's evaluated inputs, in input order) the layers hold those instead of
    the IR value names."""
    ins = node.inputs if values is None else values
    out, pos = [], 1
    for act, hb in zip(node.attr("acts"), node.attr("has_bias")):
        out.append(MlpLayer(ins[pos], ins[pos + 1] if hb else None, act))
        pos += 2 if hb else 1
    return out


def feature_inputs(node: "Node") -> list[FeatureInputs]:
    """Per feature of an EMBEDDING_BAG_GROUP (or a single EMBEDDING_BAG), the values it reads.

    Inputs are laid out per feature as: table, jagged, [per-sample weights], [remap].
    """
    if node.op is Op.EMBEDDING_BAG:
        f = GroupFeature(feature=node.attr("feature", node.name), mode=node.attr("mode"),
                         padding_idx=node.attr("padding_idx", None), has_psw=node.attr("has_psw", False),
                         num_rows=-1, dim=int(node.type.shape[1]), has_remap=node.attr("has_remap", False))
        feats = (f,)
    else:
        feats = node.attr("features")
    out, pos = [], 0
    for f in feats:
        ins = node.inputs[pos:pos + f.num_inputs]
        psw = ins[2] if f.has_psw else None
        remap = ins[-1] if f.has_remap else None
        out.append(FeatureInputs(f, ins[0], ins[1], psw, remap))
        pos += f.num_inputs
    return out


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    op: Op
    inputs: tuple[str, ...]
    type: Type
    attrs: tuple[tuple[str, Any], ...] = ()
    loc: str = ""             # where the value came from in the user's model source

    def attr(self, key: str, default: Any = ...) -> Any:
        for k, v in self.attrs:
            if k == key:
                return v
        if default is ...:
            raise KeyError(f"node %{self.name} ({self.op.value}) has no attribute {key!r}")
        return default

    def with_(self, **changes) -> "Node":
        if "attrs" in changes and isinstance(changes["attrs"], dict):
            changes["attrs"] = make_attrs(changes["attrs"])
        return replace(self, **changes)


def make_attrs(attrs: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    if not attrs:
        return ()
    return tuple(sorted(((k, _freeze(v)) for k, v in attrs.items()), key=lambda kv: kv[0]))


def _freeze(v):
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, tuple):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


@dataclass(frozen=True)
class Graph:
    name: str
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]
    params: Mapping[str, np.ndarray] = field(default_factory=dict)
    in_spec: str = ""         # torch pytree spec of the model's (args, kwargs), serialized
    out_spec: str = ""        # torch pytree spec of the model's outputs, serialized
    meta: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self):
        if not isinstance(self.params, MappingProxyType):
            object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    # ---- lookups (derived, cached per immutable graph) ----
    @cached_property
    def by_name(self) -> dict[str, Node]:
        return {n.name: n for n in self.nodes}

    def node(self, name: str) -> Node:
        try:
            return self.by_name[name]
        except KeyError:
            raise KeyError(f"graph {self.name!r} has no value %{name}") from None

    @cached_property
    def users(self) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {n.name: [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                if n not in out.setdefault(i, []):
                    out[i].append(n)
        return out

    def num_uses(self, name: str) -> int:
        c = sum(n.inputs.count(name) for n in self.users.get(name, []))
        return c + self.outputs.count(name)

    @property
    def input_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.op is Op.INPUT]

    def nodes_of(self, *ops: Op) -> list[Node]:
        return [n for n in self.nodes if n.op in ops]

    def type_of(self, name: str) -> Type:
        return self.node(name).type

    def param(self, node_or_name) -> np.ndarray:
        n = node_or_name if isinstance(node_or_name, Node) else self.node(node_or_name)
        if n.op is not Op.PARAM:
            raise ValueError(f"%{n.name} is a {n.op.value}, not a parameter")
        return self.params[n.attr("name")]

    def meta_get(self, key: str, default=None):
        return dict(self.meta).get(key, default)

    def with_(self, **changes) -> "Graph":
        return replace(self, **changes)

    def param_bytes(self) -> int:
        return int(sum(a.nbytes for a in self.params.values()))

    def __str__(self) -> str:
        return print_graph(self)

    def __repr__(self) -> str:
        return (f"Graph({self.name!r}, {len(self.nodes)} nodes, {len(self.params)} params, "
                f"outputs={', '.join('%' + o for o in self.outputs)})")


class GraphBuilder:
    """Builds a new graph, typically by copying an old one node by node.

    ``copy(node)`` re-emits a node with its inputs renamed through the
    replacement map; ``replace(old, new)`` makes later uses of ``old`` read
    ``new`` instead. ``finish`` drops nodes nothing uses (dead code) and any
    parameter no PARAM node refers to.
    """

    def __init__(self, base: Graph):
        self.base = base
        self.nodes: list[Node] = []
        self.names: set[str] = set()
        self.types: dict[str, Type] = {}
        self.rename: dict[str, str] = {}
        self.params: dict[str, np.ndarray] = dict(base.params)
        self._counter = 0

    def resolve(self, name: str) -> str:
        seen = 0
        while name in self.rename:
            name = self.rename[name]
            seen += 1
            if seen > 10_000:
                raise RuntimeError("replacement cycle in GraphBuilder")
        return name

    def fresh(self, hint: str) -> str:
        base = hint or "v"
        name = base
        while name in self.names or name in self.base.by_name:
            self._counter += 1
            name = f"{base}_{self._counter}"
        return name

    def add(self, node: Node) -> str:
        if node.name in self.names:
            raise ValueError(f"value %{node.name} defined twice")
        node = node.with_(inputs=tuple(self.resolve(i) for i in node.inputs))
        self.nodes.append(node)
        self.names.add(node.name)
        self.types[node.name] = node.type
        return node.name

    def copy(self, node: Node) -> str:
        return self.add(node)

    def emit(self, op: Op, inputs: Iterable[str], type: Type, attrs: Mapping[str, Any] | None = None,
             hint: str = "", loc: str = "") -> str:
        name = self.fresh(hint or op.value)
        return self.add(Node(name=name, op=op, inputs=tuple(inputs), type=type,
                             attrs=make_attrs(attrs), loc=loc))

    def add_param(self, hint: str, array: np.ndarray, loc: str = "") -> str:
        key = hint
        k = 0
        while key in self.params:
            k += 1
            key = f"{hint}.{k}"
        self.params[key] = array
        from .types import DType
        t = TensorType(array.shape, DType.from_numpy(array.dtype))
        return self.emit(Op.PARAM, (), t, {"name": key}, hint=key.replace(".", "_"), loc=loc)

    def replace(self, old: str, new: str) -> None:
        if old != new:
            self.rename[old] = new

    def finish(self, outputs: Iterable[str] | None = None, dce: bool = True, **changes) -> Graph:
        outs = tuple(self.resolve(o) for o in (outputs if outputs is not None else self.base.outputs))
        nodes = toposort(self.nodes)
        if dce:
            nodes = dead_code_eliminate(nodes, outs)
        used = {n.attr("name") for n in nodes if n.op is Op.PARAM}
        params = {k: v for k, v in self.params.items() if k in used}
        return replace(self.base, nodes=tuple(nodes), outputs=outs, params=params, **changes)


def dead_code_eliminate(nodes: list[Node], outputs: tuple[str, ...]) -> list[Node]:
    """Keep the nodes outputs depend on, and every graph INPUT (the signature is fixed)."""
    live = set(outputs)
    for n in reversed(nodes):
        if n.name in live or n.op is Op.INPUT:
            live.update(n.inputs)
            live.add(n.name)
    return [n for n in nodes if n.name in live]


def toposort(nodes: list[Node]) -> list[Node]:
    """Stable topological order: keeps the given order wherever it is already valid.

    Lets a pass emit a node that reads values defined later in the copy order
    (e.g. one table-batched group reading every feature).
    """
    defined = {n.name for n in nodes}
    by_name = {n.name: n for n in nodes}
    done: set[str] = set()
    out: list[Node] = []
    visiting: set[str] = set()

    def visit(n: Node):
        stack = [(n, iter(n.inputs))]
        visiting.add(n.name)
        while stack:
            cur, it = stack[-1]
            for i in it:
                if i in defined and i not in done:
                    if i in visiting:
                        raise ValueError(f"cycle through %{i} and %{cur.name}")
                    visiting.add(i)
                    stack.append((by_name[i], iter(by_name[i].inputs)))
                    break
            else:
                stack.pop()
                visiting.discard(cur.name)
                done.add(cur.name)
                out.append(cur)

    for n in nodes:
        if n.name not in done:
            visit(n)
    return out
