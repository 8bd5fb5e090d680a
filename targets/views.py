"""Strided views shared by the cpu and triton targets: a window of a buffer given by shape, strides and offset.

Element ``[i0, i1, ...]`` of a view lives at ``offset + sum(i_k * strides[k])``
elements from its buffer's start. Dims, strides and the offset are ints or
sympy expressions (a symbolic batch). Every layout op the IR has maps to one
function here, returning a new view over the same data or ``None`` where the
data must be copied first:

    slice_axis(v, axis, start, length, step)     permute(v, perm)
    reshape(v, shape)                             expand(v, shape)

and the checks the kernels need: :func:`is_contiguous` (row-major over the
trailing dims), :func:`is_rows` (a 2-D block with unit column stride: pointer
plus row stride). The cpu target keeps the batch dim implicit (its views cover
one tile's rows; targets/cpu/plan.py) and applies these to its non-batch dims;
the triton target's views include the batch dim.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


def _mul(a, b):
    return a * b


def contiguous_strides(shape) -> tuple:
    """Row-major strides (in elements) of a dense array of ``shape``."""
    out, acc = [], 1
    for d in reversed(tuple(shape)):
        out.append(acc)
        acc = _mul(acc, d)
    return tuple(reversed(out))


def is_contiguous(shape, strides) -> bool:
    """Whether the dims are dense row-major (dims of size 1 may have any stride)."""
    acc = 1
    for d, st in zip(reversed(tuple(shape)), reversed(tuple(strides))):
        if not (isinstance(d, int) and d == 1) and st != acc:
            return False
        acc = _mul(acc, d)
    return True


def numel(shape) -> Any:
    n = 1
    for d in shape:
        n = _mul(n, d)
    return n


@dataclass(frozen=True)
class View:
    """A strided window of buffer ``buf`` (elements of ``dtype``)."""

    buf: str
    dtype: str
    shape: tuple
    strides: tuple
    offset: Any = 0

    @property
    def rank(self) -> int:
        return len(self.shape)

    def is_rows(self) -> bool:
        """A 2-D view with unit column stride (what a kernel takes as pointer + row stride)."""
        return self.rank == 2 and (self.strides[1] == 1 or self.shape[1] == 1)

    def row_stride(self):
        return self.strides[0]

    @property
    def contiguous(self) -> bool:
        return is_contiguous(self.shape, self.strides)


def slice_axis(shape, strides, axis: int, start, length, step=1) -> tuple[tuple, tuple, Any]:
    """(shape, strides, added offset) of ``start, start + step, ...`` (``length`` entries) along ``axis``."""
    shape, strides = list(shape), list(strides)
    off = start * strides[axis]
    shape[axis] = length
    strides[axis] = strides[axis] * step
    return tuple(shape), tuple(strides), off


def permute_axes(shape, strides, perm) -> tuple[tuple, tuple]:
    """(shape, strides) with the axes in the order ``perm``."""
    return tuple(shape[p] for p in perm), tuple(strides[p] for p in perm)


def view_slice(v: View, axis: int, start, length, step=1) -> View:
    shape, strides, off = slice_axis(v.shape, v.strides, axis, start, length, step)
    return replace(v, shape=shape, strides=strides, offset=v.offset + off)


def permute(v: View, perm) -> View:
    shape, strides = permute_axes(v.shape, v.strides, perm)
    return replace(v, shape=shape, strides=strides)


def reshape(v: View, shape) -> View | None:
    """``v`` read with ``shape`` without a copy: when it is contiguous, or its leading dim is kept and the
    trailing dims are contiguous (then the leading stride stays). None: copy it first."""
    shape = tuple(shape)
    if v.strides == contiguous_strides(v.shape):
        return replace(v, shape=shape, strides=contiguous_strides(shape))
    if shape and v.rank and shape[0] == v.shape[0] and tuple(v.strides[1:]) == contiguous_strides(v.shape[1:]):
        return replace(v, shape=shape, strides=(v.strides[0],) + contiguous_strides(shape[1:]))
    return None


def expand(v: View, shape) -> View:
    """``v`` broadcast to ``shape`` (numpy rules): new leading dims and size-1 dims get stride 0."""
    shape = tuple(shape)
    pad = len(shape) - v.rank
    strides = []
    for k, d in enumerate(shape):
        if k < pad:
            strides.append(0)
        else:
            src = v.shape[k - pad]
            one = isinstance(src, int) and src == 1 and not (isinstance(d, int) and d == 1)
            strides.append(0 if one else v.strides[k - pad])
    return replace(v, shape=shape, strides=tuple(strides))
