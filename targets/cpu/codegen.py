"""Render a lowered cpu :class:`~.plan.Program` as one readable C++17 file (src/model.cpp).

The file is compiled once per ISA with ``-DXREC_ISA_NS=<isa>``; it calls the
kernels of kernels/cpu/xrec_kernels.h through the alias ``xk`` and exports the
``xrec_impl`` table (csrc/xrec_impl.h) the dispatcher library loads.
"""
from __future__ import annotations

import sympy

from xrec import __version__
from xrec.ir import Op
from xrec.ir.types import DType, dim_str
from xrec.targets.cstyle import CodeWriter, CStyle, cstr

from .plan import (TILE_MAX, Apply, BagStep, BmmStep, Const, FMStep, GatherStep, InteractionStep, LayerNormStep,
                   LinearStep, Load, LoopStep, Program, ReduceStep, SoftmaxStep, View)

# Linear layers with at least this many bytes of weights split their columns over the
# threads when the whole batch is one tile (batch <= 16): at batch 1 such a layer streams
# its weights from memory, which one thread cannot do at full bandwidth (dlrm-v2: 64 MB of
# dense weights). Smaller layers stay on one thread (a fork/join costs a few us).
SPLIT_COLUMNS_BYTES = 1 << 20


def splits_columns(K: int, N: int) -> bool:
    """Whether a K -> N linear layer splits its columns over the threads when the batch is one tile
    (what ``_step_LinearStep`` emits; the cost model's weight stream reads it too)."""
    return int(K) * int(N) * 4 >= SPLIT_COLUMNS_BYTES

ACT = {"none": "ACT_NONE", "relu": "ACT_RELU", "sigmoid": "ACT_SIGMOID", "tanh": "ACT_TANH",
       "gelu": "ACT_GELU", "gelu_tanh": "ACT_GELU_TANH", "silu": "ACT_SILU"}
XDT = {DType.F32: "XREC_F32", DType.F16: "XREC_F16", DType.F64: "XREC_F64", DType.I32: "XREC_I32",
       DType.I64: "XREC_I64", DType.I8: "XREC_I8", DType.U8: "XREC_U8", DType.BOOL: "XREC_BOOL",
       DType.BF16: "XREC_BF16"}


class CppDialect(CStyle):
    """The cpu target's C++ dialect of the shared C-family tables."""

    kernel_prefix = "static inline"
    # comparisons and logic (not in the shared tables yet): C's operators are IEEE's (NaN compares unequal)
    unary = {**CStyle.unary, Op.LOGICAL_NOT: "(!({x}))"}
    binary = {**CStyle.binary, Op.EQ: "({a} == {b})", Op.NE: "({a} != {b})", Op.LT: "({a} < {b})",
              Op.LE: "({a} <= {b})", Op.GT: "({a} > {b})", Op.GE: "({a} >= {b})",
              Op.LOGICAL_AND: "({a} && {b})", Op.LOGICAL_OR: "({a} || {b})"}

    def cast(self, x: str, dt: DType) -> str:
        return f"(({self.ctype(dt)})({x}))"

    def where_expr(self, c: str, a: str, b: str) -> str:
        return f"({c} ? {a} : {b})"


def _accepted_words(i) -> str:
    """The dtypes input ``i`` takes, in words (for the error message)."""
    if len(i.accept) > 1:
        return " or ".join({"XREC_I32": "int32", "XREC_I64": "int64"}.get(a, a) for a in i.accept)
    return i.dtype.to_numpy().name if i.dtype is not DType.BF16 else "bfloat16"


def sym_c(d, sizes: str = "S.") -> str:
    """A dim as C: ints as literals, symbols as fields of the Sizes struct."""
    if isinstance(d, int):
        return f"{d}L"
    expr = sympy.sympify(d)
    return "(" + sympy.ccode(expr.subs({s: sympy.Symbol(sizes + s.name) for s in expr.free_symbols})) + ")"


class Codegen:
    def __init__(self, prog: Program, fingerprint_macro: str = "XREC_FINGERPRINT"):
        self.p = prog
        self.c = CppDialect()
        self.fp = fingerprint_macro

    # ------------------------------------------------------------ expressions
    def index(self, v: View, idx: tuple) -> str:
        terms = []
        rest = idx
        if v.rowwise:
            row, rest = idx[0], idx[1:]
            if row != "0" and v.ld != "0":
                terms.append(f"{row} * {v.ld}" if v.ld != "1" else row)
        for ix, st in zip(rest, v.strides):
            if ix == "0" or st == 0:
                continue
            terms.append(ix if st == 1 else f"{ix} * {st}")
        return " + ".join(terms) if terms else "0"

    def load(self, v: View, idx: tuple) -> str:
        return f"{v.ptr}[{self.index(v, idx)}]"

    def expr(self, e) -> str:
        if isinstance(e, Load):
            return self.load(e.view, e.index)
        if isinstance(e, Const):
            if e.dtype.is_float:
                return self.c.literal(e.value, DType.F64 if e.dtype is DType.F64 else DType.F32)
            return self.c.literal(int(e.value), DType.I64)
        if isinstance(e, Apply):
            attrs = dict(e.attrs)
            if e.op is Op.CAST:
                return self.c.cast(self.expr(e.args[0]), attrs["dtype"])
            if e.op is Op.WHERE:
                return self.c.where_expr(*(self.expr(a) for a in e.args))
            if len(e.args) == 1:
                return self.c.unary_expr(e.op, self.expr(e.args[0]), attrs)
            return self.c.binary_expr(e.op, self.expr(e.args[0]), self.expr(e.args[1]))
        raise TypeError(f"not an expression: {e!r}")

    # ------------------------------------------------------------ whole file
    def render(self) -> str:
        p = self.p
        w = CodeWriter()
        self._header(w)
        w.line("namespace xrec {").line("namespace XREC_ISA_NS {").line("namespace model {").line()
        w.line("namespace xk = ::xrec::XREC_ISA_NS::entry;   // the kernels (kernels/cpu), via xrec_kernel_entry.h")
        w.line("namespace kc = ::xrec::XREC_ISA_NS;          // and their types")
        w.line("using gen::Error;").line()
        w.line(f"constexpr bool kBoundsCheck = {'true' if p.bounds_check else 'false'};")
        w.line(f"constexpr long kTileMax = {TILE_MAX};          // rows per tile")
        w.line(f"constexpr size_t kArenaBytes = {p.arena_bytes};   // per-thread tile scratch")
        w.line(f"constexpr int kNumInputs = {len(p.inputs)};")
        w.line(f"constexpr int kNumOutputs = {len(p.outputs)};")
        w.line(f"constexpr int kNumWeights = {len(p.weights)};")
        w.line(f"constexpr int kNumBags = {len(p.bags)};").line()
        self._weights(w)
        self._signature(w)
        self._sizes(w)
        self._call(w)
        self._pairs(w)
        self._tile(w)
        self._model(w)
        w.line("}  // namespace model").line("}  // namespace XREC_ISA_NS").line("}  // namespace xrec").line()
        self._exports(w)
        return w.text()

    def _header(self, w: CodeWriter):
        p = self.p
        lines = [f"generated by xrec {__version__} for the cpu target; compiled once per ISA "
                 "(-DXREC_ISA_NS=avx512|avx2|scalar).", "",
                 "What it computes (the optimized IR; each step below carries its line):"]
        lines += [ln.rstrip() for ln in p.graph_text]
        lines += ["", "Inputs, flat in signature order:"]
        for i in p.inputs:
            lines.append(f"  {i.index:3d} {i.name:16s} {i.kind:8s} {i.dtype.value}[{','.join(dim_str(d) for d in i.shape)}]"
                         + ("  (int32 or int64)" if len(i.accept) > 1 else ""))
        lines += ["Outputs:"]
        for k, o in enumerate(p.outputs):
            lines.append(f"  {k:3d} %{o.value} {o.dtype.value}[{','.join(dim_str(d) for d in o.shape)}]")
        lines += ["", "How: the batch is cut into tiles of at most kTileMax rows; every step runs on a tile, "
                  "tiles run in", "parallel (OpenMP) on per-thread scratch (kArenaBytes, planned below: buffers "
                  "are reused once dead).", "Weights are read from weights.bin (memory-mapped by the loader) "
                  "at the offsets in manifest.json;", "Linear weights were packed for xk::linear at compile time."]
        if p.notes:
            lines += ["", "Concats:"] + ["  " + n for n in p.notes]
        w.line(self.c.header_comment(f"{p.name}: model code", lines).rstrip())
        for inc in ("<cmath>", "<cstdint>", "<cstring>", "<omp.h>", "", '"xrec_impl.h"', '"xrec_kernel_entry.h"',
                    '"xrec_gen.h"'):
            w.line(f"#include {inc}" if inc else "")
        w.line("#ifndef XREC_FINGERPRINT").line('#define XREC_FINGERPRINT "unknown"').line("#endif").line()

    def _weights(self, w: CodeWriter):
        p = self.p
        w.line("// ---- weights: slot k is the weights.bin entry kWeightNames[k]")
        with w.block("struct Weights"):
            for k, s in enumerate(p.weights):
                what = f"{s.source} packed for xk::linear ({s.N}x{s.K})" if s.kind == "packed" else s.source
                w.line(f"const {s.ctype}* {s.cname};   // slot {k}: {what}")
            if not p.weights:
                w.line("char unused;")
        w.lines[-1] += ";"
        names = ", ".join(cstr(s.name) for s in p.weights) or "nullptr"
        w.line(f"static const char* const kWeightNames[] = {{{names}}};")
        with w.block("static int64_t weight_nbytes(int slot)"):
            with w.block("switch (slot)"):
                for k, s in enumerate(p.weights):
                    if s.kind == "packed":
                        w.line(f"case {k}: return (int64_t)xk::linear_packed_floats({s.N}, {s.K}) * 4;")
                    else:
                        w.line(f"case {k}: return {s.nbytes};")
            w.line("return -1;")
        with w.block("static void bind_weights(Weights* W, const void* const* p)"):
            for k, s in enumerate(p.weights):
                w.line(f"W->{s.cname} = (const {s.ctype}*)p[{k}];")
            if not p.weights:
                w.line("(void)W; (void)p;")
        w.line()

    def _signature(self, w: CodeWriter):
        p = self.p

        def arr(ctype, name, vals):
            w.line(f"static const {ctype} {name}[] = {{{', '.join(vals) or '0'}}};")
        arr("char* const", "kInputNames", [cstr(i.name) for i in p.inputs])
        arr("char* const", "kInputKinds", [cstr(i.kind) for i in p.inputs])
        arr("int", "kInputDtypes", [XDT[i.dtype] for i in p.inputs])
        arr("int", "kInputNdims", [str(len(i.shape)) for i in p.inputs])
        arr("char* const", "kInputShapes", [cstr(",".join(dim_str(d) for d in i.shape)) for i in p.inputs])
        w.line("static const int kInputAccept[][2] = {" + (", ".join(
            "{" + ", ".join((i.accept * 2)[:2]) + "}" for i in p.inputs) or "{0, 0}") + "};   // dtypes taken")
        arr("char* const", "kInputWant", [cstr(_accepted_words(i)) for i in p.inputs])
        arr("int", "kOutputDtypes", [XDT[o.dtype] for o in p.outputs])
        arr("int", "kOutputNdims", [str(len(o.shape)) for o in p.outputs])
        w.line()

    # ---- symbols
    def _symbols(self) -> list[str]:
        names = []
        for i in self.p.inputs:
            for d in i.shape:
                if not isinstance(d, int):
                    for s in sorted(sympy.sympify(d).free_symbols, key=lambda s: s.name):
                        if s.name not in names:
                            names.append(s.name)
        for o in self.p.outputs:
            for d in o.shape:
                if not isinstance(d, int):
                    for s in sympy.sympify(d).free_symbols:
                        if s.name not in names:
                            names.append(s.name)
        return names

    def _sizes(self, w: CodeWriter):
        p = self.p
        syms = self._symbols()
        w.line("// ---- the model's symbolic sizes, bound from the input shapes")
        with w.block("struct Sizes"):
            for s in syms:
                w.line(f"long {s} = -1;")
        w.lines[-1] += ";"
        with w.block("static int bind_sizes(const xrec_tensor* in, int n, Sizes* s, char* err, size_t len)"):
            w.line("using gen::report;")
            w.line("if (int rc = gen::check_inputs(in, n, kNumInputs, kInputNames, kInputNdims, kInputShapes, "
                   "kInputAccept, kInputWant, err, len)) return rc;")
            # plain symbols first, then affine dims (solved or checked), as xrec.ir.bind does
            pending = []
            bound = set()
            for i in p.inputs:
                for ax, d in enumerate(i.shape):
                    src = f"in[{i.index}].shape[{ax}]"
                    if isinstance(d, int):
                        with w.block(f"if ({src} != {d})"):
                            w.line(f'return report(err, len, XREC_ERR_INPUT, "input \'%s\': dim {ax} must be {d}, '
                                   f'got %lld", kInputNames[{i.index}], (long long){src});')
                    elif isinstance(d, sympy.Symbol):
                        if d.name not in bound:
                            w.line(f"s->{d.name} = {src};")
                            bound.add(d.name)
                        else:
                            with w.block(f"if ({src} != s->{d.name})"):
                                w.line(f'return report(err, len, XREC_ERR_INPUT, "input \'%s\': dim {ax} is {d} '
                                       f'which is %ld elsewhere, got %lld", kInputNames[{i.index}], s->{d.name}, '
                                       f"(long long){src});")
                    else:
                        pending.append((i, ax, d, src))
            for i, ax, d, src in pending:
                expr = sympy.sympify(d)
                free = [s for s in expr.free_symbols if s.name not in bound]
                if not free:
                    cexpr = sympy.ccode(expr.subs({s: sympy.Symbol("s->" + s.name) for s in expr.free_symbols}))
                    with w.block(f"if ({src} != (long)({cexpr}))"):
                        w.line(f'return report(err, len, XREC_ERR_INPUT, "input \'%s\': dim {ax} must be {d} = %ld, '
                               f'got %lld", kInputNames[{i.index}], (long)({cexpr}), (long long){src});')
                elif len(free) == 1 and sympy.degree(expr, free[0]) == 1:
                    s0 = free[0]
                    a = expr.coeff(s0)
                    c = sympy.expand(expr - a * s0)
                    if not (a.is_Integer and c.is_Integer):
                        raise ValueError(f"cannot bind {d}")
                    w.line(f"s->{s0.name} = ({src} - ({int(c)})) / {int(a)};")
                    with w.block(f"if ({src} - ({int(c)}) < 0 || ({src} - ({int(c)})) % {int(a)} != 0)"):
                        w.line(f'return report(err, len, XREC_ERR_INPUT, "input \'%s\': dim {ax} = %lld fits no {d}", '
                               f"kInputNames[{i.index}], (long long){src});")
                    bound.add(s0.name)
                else:
                    raise ValueError(f"cannot bind dim {d} of input {i.name}")
            w.line("return XREC_OK;")
        with w.block("static void output_dims(const Sizes& S, int64_t* dims)"):
            w.line("(void)S;")
            for k, o in enumerate(p.outputs):
                for ax, d in enumerate(o.shape):
                    w.line(f"dims[{k} * XREC_MAX_DIMS + {ax}] = {sym_c(d)};")
        w.line()

    def _call(self, w: CodeWriter):
        p = self.p
        w.line("// ---- one call's pointers (inputs, outputs, the bag kernel's per-feature arguments)")
        with w.block("struct Call"):
            for i in p.inputs:
                w.line(f"const {self.c.ctype(i.dtype)}* {i.cname};   // input {i.index} '{i.name}'")
            for o in p.outputs:
                w.line(f"{self.c.ctype(o.dtype)}* {o.cname};")
            w.line("kc::BagFeature bags[kNumBags > 0 ? kNumBags : 1];")
            w.line("int64_t nnz[kNumBags > 0 ? kNumBags : 1];")
            w.line("long B;")
            w.line("int col_threads;   // > 1: one tile for the whole batch; big layers split their columns")
        w.lines[-1] += ";"
        names = ", ".join(cstr(b.feature) for b in p.bags) or "nullptr"
        w.line(f"static const char* const kBagFeature[] = {{{names}}};")
        w.line()

    def _pairs(self, w: CodeWriter):
        for name, (pi, pj) in self.p.pair_tables.items():
            w.line(f"// dot interaction pairs ({len(pi)}): out[:, p] = <T[pi[p]], T[pj[p]]>")
            w.line(f"static const int {name}_i[] = {{{', '.join(map(str, pi))}}};")
            w.line(f"static const int {name}_j[] = {{{', '.join(map(str, pj))}}};")
        w.line()

    # ------------------------------------------------------------ the tile function
    def _tile(self, w: CodeWriter):
        p = self.p
        w.line("// Runs every step for the rows [r0, r1) of the batch, on one thread's arena.")
        with w.block("static void run_tile(const Weights& W, const Call& C, long r0, long r1, unsigned char* arena, "
                     "Error* err)"):
            w.line("const long m = r1 - r0;")
            w.line("(void)W; (void)m; (void)arena; (void)err;")
            for b in sorted((b for b in p.buffers if b.offset >= 0), key=lambda b: b.id):
                w.line(f"{b.ctype}* const {b.cname} = ({b.ctype}*)(arena + {b.offset});   "
                       f"// {TILE_MAX} x {b.row_elems} {b.ctype}: {b.what}")
            for st in p.steps:
                w.line()
                if st.text:
                    w.line("//" + st.text)
                getattr(self, "_step_" + type(st).__name__)(w, st)
        w.line()

    def _step_LinearStep(self, w, s: LinearStep):
        bias = s.bias or "nullptr"
        call = (f"xk::linear({s.x}, {s.rows}, {s.K}, {s.ldx}, {s.weight}, {s.N}, {bias}, kc::{ACT[s.act]}, "
                f"{s.y}, {s.ldy}, ")
        if not splits_columns(s.K, s.N):
            w.line(call + f"0, {s.N});")
            return
        # a big layer at a small batch streams its weights from memory: every thread takes
        # a share of the columns (one thread alone cannot draw the memory bandwidth)
        with w.block("if (C.col_threads > 1)"):
            w.line("#pragma omp parallel for num_threads(C.col_threads) schedule(static, 1)")
            with w.block("for (int p = 0; p < C.col_threads; ++p)"):
                w.line(call + f"gen::col_split({s.N}, xk::linear_n_block(), p, C.col_threads), "
                       f"gen::col_split({s.N}, xk::linear_n_block(), p + 1, C.col_threads));")
        with w.block("else"):
            w.line(call + f"0, {s.N});")

    def _step_BagStep(self, w, s: BagStep):
        cols = ", ".join(str(c) for _, c, _, _, _ in s.features)
        n = len(s.features)
        if n == 1:
            k = s.group
            w.line(f"if (!gen::pool_feature(C.bags[{k}], kBagFeature[{k}], C.nnz[{k}], r0, r1, {s.out}, {s.ldo}, "
                   "kBoundsCheck, err)) return;")
            return
        w.line(f"static const int cols[{n}] = {{{cols}}};   // column of each feature's pooled rows")
        with w.block(f"for (int f = 0; f < {n}; ++f)"):
            w.line(f"const int k = {s.group} + f;")
            w.line(f"if (!gen::pool_feature(C.bags[k], kBagFeature[k], C.nnz[k], r0, r1, {s.out} + cols[f], {s.ldo}, "
                   "kBoundsCheck, err)) return;")

    def _step_InteractionStep(self, w, s: InteractionStep):
        w.line(f"xk::dot_interaction({s.t}, {s.ldt}, {s.F}, {s.D}, {s.pairs}_i, {s.pairs}_j, {s.P}, {s.out}, "
               f"{s.ldo}, 0, m);")

    def _loops(self, w, dims, names):
        """Open nested for-loops; returns the number opened."""
        opened = 0
        for d, v in zip(dims, names):
            w.line(f"for (long {v} = 0; {v} < {d}; ++{v}) {{")
            w.level += 1
            opened += 1
        return opened

    def _close(self, w, k):
        for _ in range(k):
            w.level -= 1
            w.line("}")

    def _step_LoopStep(self, w, s: LoopStep):
        idx = ("i",) + tuple(f"j{k}" for k in range(len(s.out.dims)))
        k = self._loops(w, ("m",) + tuple(s.out.dims), idx)
        w.line(f"{self.load(s.out, idx)} = {self.expr(s.expr)};")
        self._close(w, k)

    def _step_ReduceStep(self, w, s: ReduceStep):
        nd = len(s.in_dims)
        jv = tuple(f"j{k}" for k in range(nd))
        keep = [t for t in range(nd) if t not in s.reduced]
        keepdim = len(s.out.dims) == nd
        out_idx = ("i",) + (tuple("0" if t in s.reduced else jv[t] for t in range(nd)) if keepdim
                            else tuple(jv[t] for t in keep))
        opened = self._loops(w, ("m",) + tuple(s.in_dims[t] for t in keep), ("i",) + tuple(jv[t] for t in keep))
        init = {"sum": "0.0f", "mean": "0.0f", "norm": "0.0f", "amax": "-INFINITY"}[s.kind]
        w.line(f"float acc = {init};")
        inner = self._loops(w, tuple(s.in_dims[t] for t in s.reduced), tuple(jv[t] for t in s.reduced))
        w.line(f"const float x = {self.expr(s.expr)};")
        if s.kind in ("sum", "mean"):
            w.line("acc += x;")
        elif s.kind == "amax":
            w.line("acc = (x != x || x > acc) ? x : acc;  // NaN propagates (torch.amax)")
        elif s.p == 2.0:
            w.line("acc += x * x;")
        elif s.p == 1.0:
            w.line("acc += fabsf(x);")
        else:
            w.line(f"acc += powf(fabsf(x), {self.c.literal(s.p)});")
        self._close(w, inner)
        count = 1
        for t in s.reduced:
            count *= s.in_dims[t]
        final = {"sum": "acc", "mean": f"acc / {self.c.literal(float(count))}", "amax": "acc"}.get(s.kind)
        if final is None:
            final = "sqrtf(acc)" if s.p == 2.0 else "acc" if s.p == 1.0 else \
                f"powf(acc, {self.c.literal(1.0 / s.p)})"
        w.line(f"{self.load(s.out, out_idx)} = {final};")
        self._close(w, opened)

    def _step_FMStep(self, w, s: FMStep):
        F, K = s.v.dims
        with w.block("for (long i = 0; i < m; ++i)"):
            w.line("float acc = 0.0f;")
            with w.block(f"for (long k = 0; k < {K}; ++k)"):
                w.line("float sum = 0.0f, sq = 0.0f;")
                with w.block(f"for (long f = 0; f < {F}; ++f)"):
                    w.line(f"const float x = {self.load(s.v, ('i', 'f', 'k'))};")
                    w.line("sum += x;")
                    w.line("sq += x * x;")
                w.line("acc += sum * sum - sq;")
            idx = ("i",) + ("0",) * len(s.out.dims)
            w.line(f"{self.load(s.out, idx)} = 0.5f * acc;")

    def _step_LayerNormStep(self, w, s: LayerNormStep):
        dims = s.x.dims
        L = 1
        for d in dims[len(dims) - s.n_norm:]:
            L *= d
        O = 1
        for d in dims[:len(dims) - s.n_norm]:
            O *= d
        with w.block("for (long i = 0; i < m; ++i)"):
            with w.block(f"for (long o = 0; o < {O}; ++o)"):
                w.line(f"const float* x = {s.x.ptr} + i * {s.x.ld} + o * {L};")
                w.line(f"float* y = {s.out.ptr} + i * {s.out.ld} + o * {L};")
                w.line("float mean = 0.0f, var = 0.0f;")
                w.line(f"for (long l = 0; l < {L}; ++l) mean += x[l];")
                w.line(f"mean /= {L}.0f;")
                w.line(f"for (long l = 0; l < {L}; ++l) var += (x[l] - mean) * (x[l] - mean);")
                w.line(f"const float rstd = 1.0f / sqrtf(var / {L}.0f + {self.c.literal(s.eps)});")
                wt = f" * {s.weight}[l]" if s.weight else ""
                bs = f" + {s.bias}[l]" if s.bias else ""
                w.line(f"for (long l = 0; l < {L}; ++l) y[l] = (x[l] - mean) * rstd{wt}{bs};")

    def _step_SoftmaxStep(self, w, s: SoftmaxStep):
        dims = s.x.dims
        jv = tuple(f"j{k}" for k in range(len(dims)))
        outer = [k for k in range(len(dims)) if k != s.axis]
        opened = self._loops(w, ("m",) + tuple(dims[k] for k in outer), ("i",) + tuple(jv[k] for k in outer))
        at = ("i",) + tuple("l" if k == s.axis else jv[k] for k in range(len(dims)))
        L = dims[s.axis]
        w.line("float mx = -INFINITY, sum = 0.0f;")
        w.line(f"for (long l = 0; l < {L}; ++l) mx = {self.load(s.x, at)} > mx ? {self.load(s.x, at)} : mx;")
        with w.block(f"for (long l = 0; l < {L}; ++l)"):
            w.line(f"const float e = expf({self.load(s.x, at)} - mx);   // NaN where x is NaN, or x and mx are inf")
            w.line(f"{self.load(s.out, at)} = e;")
            w.line("sum += e;")
        w.line(f"for (long l = 0; l < {L}; ++l) {self.load(s.out, at)} /= sum;")
        self._close(w, opened)

    def _step_BmmStep(self, w, s: BmmStep):
        with w.block("for (long i = 0; i < m; ++i)"):
            with w.block(f"for (long r = 0; r < {s.M}; ++r)"):
                with w.block(f"for (long c = 0; c < {s.N}; ++c)"):
                    w.line("float acc = 0.0f;")
                    w.line(f"for (long k = 0; k < {s.K}; ++k) acc += {self.load(s.a, ('i', 'r', 'k'))} * "
                           f"{self.load(s.b, ('i', 'k', 'c'))};")
                    w.line(f"{self.load(s.out, ('i', 'r', 'c'))} = acc;")

    def _step_GatherStep(self, w, s: GatherStep):
        nd = len(s.ids.dims)
        jv = tuple(f"j{k}" for k in range(nd))
        opened = self._loops(w, ("m",) + tuple(s.ids.dims), ("i",) + jv)
        w.line(f"const int64_t id = (int64_t){self.load(s.ids, ('i',) + jv)};")
        with w.block(f"if (kBoundsCheck && (id < 0 || id >= {s.rows}))"):
            w.line(f'gen::fail(err, XREC_ERR_INPUT, r0, "%s: index %lld in row %ld is out of range for a '
                   f'table of {s.rows} rows", {cstr(s.name)}, (long long)id, r0 + i);')
            w.line("return;")
        w.line(f"for (long d = 0; d < {s.dim}; ++d) {self.load(s.out, ('i',) + jv + ('d',))} = "
               f"{s.table}[id * {s.dim} + d];")
        self._close(w, opened)

    # ------------------------------------------------------------ model object and entry points
    def _model(self, w: CodeWriter):
        p = self.p
        with w.block("struct Model"):
            w.line("Weights W;")
            w.line("int threads;")
            w.line("gen::ContextPool pool;")
            w.line("Model(int t) : threads(t), pool(t, kArenaBytes) {}")
        w.lines[-1] += ";"
        w.line()
        with w.block("static void* create(const void* const* weights, int threads, char* err, size_t len)"):
            w.line("if (threads <= 0) threads = omp_get_max_threads();")
            w.line("Model* M = new (std::nothrow) Model(threads);")
            with w.block("if (!M)"):
                w.line('gen::report(err, len, XREC_ERR_RUNTIME, "out of memory");')
                w.line("return nullptr;")
            w.line("bind_weights(&M->W, weights);")
            w.line("// start the thread team now, so the first large batch does not pay for it")
            w.line("#pragma omp parallel num_threads(threads)")
            w.line("{ (void)0; }")
            w.line("return M;")
        w.line("static void destroy(void* state) { delete (Model*)state; }")
        w.line()
        with w.block("static int output_shapes(const xrec_tensor* in, int n, int64_t* dims, char* err, size_t len)"):
            w.line("Sizes S;")
            w.line("if (int rc = bind_sizes(in, n, &S, err, len)) return rc;")
            w.line("output_dims(S, dims);")
            w.line("return XREC_OK;")
        with w.block("static int output_shape_for_batch(int k, int64_t batch, int64_t* dims, char* err, size_t len)"):
            w.line("if (k < 0 || k >= kNumOutputs) return gen::report(err, len, XREC_ERR_INPUT, "
                   '"no output %d", k);')
            for k, o in enumerate(p.outputs):
                other = sorted({s.name for d in o.shape if not isinstance(d, int)
                                for s in sympy.sympify(d).free_symbols} - {p.symbols[0]})
                if other:
                    w.line(f"if (k == {k}) return gen::report(err, len, XREC_ERR_INPUT, \"output {k} depends on "
                           f"{', '.join(other)}, not on the batch alone: use xrec_model_output_shapes\");")
            w.line("Sizes S;")
            w.line(f"S.{p.symbols[0]} = (long)batch;")
            w.line(f"int64_t all[kNumOutputs * XREC_MAX_DIMS > 0 ? kNumOutputs * XREC_MAX_DIMS : 1];")
            w.line("output_dims(S, all);")
            w.line("for (int d = 0; d < kOutputNdims[k]; ++d) dims[d] = all[k * XREC_MAX_DIMS + d];")
            w.line("return XREC_OK;")
        w.line()
        self._run(w)

    def _run(self, w: CodeWriter):
        p = self.p
        B = p.symbols[0]
        with w.block("static int run(void* state, const xrec_tensor* in, int n_in, xrec_tensor* out, int n_out, "
                     "char* err, size_t len)"):
            w.line("Model* M = (Model*)state;")
            w.line("const Weights& W = M->W;")
            w.line("Sizes S;")
            w.line("if (int rc = bind_sizes(in, n_in, &S, err, len)) return rc;")
            w.line("int64_t want[kNumOutputs * XREC_MAX_DIMS];")
            w.line("output_dims(S, want);")
            w.line("if (int rc = gen::check_outputs(out, n_out, kNumOutputs, kOutputDtypes, kOutputNdims, want, err, "
                   "len)) return rc;")
            w.line("Call C;")
            w.line(f"C.B = S.{B};")
            for i in p.inputs:
                w.line(f"C.{i.cname} = (const {self.c.ctype(i.dtype)}*)in[{i.index}].data;")
            for k, o in enumerate(p.outputs):
                w.line(f"C.{o.cname} = ({self.c.ctype(o.dtype)}*)out[{k}].data;")
            for k, b in enumerate(p.bags):
                psw = f"(const float*)in[{b.psw}].data" if b.psw is not None else "nullptr"
                w.line(f"C.bags[{k}] = kc::BagFeature{{(const uint8_t*){b.table}, {b.num_rows}, {b.dim}, "
                       f"{b.row_bytes}, kc::{b.fmt}, kc::{b.mode}, {b.padding_idx}, in[{b.indices}].data, "
                       f"in[{b.offsets}].data, in[{b.indices}].dtype == XREC_I32 ? 32 : 64, "
                       f"in[{b.offsets}].dtype == XREC_I32 ? 32 : 64, {psw}, {b.nnz}}};")
                w.line(f"C.nnz[{k}] = {b.nnz};")
                if b.remap:
                    w.line(f"C.bags[{k}].remap = {b.remap};   // pruned table: logical id -> row or -1")
            if any(not b.include_last_offset for b in p.bags):
                w.line("// offsets without the last entry: a copy with offsets[B] = number of ids appended")
                w.line("std::vector<int64_t> full_offsets[kNumBags];")
                for k, b in enumerate(p.bags):
                    if not b.include_last_offset:
                        w.line(f"full_offsets[{k}].resize(S.{B} + 1);")
                        w.line(f"for (long r = 0; r < S.{B}; ++r) full_offsets[{k}][r] = "
                               f"gen::load_int(C.bags[{k}].offsets, C.bags[{k}].offset_bits, r);")
                        w.line(f"full_offsets[{k}][S.{B}] = C.nnz[{k}];")
                        w.line(f"C.bags[{k}].offsets = full_offsets[{k}].data();")
                        w.line(f"C.bags[{k}].offset_bits = 64;")
            if p.bags:
                with w.block("if (kBoundsCheck)"):
                    w.line(f"if (int rc = gen::check_bag_ends(C.bags, C.nnz, kBagFeature, kNumBags, S.{B}, err, len)) "
                           "return rc;")
            w.line(f"return gen::run_tiles(M->pool, M->threads, S.{B}, kTileMax, &C.col_threads,")
            w.line("                       [&](long r0, long r1, unsigned char* arena, Error* e) "
                   "{ run_tile(W, C, r0, r1, arena, e); },")
            w.line("                       err, len);")
        w.line()

    def _exports(self, w: CodeWriter):
        p = self.p
        w.line("// ---- the table the dispatcher (lib/libxrec_model.so) loads; plain C, constant-initialised")
        ns = "xrec::XREC_ISA_NS::model"
        w.line("#define XREC_STR2(x) #x")
        w.line("#define XREC_STR(x) XREC_STR2(x)")
        with w.block('extern "C" __attribute__((visibility("default"))) const xrec_impl* xrec_impl_get(void)'):
            w.line("static const xrec_impl impl = {")
            w.level += 1
            w.line(f"XREC_IMPL_VERSION, XREC_STR(XREC_ISA_NS), {self.fp}, {cstr(p.name)},")
            w.line(f"{ns}::kNumWeights, {ns}::kWeightNames, {ns}::weight_nbytes,")
            w.line(f"{ns}::kNumInputs, {ns}::kInputNames, {ns}::kInputKinds, {ns}::kInputDtypes, "
                   f"{ns}::kInputNdims, {ns}::kInputShapes,")
            w.line(f"{ns}::kNumOutputs, {ns}::kOutputDtypes, {ns}::kOutputNdims,")
            w.line(f"{ns}::create, {ns}::destroy, {ns}::output_shapes, {ns}::output_shape_for_batch, {ns}::run,")
            w.level -= 1
            w.line("};")
            w.line("return &impl;")
        with w.block('extern "C" __attribute__((visibility("default"))) size_t xrec_impl_linear_packed_floats(int N, '
                     "int K)"):
            w.line(f"return {ns}::xk::linear_packed_floats(N, K);")
        with w.block('extern "C" __attribute__((visibility("default"))) void xrec_impl_pack_linear(const float* W, '
                     "int N, int K, float* packed)"):
            w.line(f"{ns}::xk::pack_linear(W, N, K, packed);")


def generate(prog: Program) -> str:
    return Codegen(prog).render()
