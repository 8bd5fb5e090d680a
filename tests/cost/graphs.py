"""Small hand-built graphs whose work the cost tests compute by hand."""
import numpy as np

from xrec.ir import formats
from xrec.ir.graph import Graph, Node, make_attrs
from xrec.ir.ops import Op
from xrec.ir.stats import PoolingStats, with_pooling
from xrec.ir.types import DType, JaggedType, TensorType, sym

B = sym("B")


def _node(value, op, inputs, t, **attrs):
    return Node(value, op, tuple(inputs), t, make_attrs(attrs))


def linear_graph(k, n, bias=True):
    nodes = [_node("x", Op.INPUT, (), TensorType((B, k), DType.F32), name="x"),
             _node("w", Op.PARAM, (), TensorType((n, k), DType.F32), name="w")]
    params = {"w": np.zeros((n, k), np.float32)}
    ins = ["x", "w"]
    if bias:
        nodes.append(_node("b", Op.PARAM, (), TensorType((n,), DType.F32), name="b"))
        params["b"] = np.zeros(n, np.float32)
        ins.append("b")
    nodes.append(_node("y", Op.LINEAR, ins, TensorType((B, n), DType.F32)))
    return Graph("lin", tuple(nodes), ("y",), params)


def bag_graph(rows, dim, fmt="fp32", pooling=3.0, mode="sum"):
    """One embedding bag over a ``rows x dim`` table stored as ``fmt``, ``pooling`` ids per bag recorded."""
    f = formats.by_name(fmt)
    tt = f.table_type(rows, dim)
    nnz = sym("N_f")
    nodes = (_node("idx", Op.INPUT, (), TensorType((nnz,), DType.I64), name="idx"),
             _node("off", Op.INPUT, (), TensorType((B + 1,), DType.I64), name="off"),
             _node("jag", Op.JAGGED, ("idx", "off"), JaggedType(B, nnz, DType.I64, DType.I64), feature="f"),
             _node("tab", Op.PARAM, (), tt, name="tab"),
             _node("bag", Op.EMBEDDING_BAG, ("tab", "jag"), TensorType((B, dim), DType.F32), feature="f", mode=mode))
    g = Graph("bag", nodes, ("bag",), {"tab": np.zeros((1, 1), np.uint8)})
    return with_pooling(g, {"f": PoolingStats("f", bags=100, ids=int(round(100 * pooling)), min_ids=1, max_ids=9)})


def dot_graph(f, d, pairs):
    nodes = (_node("t", Op.INPUT, (), TensorType((B, f, d), DType.F32), name="t"),
             _node("z", Op.DOT_INTERACTION, ("t",), TensorType((B, len(pairs)), DType.F32), pairs=tuple(pairs)))
    return Graph("dot", nodes, ("z",), {})


def fm_graph(f, k):
    nodes = (_node("v", Op.INPUT, (), TensorType((B, f, k), DType.F32), name="v"),
             _node("y", Op.FM, ("v",), TensorType((B, 1), DType.F32), keepdim=True))
    return Graph("fm", nodes, ("y",), {})


def cross_graph(d, rank=None):
    """x0 * (W xl + b) + xl on [B, d]; W full [d, d], or low rank W[d, r] V[r, d]."""
    nodes = [_node("x0", Op.INPUT, (), TensorType((B, d), DType.F32), name="x0"),
             _node("xl", Op.INPUT, (), TensorType((B, d), DType.F32), name="xl")]
    if rank is None:
        nodes.append(_node("w", Op.PARAM, (), TensorType((d, d), DType.F32), name="w"))
        ins = ["x0", "xl", "w"]
    else:
        nodes += [_node("v", Op.PARAM, (), TensorType((rank, d), DType.F32), name="v"),
                  _node("w", Op.PARAM, (), TensorType((d, rank), DType.F32), name="w")]
        ins = ["x0", "xl", "v", "w"]
    nodes += [_node("b", Op.PARAM, (), TensorType((d,), DType.F32), name="b"),
              _node("y", Op.CROSS_LAYER, (*ins, "b"), TensorType((B, d), DType.F32), low_rank=rank is not None)]
    return Graph("cross", tuple(nodes), ("y",), {})


def chain_graph(n):
    """sigmoid(x + x) -> reshape -> cat with x -> sum over dim 1, on x: f32[B, n]."""
    t = TensorType((B, n), DType.F32)
    nodes = (_node("x", Op.INPUT, (), t, name="x"),
             _node("a", Op.ADD, ("x", "x"), t),
             _node("s", Op.SIGMOID, ("a",), t),
             _node("r", Op.RESHAPE, ("s",), TensorType((B, n, 1), DType.F32), shape=(B, n, 1)),
             _node("r2", Op.RESHAPE, ("r",), t, shape=(B, n)),
             _node("c", Op.CAT, ("r2", "x"), TensorType((B, 2 * n), DType.F32), dim=1),
             _node("m", Op.SUM, ("c",), TensorType((B,), DType.F32), dims=(1,), keepdim=False))
    return Graph("chain", nodes, ("m",), {})
