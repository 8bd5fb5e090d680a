"""Planning step 5, the arena: tile buffers get byte offsets in one per-thread scratch block.

Each step records which tile buffers it reads, writes and uses as temporaries;
a buffer is live from the first step touching it to the last. Buffers are
placed first-fit (largest first among those born at the same step) next to
the buffers still live, so memory is reused once a buffer's last reader ran.
The arena's size is the highest end, rounded up to ``ARENA_ALIGN``.
"""
from __future__ import annotations

from .plan import ARENA_ALIGN, Apply, Buffer, Load, Step, View


def expr_buffers(e) -> set:
    """The tile buffers an expression reads."""
    if isinstance(e, Load):
        return {e.view.buffer} if e.view.buffer is not None else set()
    if isinstance(e, Apply):
        out = set()
        for a in e.args:
            out |= expr_buffers(a)
        return out
    return set()


def writes_of(v: View) -> set:
    return {v.buffer} if v.buffer is not None else set()


def reads_of(*views) -> set:
    return {v.buffer for v in views if v is not None and v.buffer is not None}


def complete_step_buffers(st: Step) -> None:
    """Complete a step's read/write sets from the views and expressions it holds."""
    e = getattr(st, "expr", None)
    if e is not None:
        st.reads |= expr_buffers(e)
    for f in ("x", "v", "a", "b", "ids"):
        v = getattr(st, f, None)
        if isinstance(v, View):
            st.reads |= reads_of(v)
    out = getattr(st, "out", None)
    if isinstance(out, View):
        st.writes |= writes_of(out)


def first_fit(live: list[Buffer], size: int) -> int:
    """The lowest offset where ``size`` bytes fit between the ``live`` buffers."""
    pos = 0
    for b in sorted(live, key=lambda b: b.offset):
        if b.offset - pos >= size:
            return pos
        pos = max(pos, b.offset + b.bytes)
    return pos


def plan_arena(steps: list[Step], buffers: list[Buffer]) -> int:
    """Set ``first``, ``last`` and ``offset`` of every buffer the steps use; the arena's bytes per thread.

    Buffers no step touches keep ``offset == -1`` (they take no memory).
    """
    for st in steps:
        complete_step_buffers(st)
    for s_idx, st in enumerate(steps):
        for b in st.writes | st.reads | set(st.temps):
            buf = buffers[b]
            buf.first = s_idx if buf.first < 0 else min(buf.first, s_idx)
            buf.last = max(buf.last, s_idx)
    used = [b for b in buffers if b.first >= 0]
    live: list[Buffer] = []
    top = 0
    for s_idx in range(len(steps)):
        live = [b for b in live if b.last >= s_idx]
        for b in sorted((b for b in used if b.first == s_idx), key=lambda b: -b.bytes):
            b.offset = first_fit(live, b.bytes)
            live.append(b)
            top = max(top, b.offset + b.bytes)
    return (top + ARENA_ALIGN - 1) // ARENA_ALIGN * ARENA_ALIGN
