"""TorchRec's quantized ``EmbeddingBagCollection`` (FBGEMM IntNBit TBE) as xrec row-format tables, as they are.

``torchrec.inference.modules.quantize_inference_model`` (or ``torchrec.quant.EmbeddingBagCollection.from_float``)
swaps each ``EmbeddingBagCollection`` for a quantized one whose tables live in FBGEMM's inference TBE
(``IntNBitTableBatchedEmbeddingBagsCodegen``), a custom op torch.export does not lower to aten. Before tracing,
xrec replaces each such module (``replace_quantized``) by ``QuantizedBags``: the same tables, their rows converted
byte for byte into xrec's row formats (``xrec.ir.formats``), pooled by one ``xrec::rowwise_embedding_bag`` op per
feature, which the frontend lowers to an ``EMBEDDING_BAG`` over a table PARAM stored in that format, as
``quantize=`` leaves its tables. Nothing is re-quantized: the values are FBGEMM's own bytes.

FBGEMM's inference rows (CPU, checked by dequantizing rows and comparing with the module's output,
tests/frontend/test_torchrec_quant.py), padded to ``row_alignment`` (16) bytes::

  SparseType  row (reverse_qparam=False)                      xrec format (row)
  INT8  2     scale f16, bias f16, dim x u8                     int8: dim x u8, scale f32, bias f32
  INT4  3     scale f16, bias f16, dim/2 B (low nibble first)   int4: dim/2 B, scale f16, bias f16
  INT2  4     scale f16, bias f16, dim/4 B (low bits first)     int2: dim/4 B, scale f16, bias f16
  FP16  1     dim x f16                                         fp16 [rows, dim]
  FP32  0     dim x f32                                         fp32 [rows, dim]

With ``reverse_qparam=True`` the scale and bias follow the values instead. A value decodes as
``q * scale + bias`` on both sides; an fp16 scale widened to f32 is exact.
"""
from __future__ import annotations

import re
from typing import Optional

import numpy as np
import torch

from ..ir import formats
from ..ir.quant import decode_rows
from .errors import FrontendError

OP = "xrec::rowwise_embedding_bag"
_POOLING = {"SUM": formats.POOL_CODES["sum"], "MEAN": formats.POOL_CODES["mean"]}
_OUTPUT_DTYPES = (torch.float32,)


# ---------------------------------------------------------------- the op the frontend lowers
@torch.library.custom_op(OP, mutates_args=())
def rowwise_embedding_bag(table: torch.Tensor, indices: torch.Tensor, offsets: torch.Tensor,
                          per_sample_weights: Optional[torch.Tensor], fmt: int, dim: int,
                          mode: int) -> torch.Tensor:
    """Pooled rows [B, dim] (f32) of ``table`` stored in xrec row format ``fmt`` (a code), bags given by
    ``offsets`` (B+1 entries), ``mode`` an ``xrec.ir.formats.POOL_CODES`` value. Eager: decodes the table."""
    f = formats.by_code(fmt)
    rows = torch.from_numpy(decode_rows(f, table.numpy(), dim))
    return torch.nn.functional.embedding_bag(
        indices.long(), rows, offsets.long(), mode=formats.POOL_MODES[mode], include_last_offset=True,
        per_sample_weights=per_sample_weights)


@rowwise_embedding_bag.register_fake
def _(table, indices, offsets, per_sample_weights, fmt, dim, mode):
    if per_sample_weights is not None:        # one weight per id: torch.export ties the two sizes
        torch._check(per_sample_weights.shape[0] == indices.shape[0])
    return table.new_empty((offsets.shape[0] - 1, dim), dtype=torch.float32)


# ---------------------------------------------------------------- FBGEMM rows -> xrec rows
def from_fbgemm_rows(raw: np.ndarray, sparse_type: int, dim: int, *, reverse_qparam: bool = False,
                     scale_bias_bytes: int = 4, where: str = "") -> tuple[np.ndarray, formats.RowFormat]:
    """FBGEMM inference-TBE rows (u8 [rows, padded row bytes]) as the table array of xrec's row format of the
    same code (FBGEMM's ``SparseType`` values are xrec's format codes)."""
    try:
        fmt = formats.by_code(int(sparse_type))
    except ValueError:
        fmt = None
    if fmt is None or fmt.name == "bf16":
        raise FrontendError(f"{where}: FBGEMM weight type {sparse_type} (SparseType code) has no xrec row format; "
                            "xrec takes TorchRec tables quantized to int8, int4, int2, fp16 or kept fp32")
    raw = np.ascontiguousarray(raw, dtype=np.uint8)
    rows = raw.shape[0]
    if not fmt.quantized:
        nbytes = dim * fmt.dtype.itemsize
        return np.ascontiguousarray(raw[:, :nbytes]).view(fmt.dtype.to_numpy()).reshape(rows, dim), fmt
    if scale_bias_bytes != 4:
        raise FrontendError(f"{where}: FBGEMM rows with {scale_bias_bytes}-byte scale and bias (an MTIA layout) "
                            "are not supported; xrec reads the CPU layout (fp16 scale and bias, 4 bytes)")
    vb = fmt.value_bytes(dim)
    if raw.shape[1] < vb + 4:
        raise FrontendError(f"{where}: FBGEMM rows of {raw.shape[1]} bytes are too short for {fmt.name} rows "
                            f"of dim {dim} ({vb + 4} bytes)")
    if reverse_qparam:
        values, qparams = raw[:, :vb], raw[:, vb:vb + 4]
    else:
        qparams, values = raw[:, :4], raw[:, 4:4 + vb]
    scale_bias = np.ascontiguousarray(qparams).view(np.float16)          # [rows, 2]: scale, bias
    out = np.zeros((rows, fmt.row_bytes(dim)), np.uint8)
    out[:, :vb] = values
    out[:, vb:] = scale_bias.astype(fmt.scale_bias.to_numpy()).view(np.uint8).reshape(rows, -1)
    return out, fmt


# ---------------------------------------------------------------- the module that replaces a quantized EBC
def is_quantized_ebc(m: torch.nn.Module) -> bool:
    t = type(m)
    return t.__module__ == "torchrec.quant.embedding_modules" and t.__name__ == "EmbeddingBagCollection"


class QuantizedBags(torch.nn.Module):
    """A TorchRec quantized ``EmbeddingBagCollection``, its tables converted to xrec row formats: called with a
    KJT, returns the same ``KeyedTensor`` (keys, per-key dims, feature order)."""

    def __init__(self, qebc: torch.nn.Module, where: str):
        super().__init__()
        from fbgemm_gpu.split_table_batched_embeddings_ops_inference import IntNBitTableBatchedEmbeddingBagsCodegen
        if qebc._output_dtype not in _OUTPUT_DTYPES:
            raise FrontendError(
                f"{where}: a TorchRec quantized EmbeddingBagCollection with output_dtype {qebc._output_dtype}; "
                "xrec takes output_dtype=torch.float (quantize_inference_model's default)")
        self._weighted = bool(qebc.is_weighted())
        self._keys = list(qebc._embedding_names)
        self._length_per_key = list(qebc._length_per_key)
        self._bags: list[tuple[str, str, int, int, int]] = []       # (feature, buffer, fmt code, dim, mode)
        self.formats: dict[str, str] = {}                            # table name -> xrec row format
        used: set[str] = set()
        for ((pooling, virtual), tables), tbe in zip(qebc._key_to_tables.items(), qebc._emb_modules):
            if virtual or not isinstance(tbe, IntNBitTableBatchedEmbeddingBagsCodegen):
                raise FrontendError(f"{where}: tables {[t.name for t in tables]} are in a {type(tbe).__name__} "
                                    "(virtual / key-value tables); xrec takes IntNBit TBE tables")
            if tbe.index_remappings_array.numel() or tbe.index_remapping_hash_table.numel():
                raise FrontendError(
                    f"{where}: tables {[t.name for t in tables]} are pruned (FBGEMM index remapping); xrec does "
                    "not take TorchRec's pruned tables yet. Quantize without pruning, or compile the fp32 model "
                    "with xrec.compile(..., prune=(method, keep_fraction)).")
            if pooling.name not in _POOLING:
                raise FrontendError(f"{where}: pooling {pooling.name} is not supported (sum and mean are)")
            mode = _POOLING[pooling.name]
            weights = tbe.split_embedding_weights_with_scale_bias(split_scale_bias_mode=0)
            for spec, table, (raw, _, _) in zip(tbe.embedding_specs, tables, weights):
                _, rows, dim, sparse_type, _ = spec
                at = f"{where}: table {table.name!r}"
                arr, fmt = from_fbgemm_rows(raw.detach().cpu().numpy(), sparse_type.as_int(), int(dim),
                                            reverse_qparam=bool(tbe.reverse_qparam),
                                            scale_bias_bytes=int(tbe.scale_bias_size_in_bytes), where=at)
                if arr.shape[0] != table.num_embeddings:
                    raise FrontendError(f"{at} has {arr.shape[0]} rows, its config {table.num_embeddings}")
                buf = _buffer_name(table.name, used)
                self.register_buffer(buf, torch.from_numpy(arr))
                self.formats[table.name] = fmt.name
                for feature in table.feature_names:
                    self._bags.append((feature, buf, fmt.code, int(dim), mode))

    def is_weighted(self) -> bool:
        return self._weighted

    def forward(self, features):
        from torchrec.sparse.jagged_tensor import KeyedTensor
        pooled = []
        for feature, buf, fmt, dim, mode in self._bags:
            jt = features[feature]
            pooled.append(torch.ops.xrec.rowwise_embedding_bag(
                getattr(self, buf), jt.values(), jt.offsets(), jt.weights() if self._weighted else None,
                fmt, dim, mode))
        return KeyedTensor(keys=self._keys, length_per_key=self._length_per_key, values=torch.cat(pooled, dim=1))


def _buffer_name(table: str, used: set[str]) -> str:
    base = "table_" + (re.sub(r"\W", "_", table) or "t")
    name, k = base, 1
    while name in used:
        k += 1
        name = f"{base}_{k}"
    used.add(name)
    return name


def replace_quantized(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every TorchRec quantized EBC replaced by its ``QuantizedBags``; the user's model is left as
    it is (the modules on the way to a replaced one are shallow copies with their own child dict)."""
    found = [(path, m) for path, m in model.named_modules(remove_duplicate=False) if is_quantized_ebc(m)]
    if not found:
        return model
    made: dict[int, torch.nn.Module] = {}
    for path, m in found:
        if id(m) not in made:
            made[id(m)] = QuantizedBags(m, f"{type(m).__module__}.{type(m).__name__} at {path or '<the model>'!r}")
    return _swap(model, {path: made[id(m)] for path, m in found})


def _swap(module: torch.nn.Module, new: dict[str, torch.nn.Module], prefix: str = "") -> torch.nn.Module:
    if prefix in new:
        return new[prefix]
    below = {p for p in new if prefix == "" or p.startswith(prefix + ".")}
    if not below:
        return module
    import copy
    out = copy.copy(module)
    out._modules = dict(module._modules)
    for name, child in module._modules.items():
        if child is not None:
            out._modules[name] = _swap(child, new, f"{prefix}.{name}" if prefix else name)
    return out
