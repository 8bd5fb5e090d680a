"""Vitis HLS C++ for the gather side: one DATAFLOW gather-pool unit per memory channel.

Per unit, seven processes connected by FIFOs, each a single flattened loop
(so rows of consecutive bags follow each other without pipeline drains), and
every AXI access one long burst or one burst per row::

    offsets   the unit's bag offsets (query-major), one burst -> bag sizes
    ids       the unit's ids (+ weights), one burst
    tokens    per bag: drops padding ids, marks the bag's last row (or an
              empty bag)
    remap     (units with pruned tables) per id of a pruned table: its row in
              the compact table from the table's int32 remap (an m_axi port
              next to the rows, or on-chip RAM for on-chip tables); -1 marks
              a pruned id, which pools as a zero row (counted by mean)
    fetch     one 512-bit burst of ceil(row_bytes/64) beats per id from the
              table's m_axi port (or on-chip RAM); pruned ids fetch nothing
    dequant   fp32 / fp16 / bf16 / int8 / int4 / int2 rows (FBGEMM row-wise:
              values, then scale and bias) -> vectors of 16 floats
    pool      sum / mean / max (+ per-sample weights) into LANES partial
              accumulators so a float add's latency never stalls II=1
    write     pooled rows, 16 floats per 512-bit beat, one burst per batch

Queries are processed in order (query-major: all bags of query b, then b+1),
features of a unit in plan order. The C-sim build (``-DXREC_CSIM_COUNTERS``)
counts every trip (ids, rows, beats, chunks) for the cycle report.
"""
from __future__ import annotations

from string import Template

from xrec.ir import formats

from ..cstyle import CodeWriter
from .dialect import HlsStyle
from .spec import KERNEL, MODE_LOAD, MODE_RUN, KernelSpec, UnitSpec, value_bytes

S = HlsStyle()
FORMATS_HEADER = "xrec_formats.h"

PRELUDE = Template(r"""
#include <ap_int.h>
#include <hls_stream.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include "$formats_header"   // row-format and pooling-mode codes (xrec/ir/formats.py)
#ifndef __SYNTHESIS__
#include <cstdio>
#include <cstdlib>
#endif

typedef ap_uint<512> xrec_word_t;                    // one beat of a 512-bit AXI port
struct xrec_vec_t { float v[16]; };                 // 16 floats = one 512-bit beat
// ids -> tokens: one id of the unit's query-major id stream (and its weight)
struct xrec_raw_t { int id; float w; };
// tokens -> fetch: a row to fetch (last: the bag's last row) or an empty bag (empty: no row)
struct xrec_tok_t { int id; float w; bool last; bool empty; };
// tokens -> remap -> fetch: id is the compact row after the remap stage, -1 for a pruned id
// fetch -> dequant -> pool: one per row (zero: a pruned id, no row fetched, pools as zeros), or one per
// empty bag
struct xrec_ctl_t { float w; bool last; bool empty; bool zero; };
template <int MAXB> struct xrec_row_t { xrec_word_t w[MAXB]; };   // one fetched row

#ifdef XREC_CSIM_COUNTERS
struct xrec_unit_counters_t {
  long long offsets_read, bags, ids_read, out_beats, chunks_dequant, chunks_pooled;
};
struct xrec_table_counters_t {
  long long bags, empty_bags, ids_read, ids_padding, rows, beats, remap_reads, ids_pruned;
};
extern xrec_unit_counters_t xrec_ucnt[];
extern xrec_table_counters_t xrec_tcnt[];
#define XREC_UCOUNT(u, f, n) (xrec_ucnt[u].f += (n))
#define XREC_TCOUNT(t, f, n) (xrec_tcnt[t].f += (n))
#else
#define XREC_UCOUNT(u, f, n) ((void)0)
#define XREC_TCOUNT(t, f, n) ((void)0)
#endif

static inline float xrec_f32(uint32_t u) {
  union { uint32_t u; float f; } c;
  c.u = u;
  return c.f;
}

static inline uint32_t xrec_bits(float f) {
  union { uint32_t u; float f; } c;
  c.f = f;
  return c.u;
}

// IEEE binary16 -> binary32, exact (normals, subnormals, inf, nan)
static inline float xrec_f16(uint32_t h) {
  uint32_t s = (h >> 15) & 1u, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) {
    float v = (float)m * 5.9604644775390625e-08f;   // m * 2^-24
    return s ? -v : v;
  }
  uint32_t bits = (e == 31) ? ((s << 31) | 0x7f800000u | (m << 13))
                            : ((s << 31) | ((e + 112u) << 23) | (m << 13));
  return xrec_f32(bits);
}

// NB bytes (2 or 4) at byte offset OFF of a row, little-endian (may straddle two beats)
template <int OFF, int NB, int MAXB>
static inline uint32_t xrec_row_bytes(const xrec_row_t<MAXB>& r) {
$inline
  uint32_t v = 0;
  for (int i = 0; i < NB; i++) {
$unroll
    const int b = OFF + i;
    v |= (uint32_t)r.w[b / 64].range(8 * (b % 64) + 7, 8 * (b % 64)).to_uint() << (8 * i);
  }
  return v;
}

// ---- tokens, one bag of n ids (from the ids stream) -> one token per kept id, the bag's last
// one marked, or one empty token. Holding each id back one iteration lets the last row carry
// `last`, so pooling emits the bag's result while it accumulates that row (no per-bag drain).
// (table, rows, pad are constants at every call site: after inlining they cost no logic)
static void xrec_tokens_bag(int n, int table, int rows, int pad, hls::stream<xrec_raw_t>& raw_s,
                            hls::stream<xrec_tok_t>& id_s) {
$inline
  XREC_TCOUNT(table, bags, 1);
  xrec_tok_t held = {0, 0.0f, false, false};
  bool have = false;
  TOKENS: for (int j = 0; j <= n; j++) {   // the extra iteration flushes the held id
$pipeline
    if (j < n) {
      xrec_raw_t r = raw_s.read();
#ifndef __SYNTHESIS__
      if (r.id < 0 || r.id >= rows) {
        std::fprintf(stderr, "xrec csim: table %d: id %d is out of range [0, %d)\n", table, r.id, rows);
        std::abort();
      }
#endif
      XREC_TCOUNT(table, ids_read, 1);
      if (r.id != pad) {
        if (have) id_s.write(held);
        held.id = r.id;
        held.w = r.w;
        have = true;
      } else {
        XREC_TCOUNT(table, ids_padding, 1);
      }
    } else if (have) {
      held.last = true;
      id_s.write(held);
    } else {
      xrec_tok_t e = {0, 0.0f, true, true};
      id_s.write(e);
      XREC_TCOUNT(table, empty_bags, 1);
    }
  }
}

// ---- remap, one bag of a pruned table: logical id -> row of the compact table (-1: pruned).
// REMAP is the table's int32 remap (an m_axi port or on-chip RAM), one 4-byte read per id.
static void xrec_remap_bag(int table, const int* remap, int phys_rows, hls::stream<xrec_tok_t>& in_s,
                           hls::stream<xrec_tok_t>& out_s) {
$inline
  REMAP: for (;;) {
$pipeline
    xrec_tok_t t = in_s.read();
    if (!t.empty) {
      int p = remap[t.id];
      XREC_TCOUNT(table, remap_reads, 1);
#ifndef __SYNTHESIS__
      if (p < -1 || p >= phys_rows) {
        std::fprintf(stderr, "xrec csim: table %d: remap maps id %d to row %d, outside [-1, %d)\n", table, t.id,
                     p, phys_rows);
        std::abort();
      }
#endif
      if (p < 0) XREC_TCOUNT(table, ids_pruned, 1);
      t.id = p;
    }
    out_s.write(t);
    if (t.empty || t.last) break;
  }
}

// ---- remap stage, one bag of a table that is not pruned: tokens pass through
static void xrec_pass_bag(hls::stream<xrec_tok_t>& in_s, hls::stream<xrec_tok_t>& out_s) {
$inline
  PASS: for (;;) {
$pipeline
    xrec_tok_t t = in_s.read();
    out_s.write(t);
    if (t.empty || t.last) break;
  }
}

// ---- dequant, one bag: rows -> CHUNKS vectors of 16 floats each (one per cycle).
// SB: byte offset of the row's scale and bias (quantized formats), 0 otherwise.
template <int FMT, int SB, int CHUNKS, int MAXB>
static void xrec_dequant_bag(int unit, hls::stream<xrec_row_t<MAXB> >& row_s, hls::stream<xrec_ctl_t>& ctl_in,
                             hls::stream<xrec_ctl_t>& ctl_out, hls::stream<xrec_vec_t>& vec_s) {
$inline
  xrec_row_t<MAXB> row;
$partition_row
  xrec_ctl_t k = {0.0f, false, false, false};
  float scale = 0.0f, bias = 0.0f;
  int c = 0;
  DEQUANT: for (;;) {
$pipeline
    if (c == 0) {
      k = ctl_in.read();
      ctl_out.write(k);
      if (k.empty) break;
      if (!k.zero) {            // a pruned id has no row: its vectors are zeros
        row = row_s.read();
        if (FMT == XREC_ROW_INT8) {   // FBGEMM row-wise: uint8 values, fp32 scale, fp32 bias
          scale = xrec_f32(xrec_row_bytes<SB, 4, MAXB>(row));
          bias = xrec_f32(xrec_row_bytes<SB + 4, 4, MAXB>(row));
        } else if (FMT == XREC_ROW_INT4 || FMT == XREC_ROW_INT2) {   // packed values, fp16 scale, fp16 bias
          scale = xrec_f16(xrec_row_bytes<SB, 2, MAXB>(row));
          bias = xrec_f16(xrec_row_bytes<SB + 2, 2, MAXB>(row));
        }
      }
    }
    xrec_vec_t v;
    for (int e = 0; e < 16; e++) {
$unroll
      if (FMT == XREC_ROW_FP32) {
        v.v[e] = xrec_f32((uint32_t)row.w[c].range(32 * e + 31, 32 * e).to_uint());
      } else if (FMT == XREC_ROW_FP16 || FMT == XREC_ROW_BF16) {
        const int lo = 16 * (16 * (c % 2) + e);
        uint32_t h = (uint32_t)row.w[c / 2].range(lo + 15, lo).to_uint();
        v.v[e] = (FMT == XREC_ROW_FP16) ? xrec_f16(h) : xrec_f32(h << 16);
      } else {
        // element k = 16c + e of a BITS-bit format sits at bit k * BITS of the row
        const int BITS = (FMT == XREC_ROW_INT8) ? 8 : (FMT == XREC_ROW_INT4) ? 4 : 2;
        const int PER_WORD = 512 / (16 * BITS);             // chunks per 512-bit word
        const int lo = 16 * BITS * (c % PER_WORD) + BITS * e;
        float q = (float)row.w[c / PER_WORD].range(lo + BITS - 1, lo).to_uint();
        v.v[e] = q * scale + bias;
      }
      if (k.zero) v.v[e] = 0.0f;
    }
    vec_s.write(v);
    XREC_UCOUNT(unit, chunks_dequant, 1);
    if (c == CHUNKS - 1) {
      c = 0;
      if (k.last) break;
    } else {
      c++;
    }
  }
}
""").substitute(formats_header=FORMATS_HEADER, inline=S.inline(), unroll=S.unroll(),
                         pipeline=S.pipeline(1), partition_row=S.array_partition("row.w"))


def _fetch_variant(beats: int) -> str:
    """fetch, one bag, rows of BEATS beats: one burst (memcpy) per row, one beat per cycle."""
    return f"""
template <int MAXB>
static void xrec_fetch_bag_b{beats}(int table, const xrec_word_t* tab, hls::stream<xrec_tok_t>& id_s,
                                  hls::stream<xrec_row_t<MAXB> >& row_s, hls::stream<xrec_ctl_t>& ctl_s) {{
{S.inline()}
  FETCH: for (;;) {{
{S.pipeline(beats)}
    // II={beats}: a row is one burst of {beats} 512-bit beats, one beat per cycle
    xrec_tok_t tok = id_s.read();
    if (tok.empty) {{
      xrec_ctl_t e = {{0.0f, true, true, false}};
      ctl_s.write(e);
      break;
    }}
    const bool zero = tok.id < 0;     // pruned (remap -1): no burst, the row pools as zeros
    if (!zero) {{
      xrec_row_t<MAXB> row;
{S.array_partition("row.w")}
      memcpy((void*)row.w, (const void*)(tab + (long long)tok.id * {beats}), {beats} * sizeof(xrec_word_t));
      XREC_TCOUNT(table, rows, 1);
      XREC_TCOUNT(table, beats, {beats});
      row_s.write(row);
    }}
    xrec_ctl_t c = {{tok.w, tok.last, false, zero}};
    ctl_s.write(c);
    if (tok.last) break;
  }}
}}
"""


def _pool_variant(chunks: int, lanes: int, fadd: int) -> str:
    """pool, one bag: CHUNKS vectors per row -> one pooled row (CHUNKS vectors)."""
    wx = S.weighted("v.v[e]", "k.w")
    mx = S.pool_update("max", "a", "x")
    ad = S.pool_update("sum", "a", "x")
    if lanes == 1:
        ii = 1 if chunks >= fadd else -(-fadd // chunks)
        return f"""
// one accumulator per chunk, revisited every {chunks} iterations
template <int MODE, bool PSW>
static void xrec_pool_bag_c{chunks}_l1(int unit, hls::stream<xrec_ctl_t>& ctl_s, hls::stream<xrec_vec_t>& vec_s,
                                   hls::stream<xrec_vec_t>& out_s) {{
{S.inline()}
  float acc[{chunks}][16];
{S.array_partition("acc", dim=2)}
{S.dependence("acc", chunks)}
  xrec_ctl_t k = {{0.0f, false, false, false}};
  int c = 0, n = 0;
  POOL: for (;;) {{
{S.pipeline(ii)}
    // II={ii}: {'one vector per cycle' if ii == 1 else f'the same accumulator comes back every {chunks} cycles, an fp32 add takes {fadd}'}
    if (c == 0) k = ctl_s.read();
    xrec_vec_t o;
    if (k.empty) {{
      for (int e = 0; e < 16; e++) {{
{S.unroll()}
        o.v[e] = 0.0f;
      }}
    }} else {{
      xrec_vec_t v = vec_s.read();
      for (int e = 0; e < 16; e++) {{
{S.unroll()}
        float x = PSW ? {wx} : v.v[e];
        float a = acc[c][e];
        a = (n == 0) ? x : (MODE == XREC_POOL_MAX) ? {mx} : {ad};
        acc[c][e] = a;
        o.v[e] = (MODE == XREC_POOL_MEAN) ? a / (float)(n + 1) : a;
      }}
      XREC_UCOUNT(unit, chunks_pooled, 1);
    }}
    if (k.last) out_s.write(o);     // the bag's last row: its sums are final chunk by chunk
    if (c == {chunks} - 1) {{
      c = 0;
      if (k.last) break;
      n++;
    }} else {{
      c++;
    }}
  }}
}}
"""
    return f"""
// {lanes} partial accumulators per chunk (row n adds into lane n % {lanes}) so the loop runs at
// II=1 although an fp32 add takes {fadd} cycles; after the last row a {fadd}-cycle drain
// combines the lanes (no accumulator is read within {fadd} cycles of its last update)
template <int MODE, bool PSW>
static void xrec_pool_bag_c{chunks}_l{lanes}(int unit, hls::stream<xrec_ctl_t>& ctl_s, hls::stream<xrec_vec_t>& vec_s,
                                   hls::stream<xrec_vec_t>& out_s) {{
{S.inline()}
  float acc[{lanes}][{chunks}][16];
{S.array_partition("acc", dim=3)}
{S.dependence("acc", fadd)}
  xrec_ctl_t k = {{0.0f, false, false, false}};
  int c = 0, n = 0, lane = 0, rows = 0, drain = 0;
  bool draining = false;
  POOL: for (;;) {{
{S.pipeline(1)}
    if (!draining) {{
      if (c == 0) k = ctl_s.read();
      if (!k.empty) {{
        xrec_vec_t v = vec_s.read();
        for (int e = 0; e < 16; e++) {{
{S.unroll()}
          float x = PSW ? {wx} : v.v[e];
          float a = acc[lane][c][e];
          acc[lane][c][e] = (n < {lanes}) ? x : (MODE == XREC_POOL_MAX) ? {mx} : {ad};
        }}
        XREC_UCOUNT(unit, chunks_pooled, 1);
      }}
      if (k.empty || c == {chunks} - 1) {{
        c = 0;
        if (k.empty || k.last) {{
          rows = k.empty ? 0 : n + 1;
          draining = true;
        }} else {{
          n++;
          lane = (lane == {lanes} - 1) ? 0 : lane + 1;
        }}
      }} else {{
        c++;
      }}
    }} else {{
      if (drain >= {fadd - chunks}) {{
        const int kk = drain - {fadd - chunks};
        xrec_vec_t o;
        for (int e = 0; e < 16; e++) {{
{S.unroll()}
          float a = acc[0][kk][e];
          for (int l = 1; l < {lanes}; l++) {{
{S.unroll()}
            float x = acc[l][kk][e];
            if (l < rows) a = (MODE == XREC_POOL_MAX) ? {mx} : {ad};
          }}
          if (rows == 0) a = 0.0f;
          if (MODE == XREC_POOL_MEAN && rows > 0) a = a / (float)rows;
          o.v[e] = a;
        }}
        out_s.write(o);
      }}
      if (drain == {fadd - 1}) break;
      drain++;
    }}
  }}
}}
"""


def formats_header() -> str:
    """src/xrec_formats.h: the row-format and pooling-mode codes the kernel switches on, generated from
    xrec/ir/formats.py (the one definition every target reads)."""
    return formats.c_header()


def pool_macro(mode: str) -> str:
    """The C name of a pooling mode's code in xrec_formats.h (``XREC_POOL_SUM``)."""
    if mode not in formats.POOL_CODES:
        raise ValueError(f"hls target: pooling mode {mode!r} is not one of {', '.join(formats.POOL_MODES)}")
    return f"XREC_POOL_{mode.upper()}"


def _prelude(ks: KernelSpec) -> str:
    parts = [PRELUDE]
    for b in sorted({t.plan.beats for t in ks.tables}):
        parts.append(_fetch_variant(b))
    for ch, la in sorted({(t.plan.chunks, t.lanes) for t in ks.tables}):
        parts.append(_pool_variant(ch, la, ks.fadd_latency))
    return "".join(parts)


def emit_header(ks: KernelSpec) -> str:
    w = CodeWriter()
    w.lines.append(S.header_comment(
        f"{KERNEL}.h: embedding gather-pool kernel (generated by xrec's hls target)",
        [f"{len(ks.units)} gather units, {len(ks.tables)} tables "
         f"({len(ks.offchip)} in HBM/DDR, {len(ks.onchip)} on chip)",
         "Synthesize with Vitis HLS; C-simulate with g++ (see the artifact's src/README.md)."]).rstrip("\n"))
    w.line("#ifndef XREC_GATHER_H")
    w.line("#define XREC_GATHER_H")
    w.lines.extend(_prelude(ks).strip("\n").split("\n"))
    w.line()
    w.line(f"#define XREC_NUM_UNITS {len(ks.units)}")
    w.line(f"#define XREC_NUM_TABLES {len(ks.tables)}")
    w.line(f"#define XREC_MODE_RUN {MODE_RUN}")
    w.line(f"#define XREC_MODE_LOAD {MODE_LOAD}")
    w.line(f"#define XREC_FADD_LATENCY {ks.fadd_latency}   // cycles; sets the pooling lanes above")
    for u in ks.units:
        w.line(f"#define XREC_{u.name.upper()}_NFEAT {u.nfeat}")
        w.line(f"#define XREC_{u.name.upper()}_OUTCH {u.outch}")
    w.line()
    w.line(f"{S.top_prefix} void {KERNEL}(" + ", ".join(f"{a.ctype} {a.name}" for a in ks.args) + ");")
    w.line()
    w.line("#endif  // XREC_GATHER_H")
    return w.text()


def _unit_table_params(u: UnitSpec, ks: KernelSpec) -> list[str]:
    return [f"const xrec_word_t* {t.arg}" for t in u.tables if not t.onchip]


def _unit_remap_params(u: UnitSpec) -> list[str]:
    return [f"const int* {t.remap_arg}" for t in u.tables if t.pruned and not t.onchip]


def _unit_remap_args(u: UnitSpec) -> list[str]:
    return [t.remap_arg for t in u.tables if t.pruned and not t.onchip]


def _emit_unit(w: CodeWriter, u: UnitSpec, ks: KernelSpec) -> None:
    n, uid, F = u.name, u.plan.id, u.nfeat
    MB = u.maxbeats
    tparams = _unit_table_params(u, ks)
    rparams = _unit_remap_params(u)
    psw = f"psw_{n}" if u.has_psw else "0"

    w.line(f"// ---- unit {n}: {u.plan.memory.upper()}"
           + (f"[{u.plan.channel}]" if u.plan.memory != "onchip" else f" (on-chip RAM, unit {u.plan.channel})")
           + f", I/O on {u.plan.io_memory.upper()}[{u.plan.io_channel}]; tables "
           + ", ".join(f"{t.id} ({t.plan.feature}, {t.plan.rows}x{t.plan.dim} {t.plan.fmt}, {t.mode}"
                       + (f", pruned to {t.phys_rows} rows" if t.pruned else "") + ")"
                       for t in u.tables))
    # offsets: bag sizes, one burst over the unit's query-major offsets
    with w.block(f"{S.kernel_prefix} void {n}_offsets(const int* bag_off, int batch, hls::stream<int>& cnt_s)"):
        w.line("int prev = 0;")
        with w.block(f"{n.upper()}_OFFSETS: for (int i = 0; i <= batch * {F}; i++)"):
            w.line(S.pipeline(1))
            w.line(S.loop_tripcount(2, 65536 * F + 1, 256 * F + 1))
            w.line("int next = bag_off[i];")
            w.line("if (i > 0) cnt_s.write(next - prev);")
            w.line("prev = next;")
            w.line(f"XREC_UCOUNT({uid}, offsets_read, 1);")
    w.line()
    # ids: one burst over the unit's ids (and weights)
    with w.block(f"{S.kernel_prefix} void {n}_ids(const int* ids, const float* psw, int nnz, "
                 "hls::stream<xrec_raw_t>& raw_s)"):
        with w.block(f"{n.upper()}_IDS: for (int i = 0; i < nnz; i++)"):
            w.line(S.pipeline(1))
            w.line(S.loop_tripcount(0, 1 << 24, 1024))
            w.line(f"xrec_raw_t r = {{ids[i], {'psw[i]' if u.has_psw else '1.0f'}}};")
            w.line("raw_s.write(r);")
            w.line(f"XREC_UCOUNT({uid}, ids_read, 1);")
    w.line()
    def stage(head: str, lines: list[str]) -> None:
        """One DATAFLOW process: for each query of the batch, one call per table of the unit."""
        with w.block(f"{S.kernel_prefix} void {n}_{head})"):
            with w.block(f"{n.upper()}_QUERIES: for (int b = 0; b < batch; b++)"):
                w.line(S.loop_tripcount(1, 65536, 256))
                for line in lines:
                    w.line(line)
        w.line()

    # tokens: per bag, ids -> row tokens
    stage("tokens(int batch, hls::stream<int>& cnt_s, hls::stream<xrec_raw_t>& raw_s, hls::stream<xrec_tok_t>& id_s",
          [f"xrec_tokens_bag(cnt_s.read(), {t.id}, {t.plan.rows}, {t.pad}, raw_s, id_s);   // table {t.id}"
           for t in u.tables] + [f"XREC_UCOUNT({uid}, bags, {F});"])
    # remap: pruned tables' ids -> rows of their compact tables (only in units with a pruned table)
    if u.has_remap:
        rsrcs = ", ".join(rparams)
        stage(f"remap({rsrcs + ', ' if rsrcs else ''}int batch, hls::stream<xrec_tok_t>& in_s, "
              "hls::stream<xrec_tok_t>& out_s",
              [f"xrec_remap_bag({t.id}, {f'xrec_remap_{t.id}' if t.onchip else t.remap_arg}, {t.phys_rows}, in_s, "
               f"out_s);   // table {t.id}: {t.plan.rows} ids -> {t.phys_rows} rows" if t.pruned
               else f"xrec_pass_bag(in_s, out_s);   // table {t.id}" for t in u.tables])
    # fetch
    srcs = ", ".join(tparams)
    stage(f"fetch({srcs + ', ' if srcs else ''}int batch, hls::stream<xrec_tok_t>& id_s, "
          f"hls::stream<xrec_row_t<{MB}> >& row_s, hls::stream<xrec_ctl_t>& ctl_s",
          [f"xrec_fetch_bag_b{t.plan.beats}<{MB}>({t.id}, {f'xrec_onchip_{t.id}' if t.onchip else t.arg}, id_s, "
           "row_s, ctl_s);" for t in u.tables])
    # dequant
    stage(f"dequant(int batch, hls::stream<xrec_row_t<{MB}> >& row_s, hls::stream<xrec_ctl_t>& ctl_in, "
          "hls::stream<xrec_ctl_t>& ctl_out, hls::stream<xrec_vec_t>& vec_s",
          [f"xrec_dequant_bag<{formats.by_name(t.plan.fmt).macro}, {value_bytes(t)}, {t.plan.chunks}, {MB}>"
           f"({uid}, row_s, ctl_in, ctl_out, vec_s);   // table {t.id}" for t in u.tables])
    # pool
    stage("pool(int batch, hls::stream<xrec_ctl_t>& ctl_s, hls::stream<xrec_vec_t>& vec_s, "
          "hls::stream<xrec_vec_t>& out_s",
          [f"xrec_pool_bag_c{t.plan.chunks}_l{t.lanes}<{pool_macro(t.mode)}, "
           f"{'true' if t.psw else 'false'}>({uid}, ctl_s, vec_s, out_s);   // table {t.id}" for t in u.tables])
    # write
    with w.block(f"{S.kernel_prefix} void {n}_write(hls::stream<xrec_vec_t>& out_s, xrec_word_t* out, int batch)"):
        with w.block(f"{n.upper()}_WRITE: for (int i = 0; i < batch * {u.outch}; i++)"):
            w.line(S.pipeline(1))
            w.line(S.loop_tripcount(1, 65536 * u.outch, 256 * u.outch))
            w.line("xrec_vec_t v = out_s.read();")
            w.line(f"{S.word_type} word;")
            with w.block("for (int e = 0; e < 16; e++)"):
                w.line(S.unroll())
                w.line("word.range(32 * e + 31, 32 * e) = xrec_bits(v.v[e]);")
            w.line("out[i] = word;")
            w.line(f"XREC_UCOUNT({uid}, out_beats, 1);")
    w.line()
    # the unit: a DATAFLOW region of the seven processes
    io = [f"const int* bag_off_{n}", f"const int* ids_{n}"] + ([f"const float* psw_{n}"] if u.has_psw else []) \
        + [f"xrec_word_t* out_{n}", f"int nnz_{n}"]
    with w.block(f"{S.kernel_prefix} void {n}(" + ", ".join(tparams + rparams + io + ["int batch"]) + ")"):
        w.line(S.dataflow())
        streams = [("int", "cnt_s", 64), ("xrec_raw_t", "raw_s", 64), ("xrec_tok_t", "id_s", 64)]
        if u.has_remap:     # deep enough to cover the remap port's read latency
            streams.append(("xrec_tok_t", "row_id_s", 64))
        streams += [(f"xrec_row_t<{MB}> ", "row_s", 8), ("xrec_ctl_t", "ctl_a", 64),
                    ("xrec_ctl_t", "ctl_b", 64), ("xrec_vec_t", "vec_s", 32),
                    ("xrec_vec_t", "pooled_s", max(2, 2 * u.outch))]
        for ty, name, depth in streams:
            w.line(f'hls::stream<{ty}> {name}("{n}.{name}");')
            w.line(S.stream(name, depth))
        w.line(f"{n}_offsets(bag_off_{n}, batch, cnt_s);")
        w.line(f"{n}_ids(ids_{n}, {psw}, nnz_{n}, raw_s);")
        w.line(f"{n}_tokens(batch, cnt_s, raw_s, id_s);")
        fetch_in = "id_s"
        if u.has_remap:
            rsrcs = "".join(f"{a}, " for a in _unit_remap_args(u))
            w.line(f"{n}_remap({rsrcs}batch, id_s, row_id_s);")
            fetch_in = "row_id_s"
        srcs = "".join(f"{t.arg}, " for t in u.tables if not t.onchip)
        w.line(f"{n}_fetch({srcs}batch, {fetch_in}, row_s, ctl_a);")
        w.line(f"{n}_dequant(batch, row_s, ctl_a, ctl_b, vec_s);")
        w.line(f"{n}_pool(batch, ctl_b, vec_s, pooled_s);")
        w.line(f"{n}_write(pooled_s, out_{n}, batch);")
    w.line()


def emit_kernel(ks: KernelSpec) -> str:
    w = CodeWriter()
    w.lines.append(S.header_comment(f"{KERNEL}.cpp: gather-pool units and the top function (generated by xrec)", [
        "Placement (pass place_tables): " + "; ".join(
            f"{u.name}: tables {', '.join(str(t.id) for t in u.tables)} on "
            + (f"{u.plan.memory.upper()}[{u.plan.channel}]" if u.plan.memory != "onchip" else "on-chip RAM")
            for u in ks.units)]).rstrip("\n"))
    w.line(f'#include "{KERNEL}.h"')
    w.line()
    if ks.onchip:
        w.line("// on-chip tables (URAM/BRAM), filled once by a call with mode=XREC_MODE_LOAD")
        for t in ks.onchip:
            w.line(f"static {S.word_type} xrec_onchip_{t.id}[{t.words}];   // table {t.id}: "
                   f"{t.phys_rows} rows x {t.plan.beats} beats")
            if t.pruned:
                w.line(f"static int xrec_remap_{t.id}[{t.plan.rows}];   // table {t.id}: remap of its "
                       f"{t.plan.rows} logical rows (-1: pruned)")
        w.line()
        with w.block(f"{S.kernel_prefix} void xrec_load_onchip(const xrec_word_t* src)"):
            for t in ks.onchip:
                with w.block(f"LOAD_{t.id}: for (int i = 0; i < {t.words}; i++)"):
                    w.line(S.pipeline(1))
                    w.line(f"xrec_onchip_{t.id}[i] = src[{t.onchip_offset} + i];")
                if t.pruned:     # 16 int32 entries per 512-bit word
                    with w.block(f"LOAD_REMAP_{t.id}: for (int i = 0; i < {t.plan.rows}; i++)"):
                        w.line(S.pipeline(1))
                        w.line(f"xrec_remap_{t.id}[i] = (int)src[{t.remap_onchip_offset} + i / 16]"
                               ".range(32 * (i % 16) + 31, 32 * (i % 16)).to_uint();")
        w.line()
    for u in ks.units:
        _emit_unit(w, u, ks)
    # every unit runs concurrently
    run_params = [f"{a.ctype} {a.name}" for a in ks.args if a.kind not in ("onchip_src",) and a.name != "mode"]
    with w.block(f"{S.kernel_prefix} void xrec_run(" + ", ".join(run_params) + ")"):
        w.line(S.dataflow())
        for u in ks.units:
            ins = [t.arg for t in u.tables if not t.onchip] + _unit_remap_args(u) + u.io_args() \
                + [f"nnz_{u.name}", "batch"]
            w.line(f"{u.name}(" + ", ".join(ins) + ");")
    w.line()
    with w.block(f"{S.top_prefix} void {KERNEL}(" + ", ".join(f"{a.ctype} {a.name}" for a in ks.args) + ")"):
        for a in ks.args:
            if a.kind == "scalar":
                continue
            if a.kind == "table":
                t = next(t for t in ks.tables if t.arg == a.name)
                depth, burst = t.words, min(256, max(2, t.plan.beats))
            elif a.kind == "remap":       # one 4-byte read per id: no bursts
                t = next(t for t in ks.tables if t.remap_arg == a.name)
                depth, burst = t.plan.rows, 2
            elif a.kind == "onchip_src":
                depth, burst = ks.onchip_words, 64
            else:
                depth, burst = 4096, 64
            w.line(S.m_axi(a.name, a.bundle, depth, ks.outstanding, burst, write=(a.kind == "out")))
        for a in ks.args:
            w.line(S.s_axilite(a.name))
        w.line(S.s_axilite("return"))
        for t in ks.onchip:
            w.line(S.bind_storage(f"xrec_onchip_{t.id}", "uram" if t.words * 64 >= 32768 else "bram"))
            if t.pruned:
                w.line(S.bind_storage(f"xrec_remap_{t.id}", "uram" if t.plan.rows * 4 >= 32768 else "bram"))
        call = [a.name for a in ks.args if a.kind not in ("onchip_src",) and a.name != "mode"]
        if ks.onchip:
            with w.block("if (mode == XREC_MODE_LOAD)"):
                w.line("xrec_load_onchip(onchip_src);")
                w.line("return;")
        w.line("xrec_run(" + ", ".join(call) + ");")
    return w.text()
