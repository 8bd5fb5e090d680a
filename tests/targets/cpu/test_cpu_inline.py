"""cpu planning step `inline`: single-use elementwise values are computed inside their consumer's loop."""
from xrec.ir import Op
from xrec.targets.cpu.context import LowerContext
from xrec.targets.cpu.inline import choose_inline
from xrec.targets.cpu.lower import lower
from xrec.targets.cpu.plan import LoopStep



def _inline(graph):
    ctx = LowerContext(graph)
    return choose_inline(graph, {}, ctx.rowwise)


def test_a_single_use_elementwise_chain_becomes_one_loop(ir):
    g = ir()
    x = g.input("x", 5)
    a = g.op(Op.EXP, x, hint="a")
    b = g.op(Op.NEG, a, hint="b")
    y = g.op(Op.RELU, b, hint="y")                 # the output: computed by the loop, never inlined
    graph = g.finish(y)
    assert _inline(graph) == {"a", "b"}
    prog, _ = lower(graph)
    assert [type(s) for s in prog.steps] == [LoopStep] and prog.steps[0].node == "y"


def test_a_value_with_two_uses_is_computed_once_into_a_buffer(ir):
    g = ir()
    x = g.input("x", 5)
    a = g.op(Op.EXP, x, hint="a")
    y = g.op(Op.MUL, a, a, hint="y")
    graph = g.finish(y)
    assert _inline(graph) == set()
    prog, _ = lower(graph)
    assert [s.node for s in prog.steps] == ["a", "y"]


def test_a_value_read_by_a_kernel_is_not_inlined_but_a_full_always_is(ir):
    g = ir()
    x = g.input("x", 4)
    one = g.full(1.0)
    a = g.op(Op.ADD, x, one, hint="a")            # read by linear: a kernel, not a loop
    w = g.param("w", [[1.0, 2.0, 3.0, 4.0]])
    y = g.op(Op.LINEAR, a, w, type=ir.f32(g.b.types[x].shape[0], 1), hint="y")
    graph = g.finish(y)
    assert _inline(graph) == {one}


def test_folded_values_and_non_batch_values_are_not_inlined(ir):
    g = ir()
    x = g.input("x", 3)
    w = g.param("w", [1.0, 2.0, 3.0])
    c = g.op(Op.EXP, w, hint="c")                 # no batch dim
    y = g.op(Op.ADD, x, c, hint="y")
    graph = g.finish(y)
    ctx = LowerContext(graph)
    assert choose_inline(graph, {}, ctx.rowwise) == set()
    assert choose_inline(graph, {"c": None}, ctx.rowwise) == set()
