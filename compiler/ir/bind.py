"""Bind the symbols of a graph's input types (B, N_f, ...) to concrete sizes."""
from __future__ import annotations

from typing import Sequence

import sympy

from .types import Dim, TensorType


class ShapeError(ValueError):
    pass


def bind_symbols(types: Sequence[TensorType], shapes: Sequence[tuple], names: Sequence[str]) -> dict[str, int]:
    """Solve ``types[i].shape == shapes[i]`` for every symbol; raise on a mismatch.

    Plain symbols bind first; affine dims like ``B+1`` are then solved or checked.
    """
    bindings: dict[str, int] = {}
    pending: list[tuple[Dim, int, str, int]] = []
    for t, s, name in zip(types, shapes, names):
        if len(s) != t.rank:
            raise ShapeError(f"input {name!r}: expected rank {t.rank} ({t}), got shape {tuple(s)}")
        for axis, (d, v) in enumerate(zip(t.shape, s)):
            if isinstance(d, int):
                if d != v:
                    raise ShapeError(f"input {name!r}: dim {axis} must be {d}, got {v} (shape {tuple(s)})")
            elif isinstance(d, sympy.Symbol):
                prev = bindings.setdefault(d.name, int(v))
                if prev != v:
                    raise ShapeError(f"input {name!r}: dim {axis} is {d} which is {prev} elsewhere, got {v}")
            else:
                pending.append((d, int(v), name, axis))
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
    return bindings
