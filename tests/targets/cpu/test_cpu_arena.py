"""cpu planning step `arena`: tile buffers get offsets from their live ranges; live buffers never overlap."""
import random

from xrec.targets.cpu.arena import first_fit, plan_arena
from xrec.targets.cpu.plan import ARENA_ALIGN, TILE_MAX, Buffer, Step


def _buf(i, row_elems):
    return Buffer(id=i, row_elems=row_elems, itemsize=4, ctype="float", what=f"b{i}")


def test_a_dead_buffers_memory_is_reused_and_unused_buffers_take_none():
    bufs = [_buf(0, 16), _buf(1, 16), _buf(2, 16), _buf(3, 100)]
    steps = [Step(node="s0", text="", writes={0}),
             Step(node="s1", text="", reads={0}, writes={1}),     # b0 dies here
             Step(node="s2", text="", reads={1}, writes={2})]     # b2 may take b0's place
    size = plan_arena(steps, bufs)
    row = TILE_MAX * 16 * 4
    assert (bufs[0].offset, bufs[1].offset, bufs[2].offset) == (0, row, 0)
    assert bufs[3].offset == -1 and bufs[3].first == -1
    assert size == 2 * row and size % ARENA_ALIGN == 0


def test_temporaries_are_live_for_their_step_only():
    bufs = [_buf(0, 8), _buf(1, 8), _buf(2, 8)]
    steps = [Step(node="s0", text="", writes={0}, temps=[1]), Step(node="s1", text="", reads={0}, writes={2})]
    plan_arena(steps, bufs)
    assert (bufs[1].first, bufs[1].last) == (0, 0)
    assert bufs[2].offset == bufs[1].offset != bufs[0].offset


def test_first_fit_takes_the_lowest_hole_that_is_big_enough():
    live = [_buf(0, 1), _buf(1, 1)]
    live[0].offset, live[1].offset = 0, 3 * 256
    assert first_fit(live, 256) == 256
    assert first_fit(live, 3 * 256) == 4 * 256


def test_buffers_live_at_the_same_step_never_overlap_random_programs():
    rng = random.Random(0)
    for _ in range(200):
        bufs = [_buf(i, rng.choice([1, 3, 16, 17, 64, 250])) for i in range(8)]
        steps = []
        for s in range(10):
            steps.append(Step(node=f"s{s}", text="", reads=set(rng.sample(range(8), rng.randint(0, 2))),
                              writes={rng.randrange(8)}, temps=rng.sample(range(8), rng.randint(0, 1))))
        size = plan_arena(steps, bufs)
        for s in range(len(steps)):
            live = [b for b in bufs if b.first <= s <= b.last]
            for i, p in enumerate(live):
                assert p.offset >= 0 and p.offset + p.bytes <= size
                for q in live[i + 1:]:
                    assert p.offset + p.bytes <= q.offset or q.offset + q.bytes <= p.offset
