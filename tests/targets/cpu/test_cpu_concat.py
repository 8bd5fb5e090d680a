"""cpu planning step `concat`: producers write straight into their slice of a concat's buffer."""
from xrec.ir import BATCH, Op
from xrec.targets.cpu.concat import slice_view
from xrec.targets.cpu.context import LowerContext
from xrec.targets.cpu.lower import lower, run_stages
from xrec.targets.cpu.plan import LoopStep, View



def _cat_graph(ir, extra_use=False):
    g = ir()
    x = g.input("x", 3)
    z = g.input("z", 2)
    a = g.op(Op.EXP, x, hint="a")                       # a loop: placed at columns [0, 3)
    b = g.op(Op.NEG, z, hint="b")                       # a loop: placed at columns [3, 5)
    c = g.op(Op.CAT, a, b, z, type=ir.f32(BATCH, 7), hint="c", dim=1)    # z is an input: copied at [5, 7)
    y = g.op(Op.TANH, c, hint="y")
    outs = [y, b] if extra_use else [y]
    return g.finish(*outs)


def test_loop_producers_are_placed_at_their_column_offsets_and_inputs_are_copied(ir):
    ctx = run_stages(LowerContext(_cat_graph(ir)), until="concat")
    cat = ctx.views["c"]
    assert set(ctx.placed) == {"a", "b"}
    assert ctx.placed["a"] == cat.with_(dims=(3,))
    assert ctx.placed["b"] == cat.with_(ptr=f"({cat.ptr} + 3)", dims=(2,))
    prog, _ = lower(_cat_graph(ir))
    assert prog.notes == ["%c: %a written in place, %b written in place, %z copied"]
    copies = [s for s in prog.steps if isinstance(s, LoopStep) and s.node == "c"]
    assert len(copies) == 1 and copies[0].out.ptr == f"({cat.ptr} + 5)"


def test_a_value_that_is_also_a_model_output_is_copied_into_the_concat(ir):
    prog, _ = lower(_cat_graph(ir, extra_use=True))
    assert prog.notes == ["%c: %a written in place, %b copied, %z copied"]


def test_the_same_value_twice_in_one_concat_is_placed_once(ir):
    g = ir()
    x = g.input("x", 3)
    a = g.op(Op.EXP, x, hint="a")
    c = g.op(Op.CAT, a, a, type=ir.f32(BATCH, 6), hint="c", dim=1)
    prog, _ = lower(g.finish(g.op(Op.TANH, c, hint="y")))
    assert prog.notes == ["%c: %a written in place, %a copied"]


def test_slice_view_offsets_the_pointer_and_scales_the_stride(ir):
    v = View(ptr="t0", ctype="float", rowwise=True, ld="24", dims=(4, 6), strides=(6, 1), buffer=0)
    s = slice_view(v, 1, 2, 2, step=3)                   # columns 2, 5
    assert (s.ptr, s.dims, s.strides, s.ld) == ("(t0 + 2)", (4, 2), (6, 3), "24")
    assert slice_view(v, 0, 0, 2).ptr == "t0"
