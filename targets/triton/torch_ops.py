"""Torch implementations of IR ops, for the nodes the triton target leaves to torch.

Same semantics as xrec.ir.interpreter (the definition of every op), on
torch tensors of the model's device.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from xrec.ir import Op, mlp_layers
from xrec.ir.types import DType, eval_dim

_TORCH_DTYPES = {DType.F32: torch.float32, DType.F16: torch.float16, DType.BF16: torch.bfloat16,
                 DType.F64: torch.float64, DType.I64: torch.int64, DType.I32: torch.int32, DType.I8: torch.int8,
                 DType.U8: torch.uint8, DType.I4X2: torch.uint8, DType.BOOL: torch.bool}


def torch_dtype(dt) -> torch.dtype:
    if dt == "i16":                  # bf16 tables' uint16 bit patterns, as the kernels read them
        return torch.int16
    return _TORCH_DTYPES[DType(dt) if isinstance(dt, str) else dt]


def act(name: str, x):
    if name == "none":
        return x
    if name == "relu":
        return torch.relu(x)
    if name == "sigmoid":
        return torch.sigmoid(x)
    if name == "tanh":
        return torch.tanh(x)
    if name == "gelu":
        return F.gelu(x)
    if name == "gelu_tanh":
        return F.gelu(x, approximate="tanh")
    if name == "silu":
        return F.silu(x)
    raise KeyError(f"unknown activation {name!r}")


def run_node(n, args: list, jagged: list, binds: dict, device, graph=None) -> torch.Tensor:
    """The value of IR node ``n`` given its input tensors (jagged inputs as (indices, offsets)).

    ``graph`` gives input types (needed for tables stored quantized or as bf16 bits)."""
    op = n.op
    out_dt = torch_dtype(n.type.dtype) if hasattr(n.type, "dtype") else None

    def shape(dims):
        return tuple(eval_dim(d, binds) for d in dims)

    if op is Op.FULL:
        return torch.full(shape(n.type.shape), n.attr("value"), dtype=out_dt, device=device)
    if op is Op.EMBEDDING:
        ttype = graph.type_of(n.inputs[0]) if graph is not None else None
        if ttype is not None and (ttype.layout or ttype.dtype is DType.BF16):
            from xrec.ir.interpreter import gather_rows          # FBGEMM row formats / bf16 bits
            ids = args[1].long().cpu().numpy()
            table = args[0].cpu().numpy().view(np.uint16) if ttype.dtype is DType.BF16 else args[0].cpu().numpy()
            rows = gather_rows(table, ttype, int(n.type.shape[-1]), ids.reshape(-1))
            return torch.from_numpy(rows.reshape(ids.shape + (rows.shape[-1],))).to(device=device, dtype=out_dt)
        return args[0][args[1].long()].to(out_dt)
    if op is Op.LINEAR:
        return F.linear(*args).to(out_dt)
    if op is Op.MATMUL:
        return torch.matmul(args[0], args[1])
    if op is Op.MLP:
        x = args[0]
        for w, bias, a in mlp_layers(n, args):
            x = act(a, F.linear(x, w, bias))
        return x.to(out_dt)
    if op is Op.DOT_INTERACTION:
        t = args[0]
        pairs = n.attr("pairs")
        li = torch.tensor([p[0] for p in pairs], device=t.device)
        lj = torch.tensor([p[1] for p in pairs], device=t.device)
        return torch.bmm(t, t.transpose(1, 2))[:, li, lj]
    if op is Op.CROSS_LAYER:
        if n.attr("low_rank"):
            x0, xl, v, w, b = args
            y = F.linear(F.linear(xl, v), w, b)
        else:
            x0, xl, w, b = args
            y = F.linear(xl, w, b)
        return x0 * y + xl
    if op is Op.FM:
        v = args[0]
        s = v.sum(dim=1)
        out = 0.5 * (s * s - (v * v).sum(dim=1)).sum(dim=1, keepdim=n.attr("keepdim", True))
        return out.to(out_dt)
    unary = {Op.RELU: torch.relu, Op.SIGMOID: torch.sigmoid, Op.TANH: torch.tanh, Op.SILU: F.silu,
             Op.NEG: torch.neg, Op.EXP: torch.exp, Op.LOG: torch.log, Op.SQRT: torch.sqrt, Op.RSQRT: torch.rsqrt,
             Op.ABS: torch.abs}
    if op in unary:
        return unary[op](args[0]).to(out_dt)
    if op is Op.GELU:
        return F.gelu(args[0], approximate=n.attr("approximate", "none")).to(out_dt)
    if op is Op.CLAMP:
        return torch.clamp(args[0], n.attr("min", None), n.attr("max", None)).to(out_dt)
    if op is Op.CAST:
        return args[0].to(out_dt)
    binary = {Op.ADD: torch.add, Op.SUB: torch.sub, Op.MUL: torch.mul, Op.DIV: torch.div, Op.POW: torch.pow,
              Op.MAXIMUM: torch.maximum, Op.MINIMUM: torch.minimum}
    if op in binary:
        return binary[op](args[0], args[1]).to(out_dt)
    compare = {Op.EQ: torch.eq, Op.NE: torch.ne, Op.LT: torch.lt, Op.LE: torch.le, Op.GT: torch.gt, Op.GE: torch.ge,
               Op.LOGICAL_AND: torch.logical_and, Op.LOGICAL_OR: torch.logical_or}
    if op in compare:
        return compare[op](args[0], args[1])
    if op is Op.LOGICAL_NOT:
        return torch.logical_not(args[0])
    if op is Op.WHERE:
        return torch.where(args[0].bool(), args[1], args[2]).to(out_dt)
    if op is Op.SOFTMAX:
        return torch.softmax(args[0], dim=n.attr("dim")).to(out_dt)
    if op in (Op.SUM, Op.MEAN, Op.AMAX, Op.NORM):
        x = args[0]
        dims = tuple(d % x.ndim for d in n.attr("dims"))
        keep = n.attr("keepdim", False)
        if op is Op.SUM:
            return x.sum(dim=dims, keepdim=keep).to(out_dt)
        if op is Op.MEAN:
            return x.mean(dim=dims, keepdim=keep).to(out_dt)
        if op is Op.AMAX:
            return x.amax(dim=dims, keepdim=keep).to(out_dt)
        p = n.attr("p", 2.0)
        return torch.linalg.vector_norm(x.double(), ord=p if p != math.inf else math.inf, dim=dims,
                                        keepdim=keep).to(out_dt)
    if op is Op.LAYER_NORM:
        x = args[0]
        k = n.attr("normalized_ndim")
        pos = 1
        w = b = None
        if n.attr("has_weight"):
            w = args[pos]
            pos += 1
        if n.attr("has_bias"):
            b = args[pos]
        return F.layer_norm(x, x.shape[x.ndim - k:], w, b, n.attr("eps")).to(out_dt)
    if op is Op.RESHAPE:
        return args[0].reshape(shape(n.attr("shape")))
    if op is Op.PERMUTE:
        return args[0].permute(*n.attr("perm"))
    if op is Op.EXPAND:
        return args[0].expand(shape(n.type.shape))
    if op is Op.CAT:
        return torch.cat(args, dim=n.attr("dim"))
    if op is Op.SLICE:
        x = args[0]
        d = n.attr("dim") % x.ndim
        sl = [slice(None)] * x.ndim
        sl[d] = slice(n.attr("start"), n.attr("end"), n.attr("step", 1))
        return x[tuple(sl)]
    if op is Op.INDEX:
        x = args[0]
        d = n.attr("dim") % x.ndim
        return x[(slice(None),) * d + tuple(a.long() for a in args[1:])]
    raise NotImplementedError(f"%{n.name}: the triton target has no torch implementation of {op.value}")
