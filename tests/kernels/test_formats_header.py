"""The kernels' row-format, activation and pooling codes are xrec's: kernels/cpu/xrec_formats.h is
xrec.ir.formats.c_header() verbatim, and the kernel enums are defined from it (checked by the compiler)."""
import subprocess

from xrec.ir import formats
from xrec.kernels import cpu_include_dir

REGENERATE = ("python -c \"from xrec.ir import formats; open('kernels/cpu/xrec_formats.h', 'w')"
              ".write(formats.c_header())\"")


def test_the_checked_in_header_is_the_one_formats_py_generates():
    have = (cpu_include_dir() / "xrec_formats.h").read_text()
    assert have == formats.c_header(), f"kernels/cpu/xrec_formats.h is stale; regenerate it: {REGENERATE}"


def test_kernel_enums_equal_formats_py_codes(tmp_path):
    pins = {f"ROW_{k}": v for k, v in {"F32": "fp32", "F16": "fp16", "I8": "int8", "I4": "int4", "I2": "int2",
                                         "BF16": "bf16"}.items()}
    pins.update({f"ACT_{a.upper()}": f"act:{a}" for a in formats.ACTIVATIONS})
    pins.update({f"POOL_{m.upper()}": f"pool:{m}" for m in formats.POOL_MODES})
    src = tmp_path / "pins.cpp"
    src.write_text('#include "xrec_kernel_types.h"\nusing namespace xrec::XREC_ISA_NS;\n'
                   + formats.c_static_asserts(pins) + "int main() { return 0; }\n")
    out = subprocess.run(["g++", "-std=c++17", "-fsyntax-only", f"-I{cpu_include_dir()}", str(src)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
