"""fuse_mlp: chains of linear layers with their activations become one MLP op.

A chain continues while each intermediate value has exactly one use, so the
fused op computes the same values the graph did and nothing else reads them.
"""
from __future__ import annotations

from ..ir import Graph, GraphBuilder, Op
from . import register_pass

_ACT = {Op.RELU: "relu", Op.SIGMOID: "sigmoid", Op.TANH: "tanh", Op.SILU: "silu"}


def _act_of(n) -> str | None:
    if n.op in _ACT:
        return _ACT[n.op]
    if n.op is Op.GELU:
        return "gelu_tanh" if n.attr("approximate", "none") == "tanh" else "gelu"
    return None


def _only_user(g: Graph, name: str):
    users = g.users.get(name, [])
    if len(users) == 1 and g.num_uses(name) == 1 and name not in g.outputs:
        return users[0]
    return None


@register_pass("fuse_mlp", stage="fuse")
def fuse_mlp(g: Graph) -> Graph:
    """Fuse linear(+bias)(+activation) chains into MLP ops (one per maximal chain)."""
    absorbed: set[str] = set()
    chains: dict[str, dict] = {}           # last node of a chain -> its description
    for n in g.nodes:
        if n.op is not Op.LINEAR or n.name in absorbed:
            continue
        layers, ins, cur = [], [n.inputs[0]], n
        while True:
            hb = len(cur.inputs) == 3
            ins.extend(cur.inputs[1:])
            end, act = cur, "none"
            user = _only_user(g, cur.name)
            if user is not None and _act_of(user) is not None:
                act, end = _act_of(user), user
                absorbed.add(user.name)
            absorbed.add(cur.name)
            layers.append((act, hb))
            nxt = _only_user(g, end.name)
            if nxt is not None and nxt.op is Op.LINEAR and nxt.inputs[0] == end.name:
                cur = nxt
                continue
            break
        chains[end.name] = {"ins": ins, "layers": layers, "type": end.type, "loc": n.loc}

    b = GraphBuilder(g)
    for n in g.nodes:
        if n.name in chains:
            c = chains[n.name]
            new = b.emit(Op.MLP, c["ins"], c["type"],
                         {"acts": tuple(a for a, _ in c["layers"]),
                          "has_bias": tuple(h for _, h in c["layers"])}, hint="mlp", loc=c["loc"])
            b.replace(n.name, new)
        elif n.name not in absorbed:
            b.copy(n)
    return b.finish()
