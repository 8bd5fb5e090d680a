"""canonicalize: no-op layout ops vanish, reshape chains merge, adjacent slices merge, CSE, DCE."""
import numpy as np
import pytest

from xrec.ir import BATCH, DType, Graph, GraphBuilder, Op, TensorType, run_graph

from conftest import ZOO
from passutil import apply, assert_preserves, zoo_prepared


def _graph():
    b = GraphBuilder(Graph(name="g", nodes=(), outputs=()))
    t = lambda *s: TensorType(s, DType.F32)  # noqa: E731
    x = b.emit(Op.INPUT, (), t(BATCH, 8), {"name": "x", "kind": "dense"}, hint="x")
    r1 = b.emit(Op.RESHAPE, (x,), t(BATCH, 2, 4), {"shape": (BATCH, 2, 4)})
    r2 = b.emit(Op.RESHAPE, (r1,), t(BATCH, 8), {"shape": (BATCH, 8)})           # back to x's shape
    p = b.emit(Op.PERMUTE, (r2,), t(BATCH, 8), {"perm": (0, 1)})                   # identity
    s1 = b.emit(Op.SLICE, (p,), t(BATCH, 3), {"dim": 1, "start": 0, "end": 3, "step": 1})
    s2 = b.emit(Op.SLICE, (p,), t(BATCH, 5), {"dim": 1, "start": 3, "end": 8, "step": 1})
    c = b.emit(Op.CAT, (s1, s2), t(BATCH, 8), {"dim": 1})                         # == x
    e1 = b.emit(Op.EXP, (c,), t(BATCH, 8))
    e2 = b.emit(Op.EXP, (c,), t(BATCH, 8))                                        # common subexpression
    b.emit(Op.TANH, (x,), t(BATCH, 8))                                            # dead
    out = b.emit(Op.ADD, (e1, e2), t(BATCH, 8))
    return b.finish(outputs=[out], dce=False)


def test_layout_noops_fold_and_slices_reassemble_to_the_source():
    g = _graph()
    after = apply("canonicalize", g)
    assert [n.op for n in after.nodes] == [Op.INPUT, Op.EXP, Op.ADD]
    add = after.node(after.outputs[0])
    assert add.inputs[0] == add.inputs[1]                       # CSE merged the two exps
    x = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    np.testing.assert_allclose(run_graph(after, [x])[0], run_graph(g, [x])[0])


@pytest.mark.parametrize("name", ZOO)
def test_canonicalize_preserves_every_zoo_model(name):
    _, g, inputs = zoo_prepared(name)
    assert_preserves("canonicalize", g, inputs)
