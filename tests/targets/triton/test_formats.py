"""The triton target's row-format, activation and pooling codes are xrec.ir.formats' (the one definition)."""
from __future__ import annotations

import re

from xrec.ir import formats
from xrec.ir.types import TensorType
from xrec.targets.triton.loader import TEMPLATE
from xrec.targets.triton.rules.sparse import ROW_FORMATS, row_format_note

# kernels.py's names for the codes it branches on -> formats' names
KERNEL_ROW_NAMES = {"ROW_F32": "fp32", "ROW_F16": "fp16", "ROW_I8": "int8", "ROW_I4": "int4", "ROW_I2": "int2",
                    "ROW_BF16": "bf16"}


def _kernel_constants(K) -> dict[str, int]:
    return {k: getattr(K, k) for k in dir(K) if re.fullmatch(r"(ROW|ACT|POOL)_[A-Z0-9_]+", k)}


def test_the_kernels_named_codes_equal_the_formats_codes(K):
    consts = _kernel_constants(K)
    want = formats.triton_constants()
    for name, fmt in KERNEL_ROW_NAMES.items():
        assert consts.pop(name) == formats.by_name(fmt).code, name
    for name, code in consts.items():                      # ACT_* and POOL_* share formats' names
        assert want[name] == code, name
    assert {k for k in want if not k.startswith("ROW_")} == set(consts)


def test_every_kind_branch_of_the_embedding_kernel_is_commented_with_its_formats_name():
    """``if KIND == 2:  # int8: ...``: the number each dequantization branch tests is that format's code."""
    src = TEMPLATE.read_text()
    branches = re.findall(r"KIND == (\d+):\s+# (\w+)", src)
    assert len(branches) == 4
    for code, name in branches:
        assert formats.by_code(int(code)).name == name


def test_the_lowering_reads_every_row_format_with_the_formats_code():
    for f in formats.FORMATS:
        t = f.table_type(10, 8)
        code, _ = ROW_FORMATS[(t.dtype, t.layout)]
        assert code == f.code == formats.of_type(TensorType(t.shape, t.dtype, t.layout)).code
    assert [row_format_note(f.code) for f in formats.FORMATS] == ["f32", "f16", "int8 row-wise", "int4 row-wise",
                                                                   "int2 row-wise", "bf16"]
