"""The Vitis HLS C++ dialect of xrec's C-family code generation.

It shares the op-to-string tables with the cpu target (``targets/cstyle.py``)
and overrides what differs on an FPGA: arbitrary-precision types for wide
memory words, no ``__restrict__`` (HLS takes aliasing from the interface
pragmas), plain static functions (HLS inlines or instantiates them as
hardware modules), comparators for max/min instead of ``fmaxf``/``fminf`` (compares
and a mux, no libm core) that propagate NaN as ``torch.maximum``/``torch.minimum`` do,
and the ``#pragma HLS`` vocabulary.
"""
from __future__ import annotations

from xrec.ir import Op
from xrec.ir.types import DType

from ..cstyle import CStyle


class HlsStyle(CStyle):
    types = {**CStyle.types, DType.I64: "long long", DType.I32: "int", DType.F16: "ap_uint<16>",
             DType.BF16: "ap_uint<16>", DType.U8: "ap_uint<8>", DType.I8: "ap_int<8>"}
    kernel_prefix = "static"
    top_prefix = 'extern "C"'
    restrict = ""
    word_bits = 512
    word_type = "xrec_word_t"          # typedef ap_uint<512>
    # NaN propagates from either operand (torch.maximum/minimum, the interpreter's np.maximum): a NaN ``a``
    # is picked by ``a != a``, a NaN ``b`` by the failed compare; ``a > b ? a : b`` alone dropped a NaN ``a``
    binary = {**CStyle.binary,
              Op.MAXIMUM: "(({a}) > ({b}) || ({a}) != ({a}) ? ({a}) : ({b}))",
              Op.MINIMUM: "(({a}) < ({b}) || ({a}) != ({a}) ? ({a}) : ({b}))"}

    # ---- pooling: accumulate one element, per pooling mode ----
    def pool_update(self, mode: str, acc: str, x: str) -> str:
        return self.binary_expr(Op.MAXIMUM if mode == "max" else Op.ADD, acc, x)

    def weighted(self, x: str, w: str) -> str:
        return self.binary_expr(Op.MUL, x, w)

    # ---- pragmas ----
    @staticmethod
    def pragma(text: str) -> str:
        return f"#pragma HLS {text}"

    def pipeline(self, ii: int = 1) -> str:
        return self.pragma(f"PIPELINE II={ii}")

    def dataflow(self) -> str:
        return self.pragma("DATAFLOW")

    def inline(self) -> str:
        return self.pragma("INLINE")

    def unroll(self) -> str:
        return self.pragma("UNROLL")

    def m_axi(self, port: str, bundle: str, depth: int, outstanding: int, burst: int,
              write: bool = False) -> str:
        rw = (f"max_write_burst_length={burst} num_write_outstanding={outstanding}" if write
              else f"max_read_burst_length={burst} num_read_outstanding={outstanding}")
        return self.pragma(f"INTERFACE m_axi port={port} offset=slave bundle={bundle} depth={depth} {rw}")

    def s_axilite(self, port: str, bundle: str = "control") -> str:
        return self.pragma(f"INTERFACE s_axilite port={port} bundle={bundle}")

    def array_partition(self, var: str, kind: str = "complete", dim: int = 1) -> str:
        return self.pragma(f"ARRAY_PARTITION variable={var} {kind} dim={dim}")

    def stream(self, var: str, depth: int) -> str:
        return self.pragma(f"STREAM variable={var} depth={depth}")

    def bind_storage(self, var: str, impl: str) -> str:
        return self.pragma(f"BIND_STORAGE variable={var} type=ram_2p impl={impl}")

    def dependence(self, var: str, distance: int) -> str:
        return self.pragma(f"DEPENDENCE variable={var} type=inter direction=RAW dependent=true distance={distance}")

    def loop_tripcount(self, lo: int, hi: int, avg: int) -> str:
        return self.pragma(f"LOOP_TRIPCOUNT min={lo} max={hi} avg={avg}")
