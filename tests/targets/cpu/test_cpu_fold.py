"""cpu planning step `fold`: values computed from parameters alone are evaluated at compile time."""
import numpy as np

from xrec.ir import Op
from xrec.targets.cpu.fold import const_array, fold_constants, is_const
from xrec.targets.cpu.lower import lower


W = np.arange(12, dtype=np.float32).reshape(3, 4) / 7


def test_parameter_only_chain_folds_to_the_interpreters_value_and_stops_at_batch_values(ir):
    g = ir()
    x = g.input("x", 4)
    w = g.param("w", W)
    e = g.op(Op.EXP, w, hint="e")                  # exp(w): parameters only
    s = g.op(Op.MUL, e, w, hint="s")               # exp(w) * w: folded values only
    y = g.op(Op.LINEAR, x, s, type=ir.f32(g.b.types[x].shape[0], 3), hint="y")     # reads the batch: not folded
    graph = g.finish(y)
    folded = fold_constants(graph)
    assert set(folded) == {"e", "s"}
    np.testing.assert_allclose(folded["s"], np.exp(W) * W, rtol=1e-6)
    assert folded["s"].flags.c_contiguous
    assert is_const(graph, folded, "s") and is_const(graph, folded, "w") and not is_const(graph, folded, "y")


def test_static_full_is_a_constant_and_folds_into_its_consumers(ir):
    g = ir()
    x = g.input("x", 4)
    two = g.full(2.0, 3, 4)
    w = g.param("w", W)
    s = g.op(Op.ADD, w, two, hint="s")
    y = g.op(Op.LINEAR, x, s, type=ir.f32(g.b.types[x].shape[0], 3), hint="y")
    graph = g.finish(y)
    folded = fold_constants(graph)
    assert set(folded) == {"s"}
    np.testing.assert_array_equal(folded["s"], W + 2.0)
    np.testing.assert_array_equal(const_array(graph, folded, two), np.full((3, 4), 2.0, np.float32))


def test_a_folded_value_read_by_a_step_becomes_a_weight_holding_its_value(ir):
    g = ir()
    x = g.input("x", 4)
    w = g.param("w", W)
    s = g.op(Op.NEG, w, hint="s")
    y = g.op(Op.LINEAR, x, s, type=ir.f32(g.b.types[x].shape[0], 3), hint="y")
    prog, extra = lower(g.finish(y))
    assert list(extra) == ["@fold/s"]
    np.testing.assert_array_equal(extra["@fold/s"], -W)
    assert [s.name for s in prog.weights] == ["@fold/s@packed"]
