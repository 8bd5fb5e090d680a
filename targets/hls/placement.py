"""The hls target's placement stage: every embedding table onto a memory channel (FPGA HBM/DDR or on-chip RAM).

The gather side of a recommendation model is bound by memory: each query reads
``pooling x row_bytes`` per table from wherever the table lives. This pass
balances that traffic over the memory channels of an FPGA card (default: an
Alveo U280-like board, 32 HBM pseudo-channels of 256 MiB at ~14.4 GB/s and
2 DDR4 banks of 16 GiB at ~19.2 GB/s) and keeps hot small tables on chip
(URAM/BRAM budget). The result is a plan that the ``hls`` target emits code,
``v++`` connectivity and its cycle report from.

Policy (also written into the plan, see ``Plan.policy``):

1. Row bytes are what a 512-bit memory port moves: ``ceil(row_bytes / 64)``
   beats of 64 bytes, for the row format (``xrec.ir.formats``; fp32: 4*dim, fp16/bf16: 2*dim,
   FBGEMM row-wise int8: dim bytes then fp32 scale and bias; int4/int2:
   packed values then fp16 scale and bias). fp32 tables are stored as the
   ``row_format`` option says; tables already compressed keep their format.
2. Load of a table = pooling factor (ids per bag) x padded row bytes, bytes
   per query. Pooling comes from the ``pooling`` option (a number, or a
   {feature: number} map), else from the pooling statistics recorded in the
   graph (``xrec.ir.stats``: the frontend measures them on the example
   inputs), else it is ASSUMED to be 1 id per bag (one-hot) -- the plan
   records which (``pooling_source``).
3. On chip: tables in decreasing order of load per stored byte (pooling /
   rows: small and hot first) while they fit the URAM+BRAM budget; they are
   spread over up to ``onchip_units`` gather units by load (LPT).
4. Off chip: tables larger than one HBM channel go to a DDR bank (no table is
   split across channels: one row is always one burst from one channel).
   Then every table, heaviest load first (forced-DDR ones first of all), goes
   to the channel whose finishing time ``(load + table load) / bandwidth`` is
   smallest among those with room (LPT: the busiest channel is within one
   table's load of the optimum). A table that fits nowhere is an error.
5. One gather unit per channel that holds tables. Each unit's I/O (ids,
   offsets, weights, pooled output) goes to the HBM channel (DDR if there is
   no HBM) with the least time after tables and earlier units' I/O.

The plan is stored as ``Graph.meta["hls.placement"]`` (ints, strings and
tuples only, so it survives ``ir.json``) and, per table, as a ``placement``
attribute ``(memory, channel, unit)`` on the embedding nodes.

This is a stage of the hls target, not a generic pass: the target registers
``place`` as the pipeline stage ``place_tables`` (see ``targets/hls/__init__.py``),
so ``xrec ir MODEL -t hls --after place_tables`` shows the placed graph.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields

from xrec.ir import Graph, Op, formats
from xrec.ir.stats import pooling_stats

META_KEY = "hls.placement"
BEAT_BYTES = 64
ROW_FORMATS = ("fp32", "fp16", "int8")    # what the ``row_format`` option may store fp32 tables as


@dataclass(frozen=True)
class MemoryConfig:
    """The card's memory system and the placement inputs (all configurable through target options)."""

    hbm_channels: int = 32
    hbm_channel_bytes: int = 256 * 2**20
    hbm_gbps: float = 14.4
    ddr_banks: int = 2
    ddr_bank_bytes: int = 16 * 2**30
    ddr_gbps: float = 19.2
    uram_bytes: int = 9_100_000
    bram_bytes: int = 4_500_000
    onchip_units: int = 4
    row_format: str = "fp32"          # fp32 | fp16 | int8: how fp32 tables are stored on the card
    pooling: object = None            # None | number | {feature: number}
    default_pooling: float = 1.0

    def __post_init__(self):
        for f in ("hbm_channels", "ddr_banks", "hbm_channel_bytes", "ddr_bank_bytes", "uram_bytes",
                  "bram_bytes", "onchip_units"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"place_tables: {f} must be a non-negative int, got {v!r}")
        for f in ("hbm_gbps", "ddr_gbps", "default_pooling"):
            v = getattr(self, f)
            if not isinstance(v, (int, float)) or v <= 0:
                raise ValueError(f"place_tables: {f} must be a positive number, got {v!r}")
        if self.row_format not in ROW_FORMATS:
            raise ValueError(f"place_tables: row_format must be one of {ROW_FORMATS}, got {self.row_format!r}")
        if self.pooling is not None and (isinstance(self.pooling, bool)
                                         or not isinstance(self.pooling, (int, float, dict))):
            raise ValueError("place_tables: pooling must be a number or a {feature: number} dict, got "
                             f"{type(self.pooling).__name__}")

    @property
    def onchip_bytes(self) -> int:
        return self.uram_bytes + self.bram_bytes

    def key(self) -> str:
        d = asdict(self)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


# --------------------------------------------------------------------------
# the plan (dataclasses <-> ints/strings/tuples in Graph.meta)
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Channel:
    memory: str          # "hbm" | "ddr"
    index: int
    capacity: int        # bytes
    mbps: int            # peak bandwidth, MB/s (1e6 bytes)

    @property
    def bank(self) -> str:
        return f"{self.memory.upper()}[{self.index}]"


@dataclass(frozen=True)
class TablePlan:
    id: int              # global table number (order of appearance in the graph)
    node: str            # embedding node computing it
    pos: int             # feature position inside the node
    feature: str
    rows: int
    dim: int
    fmt: str             # fp32 | fp16 | bf16 | int8 | int4 | int2
    beats: int           # 512-bit words per row
    chunks: int          # 16-float vectors per pooled row
    pooling_milli: int   # ids per bag x 1000
    memory: str          # "hbm" | "ddr" | "onchip"
    channel: int         # channel index (for onchip: on-chip unit number)
    unit: int            # gather unit that reads it
    stored_rows: int = -1  # a pruned table: rows of its compact table (its int32 remap is stored too); -1: not pruned

    @property
    def image_bytes(self) -> int:
        """Bytes stored in its memory: the rows in whole beats (one zero row for a table that keeps
        none), plus a pruned table's remap (16 int32 entries per beat)."""
        if self.stored_rows < 0:
            return self.rows * self.beats * BEAT_BYTES
        return (max(1, self.stored_rows) * self.beats + -(-self.rows // 16)) * BEAT_BYTES

    @property
    def pooling(self) -> float:
        return self.pooling_milli / 1000.0

    @property
    def load(self) -> float:
        """Bytes read from its memory per query."""
        return self.pooling * self.beats * BEAT_BYTES


@dataclass(frozen=True)
class UnitPlan:
    id: int
    memory: str          # memory of its tables: "hbm" | "ddr" | "onchip"
    channel: int
    io_memory: str       # where its ids/offsets/weights/output live
    io_channel: int
    tables: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"u{self.id}"


@dataclass(frozen=True)
class Plan:
    config_key: str
    channels: tuple[Channel, ...]
    onchip_budget: int
    pooling_source: str
    tables: tuple[TablePlan, ...]
    units: tuple[UnitPlan, ...]
    policy: str = "ddr_spill"     # tables larger than an HBM channel go to DDR, never split

    # -------- queries --------
    def channel(self, memory: str, index: int) -> Channel:
        for c in self.channels:
            if c.memory == memory and c.index == index:
                return c
        raise KeyError(f"plan has no {memory} channel {index}")

    def onchip_bytes(self) -> int:
        return sum(t.image_bytes for t in self.tables if t.memory == "onchip")

    def channel_load(self) -> dict[tuple[str, int], float]:
        """Table bytes read per query on each off-chip channel."""
        out: dict[tuple[str, int], float] = {}
        for t in self.tables:
            if t.memory != "onchip":
                out[(t.memory, t.channel)] = out.get((t.memory, t.channel), 0.0) + t.load
        return out

    # -------- (de)serialization --------
    def to_meta(self) -> tuple:
        return (
            ("version", 1),
            ("config_key", self.config_key),
            ("policy", self.policy),
            ("pooling_source", self.pooling_source),
            ("onchip_budget", self.onchip_budget),
            ("channels", tuple((c.memory, c.index, c.capacity, c.mbps) for c in self.channels)),
            ("tables", tuple(tuple(getattr(t, f.name) for f in fields(TablePlan)) for t in self.tables)),
            ("units", tuple((u.id, u.memory, u.channel, u.io_memory, u.io_channel, tuple(u.tables))
                            for u in self.units)),
        )

    @staticmethod
    def from_meta(meta) -> "Plan":
        d = dict(meta)
        if d.get("version") != 1:
            raise ValueError(f"placement plan version {d.get('version')} is not 1; recompile the model")
        return Plan(config_key=d["config_key"], policy=d["policy"], pooling_source=d["pooling_source"],
                    onchip_budget=int(d["onchip_budget"]),
                    channels=tuple(Channel(*c) for c in d["channels"]),
                    tables=tuple(TablePlan(*t) for t in d["tables"]),
                    units=tuple(UnitPlan(u[0], u[1], u[2], u[3], u[4], tuple(u[5])) for u in d["units"]))

    def to_json(self) -> dict:
        """Readable form for the manifest."""
        return {
            "policy": self.policy, "pooling_source": self.pooling_source,
            "onchip_budget_bytes": self.onchip_budget, "onchip_used_bytes": self.onchip_bytes(),
            "channels": [asdict(c) for c in self.channels],
            "tables": [{**asdict(t), "image_bytes": t.image_bytes, "bytes_per_query": t.load} for t in self.tables],
            "units": [{**asdict(u), "name": u.name} for u in self.units],
        }


def plan_of(g: Graph) -> Plan:
    """The placement plan recorded on ``g`` (raises if the pass did not run)."""
    meta = g.meta_get(META_KEY)
    if meta is None:
        raise KeyError(f"graph {g.name!r} has no table placement; run the hls target's place_tables stage "
                       "(xrec.targets.hls.placement.place)")
    return Plan.from_meta(meta)


# --------------------------------------------------------------------------
# planning
# --------------------------------------------------------------------------
def gather_nodes(g: Graph) -> list:
    """The nodes whose tables the FPGA gathers: table-batched groups and lone embedding bags."""
    return [n for n in g.nodes if n.op in (Op.EMBEDDING_BAG_GROUP, Op.EMBEDDING_BAG)]


@dataclass(frozen=True)
class Feature:
    """One table read by a gathered node, with the IR values it comes from."""

    feature: str
    mode: str
    padding_idx: int | None
    has_psw: bool
    rows: int            # logical rows: ids range over [0, rows)
    dim: int             # logical row length (also for packed/quantized layouts)
    table: str           # IR value of the table parameter
    jagged: str
    psw: str | None
    remap: str | None    # pruned tables: int32 [rows] logical -> physical row (-1: pruned)


def node_features(g: Graph, n) -> list[Feature]:
    """The tables a gathered node reads, in its feature order."""
    if n.op is Op.EMBEDDING_BAG:
        psw = bool(n.attr("has_psw", False))
        remap = bool(n.attr("has_remap", False))
        tab = g.type_of(n.inputs[0])
        rows = int(g.type_of(n.inputs[-1]).shape[0]) if remap else int(tab.shape[0])
        return [Feature(n.attr("feature", n.name), n.attr("mode"), n.attr("padding_idx", None), psw, rows,
                        int(n.type.shape[1]), n.inputs[0], n.inputs[1], n.inputs[2] if psw else None,
                        n.inputs[-1] if remap else None)]
    out, pos = [], 0
    for f in n.attr("features"):
        remap = bool(getattr(f, "has_remap", False))
        k = 2 + int(f.has_psw) + int(remap)
        ins = n.inputs[pos:pos + k]
        out.append(Feature(f.feature, f.mode, f.padding_idx, f.has_psw, int(f.num_rows), int(f.dim), ins[0],
                           ins[1], ins[2] if f.has_psw else None, ins[-1] if remap else None))
        pos += k
    return out


def table_format(row_format: str, ttype) -> str:
    """How a table's rows are stored on the card (a name of :mod:`xrec.ir.formats`).

    Tables the model (or xrec's compression) already stores narrow keep their
    format (fp16, bf16, FBGEMM row-wise int8/int4/int2); fp32 tables are
    stored as ``row_format``.
    """
    fmt = formats.of_type(ttype).name
    return row_format if fmt == "fp32" else fmt


def row_beats(fmt: str, dim: int) -> int:
    """512-bit beats of one row of ``dim`` values in format ``fmt`` (row bytes from xrec.ir.formats)."""
    return max(1, math.ceil(formats.by_name(fmt).row_bytes(dim) / BEAT_BYTES))


MIN_POOLING = 0.001      # ids per bag: the plan stores pooling in thousandths


def _pooling(g: Graph, feats: list[str], cfg: MemoryConfig) -> tuple[list[float], str]:
    """Ids per bag of each table and where the numbers come from: the ``pooling`` option, else the
    statistics recorded in the graph (``xrec.ir.stats``: measured by the frontend on the example inputs, or
    on a calibration set), else ``default_pooling`` -- never guessed from the model's name."""
    p = cfg.pooling
    if isinstance(p, (int, float)):
        return [float(p)] * len(feats), "option"
    given = dict(p or {})
    unknown = sorted(set(given) - set(feats))
    if unknown:
        raise ValueError(f"place_tables: pooling given for unknown features {unknown}; "
                         f"features are {sorted(set(feats))}")
    stats = pooling_stats(g)
    out, kinds = [], []
    for f in feats:
        if f in given:
            out.append(float(given[f]))
            kinds.append("option")
        elif f in stats and stats[f].mean > 0:
            out.append(max(stats[f].mean, MIN_POOLING))
            kinds.append("graph statistics (ids per bag measured on the example or calibration inputs)")
        else:
            out.append(float(cfg.default_pooling))
            kinds.append(f"assumed {cfg.default_pooling:g} id per bag (no statistics given)")
    counts = {k: kinds.count(k) for k in dict.fromkeys(kinds)}
    if len(counts) <= 1:
        return out, next(iter(counts), "option")
    return out, "; ".join(f"{k}: {n} tables" for k, n in counts.items())


def make_plan(g: Graph, cfg: MemoryConfig) -> Plan:
    raw = []
    for n in gather_nodes(g):
        for pos, f in enumerate(node_features(g, n)):
            stored = int(g.type_of(f.table).shape[0]) if f.remap is not None else -1
            raw.append((n.name, pos, f.feature, f.rows, f.dim, table_format(cfg.row_format, g.type_of(f.table)),
                        stored))
    pooling, source = _pooling(g, [r[2] for r in raw], cfg)
    for p, r in zip(pooling, raw):
        if not p > 0:
            raise ValueError(f"place_tables: pooling of feature {r[2]!r} must be > 0, got {p}")

    channels = tuple([Channel("hbm", i, cfg.hbm_channel_bytes, int(round(cfg.hbm_gbps * 1000)))
                      for i in range(cfg.hbm_channels)] +
                     [Channel("ddr", i, cfg.ddr_bank_bytes, int(round(cfg.ddr_gbps * 1000)))
                      for i in range(cfg.ddr_banks)])
    ids = list(range(len(raw)))
    beats = [row_beats(r[5], r[4]) for r in raw]
    size = [TablePlan(0, "", 0, "", r[3], r[4], r[5], b, 0, 0, "", 0, 0, r[6]).image_bytes
            for r, b in zip(raw, beats)]
    load = [p * b * BEAT_BYTES for p, b in zip(pooling, beats)]
    where: dict[int, tuple[str, int]] = {}

    # 3. on chip: hottest bytes per stored byte first
    budget = cfg.onchip_bytes
    onchip = []
    if cfg.onchip_units > 0:
        for t in sorted(ids, key=lambda t: (-load[t] / size[t], size[t], t)):
            if size[t] <= budget:
                budget -= size[t]
                onchip.append(t)
    on_load = [0.0] * cfg.onchip_units
    chunks = [math.ceil(r[4] / 16) for r in raw]
    for t in sorted(onchip, key=lambda t: (-pooling[t] * chunks[t], t)):
        k = min(range(cfg.onchip_units), key=lambda k: (on_load[k], k))
        on_load[k] += pooling[t] * chunks[t]
        where[t] = ("onchip", k)

    # 4. off chip: LPT over channels with room
    used = {(c.memory, c.index): 0 for c in channels}
    time = {(c.memory, c.index): 0.0 for c in channels}
    bw = {(c.memory, c.index): c.mbps for c in channels}
    cap = {(c.memory, c.index): c.capacity for c in channels}
    rest = [t for t in ids if t not in where]
    rest.sort(key=lambda t: (size[t] <= cfg.hbm_channel_bytes, -load[t], -size[t], t))
    for t in rest:
        fits = [k for k in used if used[k] + size[t] <= cap[k]]
        if not fits:
            roomiest = max(used, key=lambda k: cap[k] - used[k], default=None)
            free = (f"the most room left is {cap[roomiest] - used[roomiest]:,} bytes in "
                    f"{roomiest[0].upper()}[{roomiest[1]}]") if roomiest else "the card has no HBM or DDR"
            raise ValueError(
                f"place_tables: table of feature {raw[t][2]!r} ({size[t]:,} bytes as {raw[t][5]} rows"
                f"{', compact table + remap' if raw[t][6] >= 0 else ''}) fits no "
                f"memory channel (HBM channels hold {cfg.hbm_channel_bytes:,} bytes each, DDR banks "
                f"{cfg.ddr_bank_bytes:,}; {free}); give the target more memory (hbm_channel_bytes, "
                "ddr_bank_bytes) or store narrower rows (quantize_rows='int8')")
        k = min(fits, key=lambda k: ((time[k] + load[t] / bw[k]), k[0] != "hbm", k[1]))
        used[k] += size[t]
        time[k] += load[t] / bw[k]
        where[t] = k

    # 5. units: one per channel holding tables, on-chip units after
    keys = [(c.memory, c.index) for c in channels] + [("onchip", k) for k in range(cfg.onchip_units)]
    unit_of: dict[int, int] = {}
    unit_rows = []
    for key in keys:
        members = [t for t in ids if where[t] == key]
        if members:
            uid = len(unit_rows)
            for t in members:
                unit_of[t] = uid
            unit_rows.append((uid, key, tuple(members)))
    io_time = dict(time)
    io_keys = [k for k in io_time if k[0] == "hbm"] or [k for k in io_time if k[0] == "ddr"]
    if unit_rows and not io_keys:
        raise ValueError("place_tables: the card needs at least one HBM channel or DDR bank for the "
                         "ids and the pooled output")
    units = []
    io_load = {}
    for uid, key, members in unit_rows:
        io_load[uid] = sum(pooling[t] * 8 + 4 + chunks[t] * BEAT_BYTES for t in members)
    io_of = {}
    for uid in sorted(io_load, key=lambda u: (-io_load[u], u)):
        k = min(io_keys, key=lambda k: (io_time[k] + io_load[uid] / bw[k], k[1]))
        io_time[k] += io_load[uid] / bw[k]
        io_of[uid] = k
    for uid, key, members in unit_rows:
        units.append(UnitPlan(uid, key[0], key[1], io_of[uid][0], io_of[uid][1], members))

    tables = tuple(TablePlan(id=t, node=raw[t][0], pos=raw[t][1], feature=raw[t][2], rows=raw[t][3],
                             dim=raw[t][4], fmt=raw[t][5], beats=beats[t], chunks=chunks[t],
                             pooling_milli=int(round(pooling[t] * 1000)), memory=where[t][0],
                             channel=where[t][1], unit=unit_of[t], stored_rows=raw[t][6]) for t in ids)
    return Plan(config_key=cfg.key(), channels=channels, onchip_budget=cfg.onchip_bytes,
                pooling_source=source, tables=tables, units=tuple(units))


def place(g: Graph, cfg: MemoryConfig | None = None) -> Graph:
    """Plan the placement of ``g``'s tables under ``cfg`` and record it on a new graph."""
    cfg = cfg or MemoryConfig()
    plan = make_plan(g, cfg)
    by_node: dict[str, list[TablePlan]] = {}
    for t in plan.tables:
        by_node.setdefault(t.node, []).append(t)
    nodes = []
    for n in g.nodes:
        if n.name in by_node:
            attrs = dict(n.attrs)
            attrs["placement"] = tuple((t.memory, t.channel, t.unit) for t in by_node[n.name])
            n = n.with_(attrs=attrs)
        nodes.append(n)
    meta = tuple((k, v) for k, v in g.meta if k != META_KEY) + ((META_KEY, plan.to_meta()),)
    return g.with_(nodes=tuple(nodes), meta=meta)
