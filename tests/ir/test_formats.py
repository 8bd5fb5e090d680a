"""xrec.ir.formats: the one table of row formats (FBGEMM-compatible), activation and pooling codes."""
import re
import subprocess

import numpy as np
import pytest
import torch

from xrec.ir import formats
from xrec.ir.formats import ACTIVATIONS, FORMATS, POOL_MODES
from xrec.ir.quant import decode_rows, encode_rows
from xrec.ir.types import DType, TensorType

QUANTIZED = [f for f in FORMATS if f.quantized]


def _qop(name: str):
    ns, op = name.split("::")
    return getattr(getattr(torch.ops, ns), op)


@pytest.mark.parametrize("fmt", QUANTIZED, ids=lambda f: f.name)
@pytest.mark.parametrize("dim", [4, 8, 12, 16, 64, 128])
def test_quantized_row_bytes_and_scale_offset_match_the_fbgemm_prepack_op(fmt, dim):
    w = torch.randn(7, dim, generator=torch.Generator().manual_seed(dim))
    packed = _qop(fmt.fbgemm_prepack)(w).numpy()
    assert packed.shape == (7, fmt.row_bytes(dim))
    np.testing.assert_array_equal(encode_rows(fmt, w.numpy()), packed)
    # the bias FBGEMM stores after the scale is the row minimum (rounded to the scale's type)
    off = fmt.scale_offset(dim) + fmt.scale_bias.itemsize
    bias = packed[:, off:off + fmt.scale_bias.itemsize].copy().view(fmt.scale_bias.to_numpy()).reshape(7)
    np.testing.assert_allclose(bias, w.numpy().min(1), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
@pytest.mark.parametrize("dim", [1, 5, 13, 64])
def test_encoded_tables_have_the_type_and_row_bytes_the_format_declares(fmt, dim):
    t = np.random.default_rng(dim).standard_normal((9, dim)).astype(np.float32)
    a = encode_rows(fmt, t)
    want = fmt.table_type(9, dim)
    np_dtype = np.uint16 if want.dtype is DType.BF16 else want.dtype.to_numpy()
    assert a.dtype == np_dtype and a.shape == want.shape
    assert a.shape[1] * a.dtype.itemsize == fmt.row_bytes(dim)
    assert formats.of_type(want) is fmt


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_pooled_decoded_rows_match_the_pytorch_op_the_format_names(fmt):
    dim = 16
    w = torch.randn(30, dim, generator=torch.Generator().manual_seed(3))
    idx = torch.tensor([0, 3, 3, 29, 7, 7, 1], dtype=torch.int32)
    off = torch.tensor([0, 2, 2, 6, 7], dtype=torch.int32)         # an empty bag, a duplicate id
    stored = encode_rows(fmt, w.numpy())
    rows = decode_rows(fmt, stored[idx.numpy()], dim)
    got = np.stack([rows[a:b].sum(0) for a, b in zip(off[:-1].tolist(), off[1:].tolist())])
    if fmt.quantized:
        want = _qop(fmt.fbgemm_op)(torch.from_numpy(stored), idx, off, mode=0, include_last_offset=True)
    else:
        assert fmt.fbgemm_op == "aten::embedding_bag"
        tt = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[fmt.name]
        want = torch.nn.functional.embedding_bag(idx.long(), w.to(tt).float(), off[:-1].long(), mode="sum")
    np.testing.assert_allclose(got, want.float().numpy(), rtol=1e-5, atol=1e-5)


def test_codes_are_fbgemm_sparse_type_values_and_unique():
    # fbgemm_gpu split_embedding_configs.SparseType.as_int()
    assert {f.name: f.code for f in FORMATS} == {"fp32": 0, "fp16": 1, "int8": 2, "int4": 3, "int2": 4, "bf16": 5}
    assert sorted(f.code for f in FORMATS) == list(range(len(FORMATS)))
    assert ACTIVATIONS[0] == "none" and len(set(ACTIVATIONS)) == len(ACTIVATIONS)


def test_lookups_reject_unknown_names_and_list_the_known_ones():
    with pytest.raises(ValueError, match="fp32, fp16, int8, int4, int2, bf16"):
        formats.by_name("fp8")
    with pytest.raises(ValueError, match="rowwise_i8"):
        formats.by_layout("rowwise_q")
    with pytest.raises(ValueError, match="0=fp32"):
        formats.by_code(9)
    with pytest.raises(ValueError, match=r"i64\[.*no row format.*u8\[rows, row_bytes\]#rowwise_i4"):
        formats.of_type(TensorType((4, 4), DType.I64))
    with pytest.raises(ValueError, match="no scale"):
        formats.by_name("fp16").scale_offset(8)


def _c_value(header: str, macro: str) -> int:
    return int(re.search(rf"#define {macro} (\d+)", header).group(1))


def test_c_header_compiles_and_agrees_with_triton_constants_and_static_asserts(tmp_path):
    h = formats.c_header()
    consts = formats.triton_constants()
    for f in FORMATS:
        assert _c_value(h, f.macro) == consts[f"ROW_{f.name.upper()}"] == f.code
    for i, a in enumerate(ACTIVATIONS):
        assert _c_value(h, f"XREC_ACT_{a.upper()}") == consts[f"ACT_{a.upper()}"] == i
    for i, m in enumerate(POOL_MODES):
        assert _c_value(h, f"XREC_POOL_{m.upper()}") == consts[f"POOL_{m.upper()}"] == i
    (tmp_path / "xrec_formats.h").write_text(h)
    # a target's own enum pinned to the table: the right codes compile, a wrong one does not
    good = formats.c_static_asserts({"XREC_ROW_INT2": "int2", "XREC_ACT_SILU": "act:silu", "XREC_POOL_MAX": "pool:max"})
    bad = formats.c_static_asserts({"XREC_ROW_BF16": "int2"})
    for body, ok in ((good, True), (bad, False)):
        src = tmp_path / "t.cpp"
        src.write_text('#include "xrec_formats.h"\n#include "xrec_formats.h"\n' + body + "int main() { return 0; }\n")
        r = subprocess.run(["g++", "-std=c++17", "-fsyntax-only", str(src)], capture_output=True, text=True)
        assert (r.returncode == 0) == ok, r.stderr
        if not ok:
            assert "must be xrec's code for int2 (4)" in r.stderr
