"""The lowered program the cpu code generator renders: weight slots, views, steps, buffers.

``lower.py`` builds a :class:`Program` from the optimized IR; ``codegen.py``
turns it into C++. Everything here is plain data.

Execution model. Every value the model computes has the batch as its leading
dim and row b of a value depends only on row b of its inputs ("row-local"),
so the whole forward pass runs on tiles of rows: the batch is cut into tiles
of at most ``TILE_MAX`` rows and each tile runs every step, on its thread's
own scratch arena (tiles run in parallel; nothing is shared between threads,
so there is no false sharing and no per-call allocation). Intermediate values
live in tile buffers of ``TILE_MAX`` rows, whose offsets in the arena are
planned at compile time with their live ranges, so buffers are reused.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from xrec.ir import Op
from xrec.ir.types import DType
from xrec.targets.views import is_contiguous

TILE_MAX = 64          # rows per tile (the arena holds this many rows of every live buffer)
ARENA_ALIGN = 64


def tile_rows(batch: int, threads: int) -> int:
    """Rows per tile the runtime uses for ``batch`` rows on ``threads`` threads: the C function
    ``tile_rows`` of kernels/cpu/xrec_gen.h, for Python readers (the cost model); one tile for a batch
    of at most 16 rows or one thread, else enough tiles for every thread, 16-row multiples, at most
    TILE_MAX (tests/targets pin the two against each other)."""
    if batch <= 16 or threads <= 1:
        return min(max(batch, 1), TILE_MAX)
    t = (batch + threads - 1) // threads
    return min((t + 15) // 16 * 16, TILE_MAX)


def tiles(batch: int, threads: int) -> int:
    """How many tiles a batch is cut into (``run_tiles``: one tile runs on the calling thread and lets
    the big layers split their columns over the threads)."""
    t = tile_rows(batch, threads)
    return max(1, (batch + t - 1) // t)


@dataclass
class WeightSlot:
    """One entry of weights.bin the generated code reads (``name`` is its manifest key)."""

    name: str
    cname: str               # C identifier in the generated Weights struct
    kind: str                # raw | packed | folded
    ctype: str               # element C type
    nbytes: int | None       # fixed size, or None for packed (linear_packed_floats(N, K) floats)
    source: str = ""         # param name it is made from
    N: int = 0
    K: int = 0


@dataclass
class Buffer:
    """A region of the per-thread tile arena: TILE_MAX rows of ``row_bytes``."""

    id: int
    row_elems: int
    itemsize: int
    ctype: str
    what: str                # the value(s) it holds, for the comment
    first: int = -1          # first step writing it
    last: int = -1           # last step touching it
    offset: int = -1         # byte offset in the arena (planned)

    @property
    def bytes(self) -> int:
        n = TILE_MAX * self.row_elems * self.itemsize
        return (n + ARENA_ALIGN - 1) // ARENA_ALIGN * ARENA_ALIGN

    @property
    def cname(self) -> str:
        return f"t{self.id}"


@dataclass(frozen=True)
class View:
    """How a value is read or written inside a tile (the layout algebra is xrec.targets.views').

    ``rowwise``: element [i, j0, j1, ...] (i in [0, m) the tile row) is at
    ``ptr[i * ld + j0 * strides[0] + ...]``; ``ld`` 0 broadcasts one row to all.
    Not rowwise (weights, constants): element [j0, ...] is ``ptr[j0 * strides[0] + ...]``.
    ``buffer`` is the tile buffer the data lives in (None for inputs/outputs/weights).
    """

    ptr: str
    ctype: str
    rowwise: bool
    ld: str
    dims: tuple
    strides: tuple
    buffer: int | None = None

    def with_(self, **kw) -> "View":
        d = dict(ptr=self.ptr, ctype=self.ctype, rowwise=self.rowwise, ld=self.ld, dims=self.dims,
                 strides=self.strides, buffer=self.buffer)
        d.update(kw)
        return View(**d)

    @property
    def contiguous(self) -> bool:
        """Trailing dims dense row-major (each row one block)."""
        return is_contiguous(self.dims, self.strides)

    @property
    def row_elems(self) -> int:
        n = 1
        for d in self.dims:
            n *= d
        return n


# ---------------------------------------------------------------- expressions
@dataclass(frozen=True)
class Load:
    view: View
    index: tuple             # per view dim (rowwise: row index first): a loop variable name or "0"


@dataclass(frozen=True)
class Const:
    value: float
    dtype: DType


@dataclass(frozen=True)
class Apply:
    op: Op
    args: tuple
    attrs: tuple = ()
    dtype: DType = DType.F32


Expr = Union[Load, Const, Apply]


# ---------------------------------------------------------------- steps
@dataclass
class Step:
    node: str                # the IR value it computes (for comments)
    text: str                # the IR line, for the comment above the code
    reads: set = field(default_factory=set)     # tile buffers read
    writes: set = field(default_factory=set)    # tile buffers written
    temps: list = field(default_factory=list)   # tile buffers live only inside this step


@dataclass
class LinearStep(Step):
    """Y[r, :] = act(X[r, :] @ W.T + b) for r in [0, rows) (rows = m * extra)."""

    x: str = ""
    ldx: str = ""
    rows: str = "m"
    K: int = 0
    N: int = 0
    weight: str = ""         # Weights member (packed)
    bias: str = ""           # Weights member or ""
    act: str = "none"
    y: str = ""
    ldy: str = ""


@dataclass
class BagStep(Step):
    """Pools the bags of rows [r0, r1) of each feature into a column block of ``out``."""

    group: int = 0                                 # index into Call::bags of the first feature
    features: list = field(default_factory=list)   # (call bag index, column, dim, feature name, rows)
    out: str = ""
    ldo: str = ""


@dataclass
class InteractionStep(Step):
    t: str = ""
    ldt: str = ""
    F: int = 0
    D: int = 0
    pairs: str = ""          # name of the static pair tables
    P: int = 0
    out: str = ""
    ldo: str = ""


@dataclass
class LoopStep(Step):
    """out[i, j...] = expr for every element (elementwise ops, copies, broadcasts)."""

    out: View = None
    expr: Expr = None


@dataclass
class ReduceStep(Step):
    """out[i, kept...] = reduce over the reduced dims of expr (an expression over the input's index space)."""

    out: View = None
    expr: Expr = None
    in_dims: tuple = ()      # the input's trailing dims
    reduced: tuple = ()      # positions (in in_dims) reduced
    kind: str = "sum"        # sum | mean | amax | norm
    p: float = 2.0


@dataclass
class FMStep(Step):
    v: View = None
    out: View = None


@dataclass
class LayerNormStep(Step):
    x: View = None
    out: View = None
    n_norm: int = 1          # trailing dims normalized
    eps: float = 1e-5
    weight: str = ""
    bias: str = ""


@dataclass
class SoftmaxStep(Step):
    """out[i, ...] = softmax of x[i, ...] along non-batch dim ``axis`` (x and out strided views)."""

    x: View = None
    out: View = None
    axis: int = 0


@dataclass
class BmmStep(Step):
    """Per row: out[i] = a[i] @ b[i] (or b shared), matrices [M, K] @ [K, N]."""

    a: View = None
    b: View = None
    out: View = None
    M: int = 0
    K: int = 0
    N: int = 0


@dataclass
class GatherStep(Step):
    """out[i, j, :] = table[ids[i, j], :] (nn.Embedding), ids checked against the table."""

    ids: View = None
    table: str = ""
    rows: int = 0
    dim: int = 0
    out: View = None
    name: str = ""


# ---------------------------------------------------------------- the program
@dataclass
class InputInfo:
    index: int
    name: str
    kind: str
    value: str
    dtype: DType
    shape: tuple             # IR dims
    accept: tuple            # accepted xrec dtypes (names)
    cname: str


@dataclass
class BagFeatureInfo:
    """One (feature, table) pairing the bag kernel pools; filled per call in Call::bags."""

    feature: str
    indices: int             # input positions
    offsets: int
    psw: int | None
    include_last_offset: bool
    nnz: str                 # C expression of the feature's number of ids
    table: str               # Weights member
    num_rows: int
    dim: int
    row_bytes: int
    fmt: str                 # ROW_F32 | ROW_F16 | ROW_BF16 | ROW_I8 | ROW_I4 | ROW_I2
    mode: str                # POOL_SUM | POOL_MEAN | POOL_MAX
    padding_idx: int
    remap: str | None = None  # Weights member of a pruned table's int32 remap [num_rows] (num_rows: logical rows)


@dataclass
class OutputInfo:
    value: str
    dtype: DType
    shape: tuple
    cname: str


@dataclass
class Program:
    name: str
    graph_text: list         # IR lines for the header comment
    symbols: list            # symbol names (B first)
    inputs: list             # InputInfo
    outputs: list            # OutputInfo
    weights: list            # WeightSlot
    bags: list               # BagFeatureInfo
    steps: list              # Step
    buffers: list            # Buffer
    pair_tables: dict        # name -> (pi list, pj list)
    arena_bytes: int = 0
    bounds_check: bool = True
    notes: list = field(default_factory=list)    # what the lowering decided (for the header)
