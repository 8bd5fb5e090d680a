"""Lower the optimized IR to a ``Program``: Triton kernel launches, views, and torch steps.

Per IR node:

* EMBEDDING_BAG_GROUP / EMBEDDING_BAG -> ``embedding_bag_group_kernel``: every
  table of one row format in one launch, metadata in small device arrays;
* MLP / LINEAR -> one ``linear_kernel`` per layer (bias + activation in the
  epilogue), tile config per batch bucket chosen here from the shape;
* CROSS_LAYER -> ``linear_kernel`` with the cross epilogue (low rank: two);
* DOT_INTERACTION -> ``interaction_kernel``, fused with DLRM's following
  ``cat(dense, interactions)``; FM -> ``fm_kernel``;
* connected elementwise / row-reduction work -> one generated kernel per
  cluster (``elementwise.py``);
* CAT along columns costs nothing: producers write into their slot of the
  concatenation (inputs that cannot, e.g. user inputs, get a copy kernel);
  RESHAPE / SLICE / EXPAND / PERMUTE are views;
* anything else -> a ``TorchStep`` (torch ops on the device).
"""
from __future__ import annotations

import heapq

import numpy as np
import sympy

from xrec.ir import Graph, Op, feature_inputs, mlp_layers
from xrec.ir.rules import embedding_row_dim, slice_length
from xrec.ir.types import DType, canon_dim, dims_equal

from . import elementwise as ew
from .program import (BLOB, CONST, ERRFLAG, INPUT, PTRTABLE, TEMP, Arg, Buffer, ErrorSlot, Launch, Program,
                      TorchStep, Variant, View, contiguous_strides)

ACT_CODES = {"none": 0, "relu": 1, "sigmoid": 2, "tanh": 3, "gelu": 4, "gelu_tanh": 5, "silu": 6}
POOL_CODES = {"sum": 0, "mean": 1, "max": 2}
# (dtype, layout) of a table -> (KIND constexpr, dtype the kernel reads the weights as)
ROW_FORMATS = {
    (DType.F32, ""): (0, "f32"),
    (DType.F16, ""): (1, "f16"),
    (DType.U8, "rowwise_i8"): (2, "u8"),
    (DType.U8, "rowwise_i4"): (3, "u8"),
    (DType.U8, "rowwise_i2"): (4, "u8"),
    (DType.BF16, ""): (5, "i16"),
}
ROW_NAMES = {0: "f32", 1: "f16", 2: "int8 row-wise", 3: "int4 row-wise", 4: "int2 row-wise", 5: "bf16"}
KERNEL_INPUT_DTYPES = (DType.F32, DType.F16)
WEIGHTS = "weights"
ERR = "err"


def np2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def cdiv_grid(expr, block: int):
    return (canon_dim(expr), int(block))


def linear_variants(M, N: int, K: int, precision: str) -> list[Variant]:
    """Tile configs for Y[M, N] = X[M, K] W^T, picked by batch at run time (two per shape, so AOT
    compiles stay few): skinny tiles while the batch is small (the layer streams its weights; many
    programs along N keep every SM busy), square ones after. fp32 with exact (ieee) products runs
    on the FMA units: moderate tiles; tf32/fp16 on tensor cores: larger. tl.dot needs dims >= 16.
    """
    bn = min(64, max(16, np2(N)))
    bk_small = min(64, max(16, np2(K)))
    bk = min(32, max(16, np2(K)))
    small = Variant(64, (cdiv_grid(M, 16), cdiv_grid(N, bn), (1, 1)),
                    dict(BLOCK_M=16, BLOCK_N=bn, BLOCK_K=bk_small), num_warps=4, num_stages=2)
    if precision == "ieee":
        bm, bn_l, warps = 64, bn, 4
    else:
        bm, bn_l, warps = 128, min(128, max(16, np2(N))), 8
    large = Variant(None, (cdiv_grid(M, bm), cdiv_grid(N, bn_l), (1, 1)),
                    dict(BLOCK_M=bm, BLOCK_N=bn_l, BLOCK_K=bk), num_warps=warps, num_stages=3)
    return [small, large]


def embedding_tiles(kind: int, block_d: int) -> tuple[int, int, int]:
    """(L ids per step, BLOCK_B bags per program, warps) of the table-batched embedding kernel.

    Measured on an H200 (bench/results/2026-12-04-gpu-h200.md: dlrm-small's 26 tables, dim 64,
    batch 2048 and 8192, 14 configs): the kernel is bound by the latency of its dependent loads
    (offsets -> ids -> rows), so many small programs beat big tiles. For 64-wide rows: fp32/fp16
    rows one bag per one-warp program, 8 ids a step (46 us vs 100 us for 8 bags x 8 ids on 4 warps
    at batch 2048); int8 rows 16 bags x 2 ids on 4 warps (70 vs 216 us). Other widths and row
    formats keep the tile that was not measured against them: BLOCK_B x L x BLOCK_D = 4096.
    """
    if block_d == 64 and kind in (0, 1):                      # fp32 / fp16 rows
        return 8, 1, 1
    if block_d == 64 and kind == 2:                           # row-wise int8
        return 2, 16, 4
    L = 8
    return L, max(1, min(32, 4096 // (L * block_d))), 4


def linear_interp_variants(M, N: int, K: int) -> list[Variant]:
    """Tiles for Triton's CPU interpreter. It pays ~0.1 ms per op and program and runs tl.dot as a
    numpy matmul (no minimum tile there), so: few programs, and the batch tile only as tall as
    the batch (work grows with the padded rows)."""
    bn, bk = min(256, max(16, np2(N))), min(512, max(16, np2(K)))
    return [Variant(bm if bm < 64 else None, (cdiv_grid(M, bm), cdiv_grid(N, bn), (1, 1)),
                    dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk)) for bm in (1, 2, 4, 8, 16, 32, 64)]


class LoweringError(NotImplementedError):
    pass


class Lowerer:
    def __init__(self, g: Graph, layout: dict, options: dict):
        self.g = g
        self.layout = layout
        self.opts = options
        self.buffers: dict[str, Buffer] = {}
        self.steps: list = []
        self.views: dict[str, View] = {}
        self.jag: dict[str, tuple] = {}
        self.sources: dict[str, str] = {}          # generated kernel name -> source
        self.errors: list[ErrorSlot] = []
        self.hint: dict[str, tuple] = {}            # value -> (cat value, first column)
        self.copies: dict[str, list] = {}           # cat value -> [(value, first column)]
        self.fused_inter: dict[str, str] = {}       # outer cat -> DOT_INTERACTION it absorbs
        self.cluster_of: dict[str, int] = {}
        self.clusters: dict[int, ew.Cluster] = {}
        self.index = {n.name: k for k, n in enumerate(g.nodes)}
        self.outputs = set(g.outputs)

    # ------------------------------------------------------------------ driver
    def run(self) -> tuple[Program, dict[str, str]]:
        g = self.g
        inputs = self._declare_inputs()
        self._declare_params()
        self._find_interaction_fusions()
        self._form_clusters()
        schedule = self._schedule()
        self._place(schedule)
        for unit in schedule:
            if isinstance(unit, int):
                self._emit_cluster(self.clusters[unit])
            else:
                self._emit_node(g.node(unit))
        if self.errors:
            self.buffers[ERR] = Buffer(ERR, ERRFLAG, "i32", (2 * len(self.errors),))
        outs = [self.views[o] for o in g.outputs]
        prog = Program(name=g.name, buffers=self.buffers, steps=self.steps, outputs=outs, inputs=inputs,
                       symbols=self.symbols, errors=self.errors, err_buffer=ERR if self.errors else None,
                       options=dict(self.opts))
        return prog, self.sources

    # ------------------------------------------------------------------ sources
    def _declare_inputs(self) -> list:
        self.symbols: dict[str, tuple] = {}
        out = []
        for k, n in enumerate(self.g.input_nodes):
            t = n.type
            self.buffers[n.name] = Buffer(n.name, INPUT, t.dtype.value, t.shape, index=k)
            self.views[n.name] = View(n.name, t.dtype.value, t.shape, contiguous_strides(t.shape))
            out.append((n.attr("name"), n.name))
            for axis, d in enumerate(t.shape):
                if isinstance(d, int):
                    continue
                free = list(d.free_symbols)
                if len(free) == 1:
                    s = free[0]
                    delta = sympy.expand(d - s)
                    if delta.is_Integer and s.name not in self.symbols:
                        self.symbols[s.name] = (k, axis, int(delta))
        return out

    def _declare_params(self) -> None:
        total = 0
        for name, e in self.layout.items():
            total = max(total, e["offset"] + e["nbytes"])
        total = (total + 63) // 64 * 64
        self.buffers[WEIGHTS] = Buffer(WEIGHTS, BLOB, "u8", (total,))
        self.blob_bytes = total
        for n in self.g.nodes_of(Op.PARAM):
            key = n.attr("name")
            e = self.layout[key]
            dt = np.dtype(e["dtype"])
            code = "i16" if dt == np.uint16 else DType.from_numpy(dt).value    # bf16 tables: uint16 bits
            if e["offset"] % dt.itemsize:
                raise LoweringError(f"parameter {key!r} is not aligned to its element size in weights.bin")
            shape = tuple(e["shape"])
            self.views[n.name] = View(WEIGHTS, code, shape, contiguous_strides(shape), e["offset"] // dt.itemsize)

    # ------------------------------------------------------------------ analysis
    def _cat_rows(self, n) -> bool:
        t = n.type
        return (n.op is Op.CAT and t.rank == 2 and n.attr("dim") % 2 == 1
                and all(self.g.type_of(i).rank == 2 for i in n.inputs))

    def _find_interaction_fusions(self) -> None:
        """cat([x, dot_interaction(reshape(cat([x, ...])))]) -> one interaction launch writing both parts."""
        g = self.g
        for n in g.nodes:
            if not self._cat_rows(n) or len(n.inputs) != 2:
                continue
            x, inter = n.inputs
            it = g.node(inter)
            if it.op is not Op.DOT_INTERACTION or g.num_uses(inter) != 1 or inter in self.outputs:
                continue
            r = g.node(it.inputs[0])
            src = g.node(r.inputs[0]) if r.op is Op.RESHAPE else None
            if src is None or not self._cat_rows(src) or src.inputs[0] != x:
                continue
            t = g.type_of(it.inputs[0])
            if g.type_of(x).shape[1] != t.shape[2]:
                continue
            self.fused_inter[n.name] = inter

    def _form_clusters(self) -> None:
        g = self.g
        extent: dict[int, tuple] = {}
        next_id = 0
        for n in g.nodes:
            ext = ew.node_extent(g, n)
            if ext is None:
                continue
            cid = next_id
            next_id += 1
            self.clusters[cid] = ew.Cluster(cid, [n.name], *ext)
            self.cluster_of[n.name] = cid
            extent[cid] = ext
            for i in n.inputs:
                other = self.cluster_of.get(i)
                cur = self.cluster_of[n.name]
                if other is None or other == cur:
                    continue
                both = ew.compatible(extent[cur], extent[other])
                if both is None:
                    continue
                moved = self.clusters[cur].members
                for m in moved:
                    self.cluster_of[m] = other
                if self._acyclic():
                    self.clusters[other].members = sorted(self.clusters[other].members + moved,
                                                          key=self.index.__getitem__)
                    self.clusters[other].R, self.clusters[other].K = both
                    extent[other] = both
                    del self.clusters[cur]
                else:
                    for m in moved:
                        self.cluster_of[m] = cur

    def _unit(self, name: str):
        return self.cluster_of.get(name, name)

    def _unit_edges(self) -> dict:
        edges: dict = {}
        for n in self.g.nodes:
            u = self._unit(n.name)
            edges.setdefault(u, set())
            for i in n.inputs:
                ui = self._unit(i)
                if ui != u:
                    edges.setdefault(ui, set()).add(u)
        return edges

    def _acyclic(self) -> bool:
        edges = self._unit_edges()
        color: dict = {}
        for start in edges:
            if start in color:
                continue
            stack = [(start, iter(edges[start]))]
            color[start] = 1
            while stack:
                u, it = stack[-1]
                for v in it:
                    c = color.get(v, 0)
                    if c == 1:
                        return False
                    if c == 0:
                        color[v] = 1
                        stack.append((v, iter(edges.get(v, ()))))
                        break
                else:
                    color[u] = 2
                    stack.pop()
        return True

    def _schedule(self) -> list:
        """Units (node names, cluster ids) in a dependency order close to the IR's order."""
        edges = self._unit_edges()
        first: dict = {}
        for n in self.g.nodes:
            u = self._unit(n.name)
            first.setdefault(u, self.index[n.name])
        indeg = {u: 0 for u in edges}
        for u, vs in edges.items():
            for v in vs:
                indeg[v] += 1
        heap = [(first[u], str(u), u) for u, d in indeg.items() if d == 0]
        heapq.heapify(heap)
        order = []
        while heap:
            _, _, u = heapq.heappop(heap)
            order.append(u)
            for v in edges[u]:
                indeg[v] -= 1
                if indeg[v] == 0:
                    heapq.heappush(heap, (first[v], str(v), v))
        return order

    def _cluster_outputs(self, cl: ew.Cluster) -> list[str]:
        members = set(cl.members)
        outs = []
        for m in cl.members:
            if m in self.outputs or any(u.name not in members for u in self.g.users.get(m, [])):
                outs.append(m)
        return outs

    def _writes_own_output(self, name: str) -> bool:
        """Whether the step producing ``name`` can write it into any 2-D row window."""
        n = self.g.node(name)
        if name in self.cluster_of:
            return True
        if n.op in (Op.EMBEDDING_BAG_GROUP, Op.EMBEDDING_BAG, Op.MLP, Op.LINEAR, Op.CROSS_LAYER,
                    Op.DOT_INTERACTION, Op.FM):
            return True
        return n.op not in (Op.INPUT, Op.PARAM, Op.JAGGED, Op.FULL, Op.RESHAPE, Op.SLICE, Op.EXPAND,
                            Op.PERMUTE)

    def _place(self, schedule: list) -> None:
        """Reverse pass: decide which values are written straight into their slot of a concatenation."""
        g = self.g
        for unit in reversed(schedule):
            if isinstance(unit, int):
                continue
            n = g.node(unit)
            if not self._cat_rows(n):
                continue
            self.copies[n.name] = []
            if n.name in self.fused_inter:
                continue
            col = 0
            for i in n.inputs:
                w = g.type_of(i).shape[1]
                if (i not in self.hint and i not in self.outputs and self._writes_own_output(i)
                        and isinstance(w, int) and i not in self.fused_inter.values()):
                    self.hint[i] = (n.name, col)
                else:
                    self.copies[n.name].append((i, col))
                col = canon_dim(col + w)

    # ------------------------------------------------------------------ locations
    def loc(self, name: str) -> View:
        """Where the value ``name`` is stored (allocating a temp unless it goes into a concat slot)."""
        v = self.views.get(name)
        if v is not None:
            return v
        t = self.g.type_of(name)
        if name in self.hint:
            cat, col = self.hint[name]
            base = self.loc(cat)
            v = View(base.buf, base.dtype, t.shape, base.strides, canon_dim(base.offset + col * base.strides[1]))
        else:
            buf = f"t_{name}"
            self.buffers[buf] = Buffer(buf, TEMP, t.dtype.value, t.shape)
            v = View(buf, t.dtype.value, t.shape, contiguous_strides(t.shape))
        self.views[name] = v
        return v

    def rows(self, name: str) -> View:
        """A 2-D unit-column-stride view of ``name`` (copied by a torch step if it is not one)."""
        v = self.views[name]
        if v.is_rows():
            return v
        return self._materialize(name)

    def _materialize(self, name: str) -> View:
        t = self.g.type_of(name)
        buf = f"c_{name}"
        self.buffers[buf] = Buffer(buf, TEMP, t.dtype.value, t.shape)
        out = View(buf, t.dtype.value, t.shape, contiguous_strides(t.shape))
        self.steps.append(TorchStep(node="", inputs=[self.views[name]], jagged=[None], out=out,
                                    note=f"contiguous copy of %{name}"))
        self.views[name] = out
        return out

    # ------------------------------------------------------------------ emission
    def _emit_node(self, n) -> None:
        op = n.op
        if op in (Op.INPUT, Op.PARAM) or n.name in self.fused_inter.values():
            return
        if op is Op.JAGGED:
            self.jag[n.name] = (self.views[n.inputs[0]], self.views[n.inputs[1]], n.attr("include_last_offset", True))
            return
        if op is Op.FULL and ew.scalar_full(self.g, n.name) is not None and all(
                u.name in self.cluster_of for u in self.g.users.get(n.name, [])) and n.name not in self.outputs:
            return                                          # inlined as a literal into the clusters
        try:
            handler = {
                Op.EMBEDDING_BAG_GROUP: self._emit_bags, Op.EMBEDDING_BAG: self._emit_bags,
                Op.MLP: self._emit_mlp, Op.LINEAR: self._emit_linear, Op.CROSS_LAYER: self._emit_cross,
                Op.DOT_INTERACTION: self._emit_interaction, Op.FM: self._emit_fm,
                Op.RESHAPE: self._emit_reshape, Op.SLICE: self._emit_slice, Op.EXPAND: self._emit_expand,
                Op.PERMUTE: self._emit_permute, Op.CAT: self._emit_cat,
            }.get(op)
            if handler is not None and handler(n) is not False:
                return
        except LoweringError:
            if op in (Op.EMBEDDING_BAG_GROUP, Op.EMBEDDING_BAG):
                raise
        self._emit_torch(n)

    def _emit_torch(self, n) -> None:
        views, jag = [], []
        for i in n.inputs:
            if i in self.jag:
                idx, off, _ = self.jag[i]
                views.append(None)
                jag.append([idx, off])
            else:
                views.append(self.views[i])
                jag.append(None)
        self.steps.append(TorchStep(node=n.name, inputs=views, jagged=jag, out=self.loc(n.name),
                                    note=f"%{n.name} = {n.op.value} (torch)"))

    # ---- views
    def _emit_reshape(self, n):
        v = self.views[n.inputs[0]]
        shape = n.type.shape
        if v.strides == contiguous_strides(v.shape):
            self.views[n.name] = View(v.buf, v.dtype, shape, contiguous_strides(shape), v.offset)
            return True
        # same leading dim, trailing dims contiguous: keep the leading stride
        if (len(shape) >= 1 and v.rank >= 1 and dims_equal(shape[0], v.shape[0])
                and tuple(v.strides[1:]) == contiguous_strides(v.shape[1:])):
            self.views[n.name] = View(v.buf, v.dtype, shape, (v.strides[0],) + contiguous_strides(shape[1:]),
                                      v.offset)
            return True
        return False

    def _emit_slice(self, n):
        v = self.views[n.inputs[0]]
        d = n.attr("dim") % v.rank
        start, step = n.attr("start"), n.attr("step", 1)
        size = v.shape[d]
        if start < 0:
            if not isinstance(size, int):
                return False
            start = max(0, size + start)
        if isinstance(size, int):
            start = min(start, size)
        shape = list(v.shape)
        shape[d] = slice_length(size, n.attr("start"), n.attr("end"), step)
        strides = list(v.strides)
        strides[d] = canon_dim(strides[d] * step)
        self.views[n.name] = View(v.buf, v.dtype, tuple(shape), tuple(strides),
                                  canon_dim(v.offset + start * v.strides[d]))
        return True

    def _emit_expand(self, n):
        v = self.views[n.inputs[0]]
        shape = n.type.shape
        pad = len(shape) - v.rank
        strides = []
        for k, d in enumerate(shape):
            if k < pad:
                strides.append(0)
            else:
                src = v.shape[k - pad]
                strides.append(0 if (isinstance(src, int) and src == 1 and not (isinstance(d, int) and d == 1))
                               else v.strides[k - pad])
        self.views[n.name] = View(v.buf, v.dtype, shape, tuple(strides), v.offset)
        return True

    def _emit_permute(self, n):
        v = self.views[n.inputs[0]]
        perm = n.attr("perm")
        self.views[n.name] = View(v.buf, v.dtype, tuple(v.shape[p] for p in perm),
                                  tuple(v.strides[p] for p in perm), v.offset)
        return True

    def _emit_cat(self, n):
        if not self._cat_rows(n):
            return False
        if n.name in self.fused_inter:
            return self._emit_interaction(self.g.node(self.fused_inter[n.name]), out_name=n.name)
        base = self.loc(n.name)
        for i, col in self.copies.get(n.name, []):
            t = self.g.type_of(i)
            slot = View(base.buf, base.dtype, t.shape, base.strides, canon_dim(base.offset + col * base.strides[1]))
            self._emit_copy(i, slot)
        return True

    def _emit_copy(self, name: str, dst: View) -> None:
        t = self.g.type_of(name)
        if t.dtype not in KERNEL_INPUT_DTYPES or not isinstance(t.shape[1], int):
            self.steps.append(TorchStep(node="", inputs=[self.views[name]], jagged=[None], out=dst,
                                        note=f"copy %{name} into its concat slot"))
            return
        src = self.rows(name)
        K = int(t.shape[1])
        gen = ew.generate_copy(K)
        self.sources.setdefault(gen.name, gen.source)
        R = t.shape[0]
        self.steps.append(Launch(
            kernel=gen.name,
            args=[Arg("ptr", src, name="X0"), Arg("i32", expr=src.strides[0], name="X0_rs"),
                  Arg("ptr", dst, name="Y0"), Arg("i32", expr=dst.strides[0], name="Y0_rs"),
                  Arg("i32", expr=R, name="R")],
            variants=[Variant(None, (cdiv_grid(R, gen.block_r), (1, 1), (1, 1)),
                              dict(K=K, BLOCK_R=gen.block_r, BLOCK_K=gen.block_k))],
            batch=R, note=f"copy %{name} [{R}, {K}] into its concat slot"))

    # ---- embedding bags
    def _emit_bags(self, n):
        g = self.g
        feats = []
        for fi in feature_inputs(n):
            f = fi.feature
            table = g.node(fi.table)
            rows = f.num_rows if f.num_rows >= 0 else int(table.type.shape[0])
            if fi.remap is not None:
                rows = int(g.type_of(fi.remap).shape[0])
            feats.append(dict(feature=f.feature, mode=f.mode, padding_idx=f.padding_idx, table=fi.table,
                              jagged=fi.jagged, psw=fi.psw, remap=fi.remap, num_rows=rows,
                              dim=f.dim if n.op is Op.EMBEDDING_BAG_GROUP else embedding_row_dim(n, table.type)))
        out = self.loc(n.name)
        if not out.is_rows():
            raise LoweringError(f"%{n.name}: output must be a row-major 2-D buffer")
        col = 0
        groups: dict[tuple, list] = {}
        for f in feats:
            tnode = g.node(f["table"])
            if tnode.op is not Op.PARAM or (f["remap"] and g.node(f["remap"]).op is not Op.PARAM):
                raise LoweringError(f"%{n.name}: table of feature {f['feature']!r} is computed (%{tnode.name}), "
                                    "the triton target needs tables that are parameters")
            tt = tnode.type
            fmt = ROW_FORMATS.get((tt.dtype, tt.layout))
            if fmt is None:
                known = ", ".join(f"{d.value}{'#' + l if l else ''}" for d, l in ROW_FORMATS)
                raise LoweringError(f"%{n.name}: feature {f['feature']!r} has a table of type {tt}; the triton "
                                    f"target reads tables of type {known}")
            f["kind"], f["wdtype"] = fmt
            f["row_stride"] = int(tt.shape[1])
            f["col"] = col
            col += f["dim"]
            idx, off, last = self.jag[f["jagged"]]
            f["idx"], f["off"], f["last"] = idx, off, last
            key = (f["kind"], idx.dtype, off.dtype, last)
            groups.setdefault(key, []).append(f)
        B = out.shape[0]
        ncol = 10
        for k, ((kind, idt, odt, last), fs) in enumerate(groups.items()):
            meta, rows = [], []
            for f in fs:
                slot = len(self.errors)
                tv = self.views[f["table"]]
                pad = -1 if f["padding_idx"] is None else int(f["padding_idx"]) % f["num_rows"]
                remap = int(self.views[f["remap"]].offset) if f["remap"] else -1
                meta.append([int(tv.offset), f["num_rows"], f["dim"], int(f["col"]), POOL_CODES[f["mode"]], pad,
                             f["row_stride"], slot, remap, 0])
                psw = self.views[f["psw"]] if f["psw"] is not None else None
                rows.append([f["idx"], f["off"], psw, f["idx"].shape[0]])
                self.errors.append(ErrorSlot(slot, f["feature"], f["idx"], f["num_rows"]))
            mname = f"meta_{n.name}_{k}"
            self.buffers[mname] = Buffer(mname, CONST, "i64", (len(fs), ncol), data=[v for r in meta for v in r])
            pname = f"ptrs_{n.name}_{k}"
            self.buffers[pname] = Buffer(pname, PTRTABLE, "i64", (len(fs), 4), rows=rows)
            bd = np2(max(f["dim"] for f in fs))
            L, bb, warps = embedding_tiles(kind, bd)
            wdt = fs[0]["wdtype"]
            cx = dict(KIND=kind, IDX_64=idt == "i64", OFF_64=odt == "i64", INCLUDE_LAST=bool(last),
                      HAS_PSW=any(f["psw"] is not None for f in fs),
                      HAS_PAD=any(f["padding_idx"] is not None for f in fs),
                      HAS_MEAN=any(f["mode"] == "mean" for f in fs), HAS_MAX=any(f["mode"] == "max" for f in fs),
                      HAS_REMAP=any(f["remap"] is not None for f in fs),
                      CHECK=bool(self.opts.get("bounds_check", True)), BLOCK_B=bb, L=L, BLOCK_D=bd)
            wsize = self.blob_bytes // {"f32": 4, "f16": 2, "i16": 2, "u8": 1}[wdt]
            ibb = max(1, min(64, 65536 // (32 * bd)))
            interp = [Variant(None, ((len(fs), 1), cdiv_grid(B, ibb), (1, 1)), {**cx, "BLOCK_B": ibb, "L": 32})]
            self.steps.append(Launch(
                kernel="embedding_bag_group_kernel",
                args=[Arg("ptr", View(WEIGHTS, wdt, (wsize,), (1,)), name="WEIGHTS"),
                      Arg("ptr", View(WEIGHTS, "i32", (self.blob_bytes // 4,), (1,)), name="REMAP"),
                      Arg("ptr", View(mname, "i64", (len(fs), ncol), (ncol, 1)), name="META"),
                      Arg("ptr", View(pname, "i64", (len(fs), 4), (4, 1)), name="PTRS"),
                      Arg("ptr", out, name="OUT"), Arg("ptr", View(ERR, "i32", (1,), (1,)), name="ERR"),
                      Arg("i32", expr=B, name="B"), Arg("i32", expr=out.strides[0], name="stride_out")],
                variants=[Variant(None, ((len(fs), 1), cdiv_grid(B, bb), (1, 1)), cx, num_warps=warps, num_stages=1)],
                batch=B, interp=interp,
                note=f"%{n.name}: {len(fs)} embedding bag(s) "
                     f"[{', '.join(str(f['feature']) + ':' + f['mode'] for f in fs[:4])}"
                     f"{', ...' if len(fs) > 4 else ''}], row format {ROW_NAMES[kind]}"))
        return True

    # ---- dense layers
    def _linear_ok(self, x: str, weights: list[str]) -> bool:
        g = self.g
        t = g.type_of(x)
        return (t.rank == 2 and t.dtype in KERNEL_INPUT_DTYPES
                and all(g.node(w).op is Op.PARAM and g.type_of(w).dtype is t.dtype for w in weights))

    def _linear_launch(self, x: View, w: View, bias: View | None, y: View, act: str, note: str,
                       cross: tuple | None = None) -> None:
        M = x.shape[0]
        N, K = int(w.shape[0]), int(w.shape[1])
        prec = self.opts.get("precision", "tf32x3") if x.dtype == "f32" else "tf32"
        x0, xl = cross if cross else (x, x)
        cx = dict(N=N, K=K, ACT=ACT_CODES[act], HAS_BIAS=bias is not None, CROSS=cross is not None, PRECISION=prec)
        variants = linear_variants(M, N, K, prec)
        interp = linear_interp_variants(M, N, K)
        for v in variants + interp:
            v.constexprs = {**cx, **v.constexprs}
        self.steps.append(Launch(
            kernel="linear_kernel",
            args=[Arg("ptr", x, name="X"), Arg("ptr", w, name="W"), Arg("ptr", bias or w, name="BIAS"),
                  Arg("ptr", y, name="Y"), Arg("ptr", x0, name="X0"), Arg("ptr", xl, name="XL"),
                  Arg("i32", expr=M, name="M"), Arg("i32", expr=x.strides[0], name="stride_x"),
                  Arg("i32", expr=y.strides[0], name="stride_y"), Arg("i32", expr=x0.strides[0], name="stride_x0"),
                  Arg("i32", expr=xl.strides[0], name="stride_xl")],
            variants=variants, batch=M, note=note, interp=interp))

    def _emit_mlp(self, n):
        layers = mlp_layers(n)
        if not self._linear_ok(n.inputs[0], [w for w, b, _ in layers] + [b for _, b, _ in layers if b]):
            return False
        x = self.rows(n.inputs[0])
        out = self.loc(n.name)
        if not out.is_rows():
            return False
        M = x.shape[0]
        for k, (w, b, a) in enumerate(layers):
            wv = self.views[w]
            if k == len(layers) - 1:
                y = out
            else:
                buf = f"t_{n.name}_l{k}"
                shape = (M, int(wv.shape[0]))
                self.buffers[buf] = Buffer(buf, TEMP, x.dtype, shape)
                y = View(buf, x.dtype, shape, contiguous_strides(shape))
            self._linear_launch(x, wv, self.views[b] if b else None, y, a,
                                note=f"%{n.name} layer {k}: [{M}, {wv.shape[1]}] -> {wv.shape[0]}, {a}")
            x = y
        return True

    def _emit_linear(self, n):
        if not self._linear_ok(n.inputs[0], list(n.inputs[1:])):
            return False
        out = self.loc(n.name)
        x = self.rows(n.inputs[0])
        b = self.views[n.inputs[2]] if len(n.inputs) == 3 else None
        self._linear_launch(x, self.views[n.inputs[1]], b, out, "none", note=f"%{n.name} = linear")
        return True

    def _emit_cross(self, n):
        low = n.attr("low_rank")
        weights = list(n.inputs[2:])
        if not self._linear_ok(n.inputs[1], weights) or not self._linear_ok(n.inputs[0], weights):
            return False
        x0, xl = self.rows(n.inputs[0]), self.rows(n.inputs[1])
        out = self.loc(n.name)
        if not out.is_rows():
            return False
        M = xl.shape[0]
        if low:
            v, w, b = (self.views[i] for i in n.inputs[2:])
            r = int(v.shape[0])
            buf = f"t_{n.name}_low"
            self.buffers[buf] = Buffer(buf, TEMP, xl.dtype, (M, r))
            t = View(buf, xl.dtype, (M, r), (r, 1))
            self._linear_launch(xl, v, None, t, "none", note=f"%{n.name}: low-rank projection xl V^T -> {r}")
            src = t
        else:
            w, b = (self.views[i] for i in n.inputs[2:])
            src = xl
        self._linear_launch(src, w, b, out, "none", cross=(x0, xl),
                            note=f"%{n.name}: cross layer x0 * (W x + b) + xl, K={w.shape[0]}")
        return True

    def _emit_interaction(self, n, out_name: str | None = None):
        g = self.g
        t_name = n.inputs[0]
        tt = g.type_of(t_name)
        if tt.dtype not in KERNEL_INPUT_DTYPES:
            return False
        v = self.views[t_name]
        F, D = int(tt.shape[1]), int(tt.shape[2])
        if v.strides[1:] != (D, 1):
            v = self._materialize(t_name)
        pairs = n.attr("pairs")
        DP = np2(D)
        P = len(pairs)
        PP = np2(P)
        pname = f"pairs_{n.name}"
        self.buffers[pname] = Buffer(pname, CONST, "i32", (2, PP), data=[i for i, _ in pairs] + [0] * (PP - P)
                                     + [j for _, j in pairs] + [0] * (PP - P))
        prefix = out_name is not None
        out = self.loc(out_name or n.name)
        B = v.shape[0]
        bp = min(PP, 64)
        bb = max(1, min(16, 4096 // (bp * DP)))
        cx = dict(F=F, D=D, P=P, DP=DP, PP=PP, PREFIX=prefix)
        ibp = min(PP, 1024)
        ibb = max(1, min(64, (1 << 20) // (ibp * DP)))
        self.steps.append(Launch(
            kernel="interaction_kernel",
            args=[Arg("ptr", v, name="T"), Arg("ptr", out, name="OUT"),
                  Arg("ptr", View(pname, "i32", (2, PP), (PP, 1)), name="PAIRS"), Arg("i32", expr=B, name="M"),
                  Arg("i32", expr=v.strides[0], name="stride_t"), Arg("i32", expr=out.strides[0], name="stride_out")],
            variants=[Variant(None, (cdiv_grid(B, bb), (P, bp), (1, 1)), {**cx, "BLOCK_B": bb, "BLOCK_P": bp},
                              num_warps=4, num_stages=1)],
            interp=[Variant(None, (cdiv_grid(B, ibb), (P, ibp), (1, 1)), {**cx, "BLOCK_B": ibb, "BLOCK_P": ibp})],
            batch=B, note=f"%{n.name}: dot interaction of {F} x {D} -> {P} pairs"
                          + (f", fused with %{out_name} = cat(dense, interactions)" if prefix else "")))
        return True

    def _emit_fm(self, n):
        g = self.g
        tt = g.type_of(n.inputs[0])
        if tt.dtype not in KERNEL_INPUT_DTYPES:
            return False
        v = self.views[n.inputs[0]]
        F, K = int(tt.shape[1]), int(tt.shape[2])
        if v.strides[1:] != (K, 1):
            v = self._materialize(n.inputs[0])
        out = self.loc(n.name)
        FP, KP = np2(F), np2(K)
        bb = max(1, min(64, 4096 // (FP * KP)))
        B = v.shape[0]
        self.steps.append(Launch(
            kernel="fm_kernel",
            args=[Arg("ptr", v, name="V"), Arg("ptr", out, name="OUT"), Arg("i32", expr=B, name="M"),
                  Arg("i32", expr=v.strides[0], name="stride_v"), Arg("i32", expr=out.strides[0], name="stride_out")],
            variants=[Variant(None, (cdiv_grid(B, bb), (1, 1), (1, 1)),
                              dict(F=F, K=K, FP=FP, KP=KP, BLOCK_B=bb), num_warps=4, num_stages=1)],
            batch=B, note=f"%{n.name}: factorization machine over {F} x {K}"))
        return True

    # ---- fused elementwise clusters
    def _emit_cluster(self, cl: ew.Cluster) -> None:
        g = self.g
        outs = self._cluster_outputs(cl)
        gen = ew.generate(g, cl, outs)
        self.sources.setdefault(gen.name, gen.source)
        args = []
        for j, (x, k) in enumerate(zip(gen.inputs, gen.input_kinds)):
            v = self.views[x]
            if k == "f" and not v.is_rows():
                v = self._materialize(x)
            elif k == "c" and v.strides[-1] != 1:
                v = self._materialize(x)
            stride = v.strides[0] if k in ("f", "r") else 0
            args += [Arg("ptr", v, name=f"X{j}"), Arg("i32", expr=stride, name=f"X{j}_rs")]
        for j, o in enumerate(gen.outputs):
            v = self.loc(o)
            args += [Arg("ptr", v, name=f"Y{j}"), Arg("i32", expr=v.strides[0], name=f"Y{j}_rs")]
        args.append(Arg("i32", expr=cl.R, name="R"))
        self.steps.append(Launch(
            kernel=gen.name, args=args,
            variants=[Variant(None, (cdiv_grid(cl.R, gen.block_r), (1, 1), (1, 1)),
                              dict(K=cl.K, BLOCK_R=gen.block_r, BLOCK_K=gen.block_k))],
            batch=cl.R, note=f"{gen.note}: " + ", ".join(f"%{m}" for m in cl.members)))


def lower(g: Graph, layout: dict, options: dict) -> tuple[Program, dict[str, str]]:
    """The program for ``g`` with parameters at ``layout`` (ArtifactWriter.write_weights) and its
    generated kernel sources (name -> source)."""
    return Lowerer(g, layout, options).run()


def weights_layout(g: Graph, align: int = 64) -> dict:
    """The layout ``ArtifactWriter.write_weights`` gives ``g``'s parameters (for lowering without a writer)."""
    out, off = {}, 0
    for name, a in g.params.items():
        off += (-off) % align
        out[name] = {"offset": off, "nbytes": int(a.nbytes), "dtype": a.dtype.str, "shape": list(a.shape)}
        off += a.nbytes
    return out
