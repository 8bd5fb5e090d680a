"""What a cost rule may ask about the graph at one batch: concrete shapes, tiers, cache shares.

The IR's shapes are symbolic in the batch ``B`` and in the id count ``N_<feature>`` of every sparse
feature (see ``xrec.ir.types``). A :class:`CostContext` binds them: ``B`` to the batch, each id count to
``batch x`` the feature's mean ids per bag recorded at compile time (``graph.meta["pooling"]``,
``xrec.ir.stats``), so the same graph is costed at any batch. A feature without statistics, or any other
symbol, is assumed to be one id (one row) per batch row; the assumption is reported in ``notes``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import sympy

from xrec.ir import formats
from xrec.ir.graph import Graph, feature_inputs
from xrec.ir.ops import Op
from xrec.ir.stats import pooling_stats
from xrec.ir.types import BATCH, DType, JaggedType, TensorType, eval_dim

from .cache import IdDistribution
from .work import CACHE, MAIN


def row_bytes(table: TensorType, dim: int) -> int:
    """Bytes of one row of an embedding table of IR type ``table`` (its format's, from xrec.ir.formats)."""
    try:
        return formats.of_type(table).row_bytes(dim)
    except ValueError:
        if table.layout:
            raise
        return dim * table.dtype.itemsize          # a float table of a dtype with no row format (f64)


@dataclass(frozen=True)
class Gather:
    """One feature's table reads per batch (what the cache is shared by)."""

    key: tuple[str, str]       # (embedding node, feature)
    rows: int                  # physical rows of the table
    row_bytes: int
    ids: int                   # ids read per batch


@dataclass
class CostContext:
    graph: Graph
    batch: int
    cache_bytes: int = 0
    ids: IdDistribution = field(default_factory=IdDistribution)
    bindings: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    table_cache: dict[tuple[str, str], int] = field(default_factory=dict)   # gather key -> cached rows
    dense_param_bytes: int = 0
    largest_param_bytes: int = 0        # the biggest dense parameter (a layer's weight matrix)

    @classmethod
    def build(cls, g: Graph, batch: int, *, cache_bytes: int = 0, ids: IdDistribution | None = None,
              pooling: Mapping[str, float] | None = None) -> "CostContext":
        """Bind ``g``'s symbols at ``batch``; ``pooling`` (feature -> mean ids per bag) overrides the recorded."""
        if not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive integer, got {batch!r}")
        if cache_bytes < 0:
            raise ValueError(f"cache_bytes must be >= 0, got {cache_bytes}")
        ctx = cls(g, batch, int(cache_bytes), ids or IdDistribution())
        ctx._bind(dict(pooling or {}))
        ctx._share_cache()
        emb_tables = {fi.table for n in g.nodes_of(Op.EMBEDDING_BAG, Op.EMBEDDING_BAG_GROUP)
                      for fi in feature_inputs(n)} | {n.inputs[0] for n in g.nodes_of(Op.EMBEDDING)}
        dense = [ctx.nbytes(n.name) for n in g.nodes_of(Op.PARAM) if n.name not in emb_tables]
        ctx.dense_param_bytes = sum(dense)
        ctx.largest_param_bytes = max(dense, default=0)
        return ctx

    # ---- symbols ----
    def _bind(self, pooling: dict[str, float]) -> None:
        stats = pooling_stats(self.graph)
        b = {BATCH.name: self.batch}
        for j in self.graph.nodes_of(Op.JAGGED):
            feat = j.attr("feature", j.name)
            nnz = j.type.nnz
            if isinstance(nnz, int):
                continue
            if feat in pooling:
                mean = float(pooling[feat])
            elif feat in stats and stats[feat].bags:
                mean = stats[feat].mean
            else:
                mean = 1.0
                self.notes.append(f"feature {feat!r} has no pooling statistics (graph.meta['pooling']): "
                                  "assumed 1 id per bag")
            free = [s for s in nnz.free_symbols if s.name not in b]
            if len(free) == 1:
                target = max(0, math.ceil(mean * self.batch - 1e-9))
                sol = sympy.solve(sympy.Eq(nnz.subs({s: b[s.name] for s in nnz.free_symbols if s.name in b}),
                                           target), free[0])
                if len(sol) == 1 and sol[0].is_number:
                    b[free[0].name] = max(0, int(round(float(sol[0]))))
        for n in self.graph.input_nodes:
            t = n.type
            dims = t.shape if isinstance(t, TensorType) else (t.batch, t.nnz)
            for d in dims:
                if isinstance(d, int):
                    continue
                for s in d.free_symbols:
                    if s.name not in b:
                        b[s.name] = self.batch
                        self.notes.append(f"symbol {s.name} (input %{n.name}) has no recorded statistics: "
                                          f"assumed equal to the batch ({self.batch})")
        self.bindings = b

    def dim(self, d) -> int:
        return eval_dim(d, self.bindings)

    def shape(self, name: str) -> tuple[int, ...]:
        t = self.graph.type_of(name)
        if isinstance(t, JaggedType):
            raise TypeError(f"%{name} is a jagged feature, it has no dense shape")
        return tuple(self.dim(d) for d in t.shape)

    def numel(self, name: str) -> int:
        return math.prod(self.shape(name))

    def itemsize(self, name: str) -> int:
        return self.graph.type_of(name).dtype.itemsize

    def dtype(self, name: str) -> DType:
        return self.graph.type_of(name).dtype

    def nbytes(self, name: str) -> int:
        """Bytes of a value (a jagged feature: its indices and offsets)."""
        t = self.graph.type_of(name)
        if isinstance(t, JaggedType):
            nnz, bags = self.dim(t.nnz), self.dim(t.batch)
            return nnz * t.index_dtype.itemsize + (bags + t.include_last_offset) * t.offset_dtype.itemsize
        return self.numel(name) * t.dtype.itemsize

    # ---- memory tiers ----
    def tier_for(self, nbytes: float) -> str:
        """Where a tensor of ``nbytes`` is read from: the cache when it fits in it, else main memory."""
        return CACHE if 0 < nbytes <= self.cache_bytes else MAIN

    def weight_tier(self) -> str:
        """Dense weights stay in cache across calls when all of them fit in it."""
        return CACHE if 0 < self.dense_param_bytes <= self.cache_bytes else MAIN

    def gathers(self) -> list[Gather]:
        out = []
        for n in self.graph.nodes_of(Op.EMBEDDING_BAG, Op.EMBEDDING_BAG_GROUP):
            for fi in feature_inputs(n):
                t = self.graph.type_of(fi.table)
                out.append(Gather((n.name, fi.feature.feature), self.dim(t.shape[0]),
                                  row_bytes(t, fi.feature.dim), self.dim(self.graph.type_of(fi.jagged).nnz)))
        for n in self.graph.nodes_of(Op.EMBEDDING):
            t = self.graph.type_of(n.inputs[0])
            out.append(Gather((n.name, n.name), self.dim(t.shape[0]), row_bytes(t, self.dim(n.type.shape[-1])),
                              self.numel(n.inputs[1])))
        return out

    def _share_cache(self) -> None:
        """Split the cache among tables in proportion to the bytes each gathers per batch.

        A table gets at most all its rows; what a small table leaves is not handed on (conservative).
        """
        gathers = self.gathers()
        total = sum(gt.ids * gt.row_bytes for gt in gathers)
        for gt in gathers:
            share = self.cache_bytes * (gt.ids * gt.row_bytes / total) if total else 0.0
            self.table_cache[gt.key] = min(gt.rows, int(share // gt.row_bytes)) if gt.row_bytes else 0

    def cached_rows(self, node: str, feature: str) -> int:
        return self.table_cache.get((node, feature), 0)
