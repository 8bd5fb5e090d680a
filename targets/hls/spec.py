"""The gather kernel's shape, derived once from the graph and its placement plan.

Every emitter (kernel, testbench, XRT host, v++ config), the C-sim runner and
the cycle report read this one description, so argument names, order,
banks and layouts cannot disagree between them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from xrec.ir import Graph, formats
from .placement import BEAT_BYTES, Plan, TablePlan, UnitPlan, gather_nodes, node_features

KERNEL = "xrec_gather"
MODE_RUN = 0
MODE_LOAD = 1


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
    # pruned tables (compiler pass prune_embeddings): the table parameter holds only the kept rows and an
    # int32 remap [plan.rows] maps a logical id to its row there (-1: pruned, pools as a zero row)
    remap_value: str | None = None
    phys_rows: int = -1      # rows of the stored (compact) table; plan.rows when not pruned
    remap_onchip_offset: int = 0                     # word offset of the remap in the on-chip image
    remap_image: tuple[str, int, int] = ("", 0, 0)   # the remap's int32 bytes in the artifact

    def __post_init__(self):
        if self.phys_rows < 0:
            self.phys_rows = self.plan.rows

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
    def pruned(self) -> bool:
        return self.remap_value is not None

    @property
    def remap_arg(self) -> str:
        return f"remap_{self.plan.id}"

    @property
    def words(self) -> int:
        """512-bit words of the stored table (the compact table of a pruned one; one zero row if it keeps none)."""
        return max(1, self.phys_rows) * self.plan.beats

    @property
    def remap_words(self) -> int:
        """512-bit words of the remap (16 int32 entries per word), 0 when not pruned."""
        return -(-self.plan.rows // 16) if self.pruned else 0

    @property
    def stored_bytes(self) -> int:
        """Bytes the table occupies in its memory: rows in whole beats, plus its remap (whole beats);
        the placement plan sized it the same way (TablePlan.image_bytes)."""
        return (self.words + self.remap_words) * BEAT_BYTES


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

    @property
    def has_remap(self) -> bool:
        return any(t.pruned for t in self.tables)

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
    kind: str               # table | remap | onchip_src | bag_off | ids | psw | out | scalar
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
        return sum(t.words + t.remap_words for t in self.onchip)

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
        phys = int(g.type_of(f.table).shape[0])
        if f.remap is not None and int(g.type_of(f.remap).shape[0]) != f.rows:
            raise ValueError(f"feature {f.feature!r}: its remap has {g.type_of(f.remap).shape[0]} entries for a "
                             f"table of {f.rows} logical rows; rerun prune_embeddings")
        padn = -1 if f.padding_idx is None else int(f.padding_idx) % f.rows
        lanes = choose_lanes(tp.chunks, tp.pooling, fadd_latency)
        tables.append(TableSpec(tp, f.mode, padn, bool(f.has_psw), lanes, f.table, f.jagged, f.psw,
                                remap_value=f.remap, phys_rows=phys))
    off = 0
    for t in tables:
        if t.onchip:
            t.onchip_offset = off
            off += t.words
            if t.pruned:
                t.remap_onchip_offset = off
                off += t.remap_words
    units = [UnitSpec(u, [tables[i] for i in u.tables]) for u in plan.units]
    ks = KernelSpec(plan, tables, units, fadd_latency, outstanding)
    args = []
    for t in ks.offchip:
        args.append(Arg(t.arg, "const xrec_word_t*", "table", f"{t.plan.memory}{t.plan.channel}",
                        _bank(t.plan.memory, t.plan.channel)))
    for t in ks.offchip:     # a pruned table's remap lives next to its rows, read through a 32-bit port
        if t.pruned:
            args.append(Arg(t.remap_arg, "const int*", "remap", f"{t.plan.memory}{t.plan.channel}_remap",
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
    f = formats.by_name(t.plan.fmt)
    return f.value_bytes(t.plan.dim) if f.quantized else 0


def memory_use(ks: KernelSpec) -> dict[str, int]:
    """Bytes the kernel really stores per memory ({"hbm3": ..., "ddr0": ..., "onchip": ...}): table
    images (compact tables for pruned ones) plus remaps.

    The placement pass sizes tables the same way (``TablePlan.image_bytes``); ``check_capacity``
    verifies that the plan and the kernel agree."""
    out: dict[str, int] = {}
    for t in ks.tables:
        key = "onchip" if t.onchip else f"{t.plan.memory}{t.plan.channel}"
        out[key] = out.get(key, 0) + t.stored_bytes
    return out


def check_capacity(ks: KernelSpec) -> None:
    """Fail if what the kernel stores (compact tables + remaps) overflows a channel or the on-chip budget."""
    for t in ks.tables:
        if t.stored_bytes != t.plan.image_bytes:
            raise ValueError(f"hls target: table of feature {t.plan.feature!r} stores {t.stored_bytes:,} bytes but "
                             f"the placement plan sized it as {t.plan.image_bytes:,}; the plan is stale: rerun "
                             "place_tables (recompile the model)")
    use = memory_use(ks)
    cap = {f"{c.memory}{c.index}": c.capacity for c in ks.plan.channels}
    cap["onchip"] = ks.plan.onchip_budget
    for key, used in sorted(use.items()):
        if used > cap.get(key, 0):
            feats = [t.plan.feature for t in ks.tables
                     if ("onchip" if t.onchip else f"{t.plan.memory}{t.plan.channel}") == key]
            raise ValueError(f"hls target: {key} holds {used:,} bytes of tables and remaps ({', '.join(feats)}) "
                             f"but has room for {cap.get(key, 0):,}. Give that memory more room "
                             "(hbm_channel_bytes, ddr_bank_bytes, uram_bytes/bram_bytes) or prune more rows")
