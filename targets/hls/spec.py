"""The gather kernel's shape, derived once from the graph and its placement plan.

Every emitter (kernel, testbench, XRT host, v++ config), the C-sim runner and
the cycle report read this one description, so argument names, order,
banks and layouts cannot disagree between them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from xrec.ir import Graph
from xrec.passes.place_tables import Plan, TablePlan, UnitPlan, gather_nodes, node_features

KERNEL = "xrec_gather"
MODE_RUN = 0
MODE_LOAD = 1
FORMATS = {"fp32": 0, "fp16": 1, "int8": 2, "bf16": 3, "int4": 4, "int2": 5}
MODES = {"sum": 0, "mean": 1, "max": 2}


@dataclass
class TableSpec:
    plan: TablePlan
    mode: str
    pad: int                 # padding row id (normalized to [0, rows)), -1 if none
    psw: bool
    lanes: int               # partial accumulators (fadd latency / chunks)
    table_value: str         # IR value of the table parameter
    jagged_value: str
    psw_value: str | None
    onchip_offset: int = 0   # word offset in the on-chip load image
    image: tuple[str, int, int] = ("", 0, 0)   # (file relative to the artifact, byte offset, bytes)

    @property
    def id(self) -> int:
        return self.plan.id

    @property
    def arg(self) -> str:
        return f"tab_{self.plan.id}"

    @property
    def onchip(self) -> bool:
        return self.plan.memory == "onchip"

    @property
    def words(self) -> int:
        return self.plan.rows * self.plan.beats


@dataclass
class UnitSpec:
    plan: UnitPlan
    tables: list[TableSpec]

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def nfeat(self) -> int:
        return len(self.tables)

    @property
    def outch(self) -> int:
        return sum(t.plan.chunks for t in self.tables)

    @property
    def maxbeats(self) -> int:
        return max(t.plan.beats for t in self.tables)

    @property
    def has_psw(self) -> bool:
        return any(t.psw for t in self.tables)

    def chunk_offsets(self) -> list[int]:
        out, c = [], 0
        for t in self.tables:
            out.append(c)
            c += t.plan.chunks
        return out

    def io_args(self) -> list[str]:
        a = [f"bag_off_{self.name}", f"ids_{self.name}"]
        if self.has_psw:
            a.append(f"psw_{self.name}")
        return a + [f"out_{self.name}"]


@dataclass
class Arg:
    name: str
    ctype: str
    kind: str               # table | onchip_src | bag_off | ids | psw | out | scalar
    bundle: str = ""
    bank: str = ""          # v++ sp= target (HBM[k] / DDR[k])
    unit: int = -1


@dataclass
class KernelSpec:
    plan: Plan
    tables: list[TableSpec]
    units: list[UnitSpec]
    fadd_latency: int
    outstanding: int
    args: list[Arg] = field(default_factory=list)

    @property
    def offchip(self) -> list[TableSpec]:
        return [t for t in self.tables if not t.onchip]

    @property
    def onchip(self) -> list[TableSpec]:
        return [t for t in self.tables if t.onchip]

    @property
    def onchip_words(self) -> int:
        return sum(t.words for t in self.onchip)

    def arg(self, name: str) -> Arg:
        for a in self.args:
            if a.name == name:
                return a
        raise KeyError(name)


def choose_lanes(chunks: int, pooling: float, fadd_latency: int) -> int:
    """Partial-sum lanes of a table's pooling loop.

    A float add takes ``fadd_latency`` cycles; the pooling loop revisits the
    same accumulator every ``chunks`` iterations. With ``chunks >= latency``
    one accumulator runs at II=1 (and sums exactly in PyTorch's order).
    Otherwise either one accumulator at II=ceil(latency/chunks) (bag cost
    ``p * chunks * II``) or ``ceil(latency/chunks)`` lanes at II=1 plus a
    ``latency``-cycle drain per bag (``p * chunks + latency``): the cheaper
    one for the table's pooling factor ``p``.
    """
    if chunks >= fadd_latency:
        return 1
    ii = math.ceil(fadd_latency / chunks)
    single = pooling * chunks * ii
    multi = pooling * chunks + fadd_latency
    return ii if multi < single else 1


def pool_ii(chunks: int, lanes: int, fadd_latency: int) -> int:
    """The initiation interval the pooling loop of a table can reach."""
    if lanes > 1 or chunks >= fadd_latency:
        return 1
    return math.ceil(fadd_latency / chunks)


def _bank(memory: str, index: int) -> str:
    return f"{memory.upper()}[{index}]"


def kernel_spec(g: Graph, plan: Plan, fadd_latency: int = 4, outstanding: int = 32) -> KernelSpec:
    feats = {}
    for n in gather_nodes(g):
        for pos, f in enumerate(node_features(g, n)):
            feats[(n.name, pos)] = f
    tables = []
    for tp in plan.tables:
        f = feats[(tp.node, tp.pos)]
        if f.rows != tp.rows or f.dim != tp.dim:
            raise ValueError(f"placement plan is stale: feature {f.feature!r} is {f.rows}x{f.dim} in the graph but "
                             f"{tp.rows}x{tp.dim} in the plan; rerun place_tables")
        if f.remap is not None:
            raise NotImplementedError(f"feature {f.feature!r} reads a pruned table (remap); the hls target does not "
                                      "gather pruned tables yet: compile without pruning")
        padn = -1 if f.padding_idx is None else int(f.padding_idx) % f.rows
        lanes = choose_lanes(tp.chunks, tp.pooling, fadd_latency)
        tables.append(TableSpec(tp, f.mode, padn, bool(f.has_psw), lanes, f.table, f.jagged, f.psw))
    off = 0
    for t in tables:
        if t.onchip:
            t.onchip_offset = off
            off += t.words
    units = [UnitSpec(u, [tables[i] for i in u.tables]) for u in plan.units]
    ks = KernelSpec(plan, tables, units, fadd_latency, outstanding)
    args = []
    for t in ks.offchip:
        args.append(Arg(t.arg, "const xrec_word_t*", "table", f"{t.plan.memory}{t.plan.channel}",
                        _bank(t.plan.memory, t.plan.channel)))
    if ks.onchip:
        init_bank = _bank("ddr", 0) if any(c.memory == "ddr" for c in plan.channels) else _bank("hbm", 0)
        args.append(Arg("onchip_src", "const xrec_word_t*", "onchip_src", "init", init_bank))
    for u in units:
        bank = _bank(u.plan.io_memory, u.plan.io_channel)
        bundle = f"io_{u.name}"
        args.append(Arg(f"bag_off_{u.name}", "const int*", "bag_off", bundle, bank, u.plan.id))
        args.append(Arg(f"ids_{u.name}", "const int*", "ids", bundle, bank, u.plan.id))
        if u.has_psw:
            args.append(Arg(f"psw_{u.name}", "const float*", "psw", bundle, bank, u.plan.id))
        args.append(Arg(f"out_{u.name}", "xrec_word_t*", "out", bundle, bank, u.plan.id))
        args.append(Arg(f"nnz_{u.name}", "int", "scalar", unit=u.plan.id))
    args.append(Arg("batch", "int", "scalar"))
    args.append(Arg("mode", "int", "scalar"))
    ks.args = args
    return ks


def value_bytes(t: TableSpec) -> int:
    """Bytes of a row before its scale and bias (quantized formats), else 0."""
    f, d = t.plan.fmt, t.plan.dim
    return {"int8": d, "int4": (d + 1) // 2, "int2": (d + 3) // 4}.get(f, 0)
