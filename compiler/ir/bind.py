"""Bind the symbols of a graph's input types (B, N_f, ...) to concrete sizes.

``Binder`` classifies every input dim once (constant, symbol, affine ``a*s+c``,
or general expression) so binding on each call is plain integer arithmetic:
it runs on every inference call, where a sympy call would cost milliseconds.
"""
from __future__ import annotations

from typing import Sequence

import sympy

from .types import TensorType


class ShapeError(ValueError):
    pass


class Binder:
    def __init__(self, types: Sequence[TensorType], names: Sequence[str]):
        self.ranks = [t.rank for t in types]
        self.names = list(names)
        self.types = list(types)
        self.const, self.syms, self.affine, self.general = [], [], [], []
        for k, t in enumerate(types):
            for axis, d in enumerate(t.shape):
                if isinstance(d, int):
                    self.const.append((k, axis, d))
                elif isinstance(d, sympy.Symbol):
                    self.syms.append((k, axis, d.name))
                else:
                    lin = _affine(d)
                    if lin is not None:
                        self.affine.append((k, axis, d, *lin))
                    else:
                        self.general.append((k, axis, d))

    def bind(self, shapes: Sequence[tuple]) -> dict[str, int]:
        names = self.names
        for k, (rank, s) in enumerate(zip(self.ranks, shapes)):
            if len(s) != rank:
                raise ShapeError(f"input {names[k]!r}: expected rank {rank} ({self.types[k]}), "
                                 f"got shape {tuple(s)}")
        for k, axis, want in self.const:
            if shapes[k][axis] != want:
                raise ShapeError(f"input {names[k]!r}: dim {axis} must be {want}, got {shapes[k][axis]} "
                                 f"(shape {tuple(shapes[k])})")
        b: dict[str, int] = {}
        for k, axis, name in self.syms:
            v = int(shapes[k][axis])
            prev = b.setdefault(name, v)
            if prev != v:
                raise ShapeError(f"input {names[k]!r}: dim {axis} is {name} which is {prev} elsewhere, got {v}")
        for k, axis, d, name, a, c in self.affine:
            v = int(shapes[k][axis])
            if name in b:
                if a * b[name] + c != v:
                    raise ShapeError(f"input {names[k]!r}: dim {axis} must be {d} = {a * b[name] + c}, got {v}")
            else:
                q, r = divmod(v - c, a)
                if r or q < 0:
                    raise ShapeError(f"input {names[k]!r}: dim {axis} = {v} fits no {d}")
                b[name] = q
        if self.general:
            _bind_general(self.general, shapes, names, b)
        return b


def _affine(d) -> tuple[str, int, int] | None:
    """(symbol, a, c) when d == a*symbol + c with integers a != 0, c."""
    free = list(d.free_symbols)
    if len(free) != 1:
        return None
    s = free[0]
    try:
        p = sympy.Poly(d, s)
    except sympy.PolynomialError:
        return None
    if p.degree() != 1 or not all(c.is_Integer for c in p.all_coeffs()):
        return None
    a, c = (int(x) for x in p.all_coeffs())
    return (s.name, a, c) if a else None


def _bind_general(pending, shapes, names, bindings: dict[str, int]) -> None:
    pending = [(d, int(shapes[k][axis]), names[k], axis) for k, axis, d in pending]
    for _ in range(2):
        later = []
        for d, v, name, axis in pending:
            free = [s for s in d.free_symbols if s.name not in bindings]
            if not free:
                got = int(d.subs({s: bindings[s.name] for s in d.free_symbols}))
                if got != v:
                    raise ShapeError(f"input {name!r}: dim {axis} must be {d} = {got}, got {v}")
            elif len(free) == 1:
                sol = sympy.solve(sympy.Eq(d.subs({s: bindings[s.name] for s in d.free_symbols
                                                   if s.name in bindings}), v), free[0])
                if len(sol) != 1 or not sol[0].is_Integer or int(sol[0]) < 0:
                    raise ShapeError(f"input {name!r}: dim {axis} = {v} fits no {d}")
                bindings[free[0].name] = int(sol[0])
            else:
                later.append((d, v, name, axis))
        pending = later
    if pending:
        raise ShapeError(f"cannot bind the symbols of {[str(p[0]) for p in pending]}")


def bind_symbols(types: Sequence[TensorType], shapes: Sequence[tuple], names: Sequence[str]) -> dict[str, int]:
    """Solve ``types[i].shape == shapes[i]`` for every symbol; raise ShapeError on a mismatch."""
    return Binder(types, names).bind(shapes)
