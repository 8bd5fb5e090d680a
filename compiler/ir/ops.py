"""The closed set of IR operations, grouped into the sets that passes query."""
from __future__ import annotations

import enum

from .formats import ACTIVATIONS  # noqa: F401  (defined with their codes beside the row formats)


class Op(enum.Enum):
    # values entering the graph
    INPUT = "input"            # attrs: name (user-facing path), kind
    PARAM = "param"            # attrs: name (key into Graph.params)
    FULL = "full"              # attrs: value; a constant-filled tensor (usually 0-d scalar)
    JAGGED = "jagged"          # (indices, offsets) -> one sparse feature; attrs: feature, include_last_offset

    # sparse
    EMBEDDING = "embedding"                  # (table, ids) -> rows
    EMBEDDING_BAG = "embedding_bag"          # (table, jagged[, per_sample_weights]); attrs: mode, padding_idx
    EMBEDDING_BAG_GROUP = "embedding_bag_group"  # table-batched: per feature (table, jagged[, psw]) -> [B, sum D]

    # dense linear algebra
    LINEAR = "linear"          # (x, w[N,K][, b]) -> x @ w.T + b
    MATMUL = "matmul"          # numpy matmul semantics (mm, bmm, batched)
    MLP = "mlp"                # fused chain: (x, w0, b0, w1, b1, ...); attrs: acts, has_bias

    # recommendation interactions (raised by recognizer passes)
    DOT_INTERACTION = "dot_interaction"  # T[B,F,D] -> [B, len(pairs)] of <T[:,i],T[:,j]>; attrs: pairs
    CROSS_LAYER = "cross_layer"          # (x0, xl, w[, v], b) -> x0 * (W xl + b) + xl (low rank: W(V xl))
    FM = "fm"                            # v[B,F,K] -> 0.5*sum_k((sum_f v)^2 - sum_f v^2)

    # elementwise unary
    RELU = "relu"
    SIGMOID = "sigmoid"
    TANH = "tanh"
    GELU = "gelu"              # attrs: approximate ("none" | "tanh")
    SILU = "silu"
    NEG = "neg"
    EXP = "exp"
    LOG = "log"
    SQRT = "sqrt"
    RSQRT = "rsqrt"
    ABS = "abs"
    CLAMP = "clamp"            # attrs: min, max (None for unbounded)
    CAST = "cast"              # attrs: dtype

    # elementwise binary (numpy broadcasting)
    ADD = "add"
    SUB = "sub"
    MUL = "mul"
    DIV = "div"
    POW = "pow"
    MAXIMUM = "maximum"
    MINIMUM = "minimum"

    # comparisons (numpy broadcasting, operands of one dtype) -> bool; IEEE: NaN compares unequal
    EQ = "eq"
    NE = "ne"
    LT = "lt"
    LE = "le"
    GT = "gt"
    GE = "ge"

    # logic on bool tensors (numpy broadcasting) -> bool
    LOGICAL_AND = "logical_and"
    LOGICAL_OR = "logical_or"
    LOGICAL_NOT = "logical_not"
    WHERE = "where"            # (cond: bool, a, b) -> a where cond else b; the three broadcast together

    # reductions; attrs: dims, keepdim
    SUM = "sum"
    MEAN = "mean"
    AMAX = "amax"
    NORM = "norm"              # attrs: p, dims, keepdim

    LAYER_NORM = "layer_norm"  # (x[, w[, b]]); attrs: normalized_ndim, eps, has_weight, has_bias
    SOFTMAX = "softmax"        # attrs: dim; exp(x - max) / sum(exp(x - max)) along dim (a row of -inf: NaN)

    # layout
    RESHAPE = "reshape"        # attrs: shape
    PERMUTE = "permute"        # attrs: perm
    EXPAND = "expand"          # attrs: shape
    CAT = "cat"                # attrs: dim
    SLICE = "slice"            # attrs: dim, start, end, step
    INDEX = "index"            # (x, idx0, idx1, ...) advanced indexing on consecutive dims; attrs: dim


UNARY = frozenset({Op.RELU, Op.SIGMOID, Op.TANH, Op.GELU, Op.SILU, Op.NEG, Op.EXP, Op.LOG,
                   Op.SQRT, Op.RSQRT, Op.ABS, Op.CLAMP, Op.CAST})
BINARY = frozenset({Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.POW, Op.MAXIMUM, Op.MINIMUM})
ELEMENTWISE = UNARY | BINARY
# bool-valued elementwise ops: kept out of UNARY/BINARY (whose rules keep the operand dtype) so a target's
# elementwise rules do not claim them before it lowers them
COMPARE = frozenset({Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE})
LOGICAL = frozenset({Op.LOGICAL_AND, Op.LOGICAL_OR, Op.LOGICAL_NOT})
REDUCE = frozenset({Op.SUM, Op.MEAN, Op.AMAX, Op.NORM})
LAYOUT = frozenset({Op.RESHAPE, Op.PERMUTE, Op.EXPAND, Op.CAT, Op.SLICE, Op.INDEX})
SPARSE = frozenset({Op.JAGGED, Op.EMBEDDING, Op.EMBEDDING_BAG, Op.EMBEDDING_BAG_GROUP})
SOURCES = frozenset({Op.INPUT, Op.PARAM, Op.FULL})
RECOMMENDATION = frozenset({Op.DOT_INTERACTION, Op.CROSS_LAYER, Op.FM, Op.MLP,
                            Op.EMBEDDING_BAG_GROUP})
