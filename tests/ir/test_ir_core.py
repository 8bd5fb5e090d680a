"""The IR core: symbolic types, the rules-table verifier, printing and JSON round trips."""
import numpy as np
import pytest

from xrec.ir import BATCH, DType, Graph, GraphBuilder, Node, Op, TensorType, VerifyError, make_attrs, verify
from xrec.ir.bind import ShapeError, bind_symbols
from xrec.ir.serialize import graph_from_json, graph_to_json
from xrec.ir.types import JaggedType, canon_dim, sym

from conftest import ZOO, imported_zoo


def _tiny_graph(bad_type=False) -> Graph:
    b = GraphBuilder(Graph(name="tiny", nodes=(), outputs=()))
    x = b.emit(Op.INPUT, (), TensorType((BATCH, 4), DType.F32), {"name": "x", "kind": "dense"}, hint="x")
    w = b.add_param("w", np.ones((3, 4), np.float32))
    y = b.emit(Op.LINEAR, (x, w), TensorType((BATCH, 3 if not bad_type else 5), DType.F32))
    r = b.emit(Op.RELU, (y,), TensorType((BATCH, 3 if not bad_type else 5), DType.F32))
    return b.finish(outputs=[r])


def test_symbolic_dims_simplify_and_compare():
    n = sym("N")
    assert canon_dim(BATCH * 64 / 64) == BATCH
    assert canon_dim((BATCH + 1) - 1) == BATCH
    assert canon_dim(3 * 4) == 12
    assert TensorType((BATCH, n), DType.F32).same_as(TensorType((BATCH, n), DType.F32))
    assert not TensorType((BATCH,), DType.F32).same_as(TensorType((BATCH + 1,), DType.F32))


def test_bind_symbols_solves_batch_plus_one_and_reports_conflicts():
    types = [TensorType((BATCH + 1,), DType.I64), TensorType((sym("N_a"),), DType.I64)]
    assert bind_symbols(types, [(8,), (30,)], ["off", "idx"]) == {"B": 7, "N_a": 30}
    types2 = [TensorType((BATCH, 13), DType.F32), TensorType((BATCH + 1,), DType.I64)]
    with pytest.raises(ShapeError, match="off"):
        bind_symbols(types2, [(4, 13), (9,)], ["dense", "off"])
    with pytest.raises(ShapeError, match="dim 1 must be 13"):
        bind_symbols(types2, [(4, 12), (5,)], ["dense", "off"])


def test_verifier_accepts_a_well_typed_graph_and_names_the_bad_node():
    verify(_tiny_graph())
    with pytest.raises(VerifyError, match=r"%linear.*recorded type f32\[B,5\] but rule gives f32\[B,3\]"):
        verify(_tiny_graph(bad_type=True))


def test_verifier_rejects_use_before_definition_and_missing_params():
    g = _tiny_graph()
    nodes = list(g.nodes)
    swapped = g.with_(nodes=(nodes[0], nodes[2], nodes[1], nodes[3]))
    with pytest.raises(VerifyError, match="before it is defined"):
        verify(swapped)
    with pytest.raises(VerifyError, match="missing parameter"):
        verify(g.with_(params={}))


def test_node_attributes_are_frozen_and_structural_equality_holds():
    a = Node(name="n", op=Op.SUM, inputs=("x",), type=TensorType((BATCH,), DType.F32),
             attrs=make_attrs({"dims": [1], "keepdim": False}))
    b = Node(name="n", op=Op.SUM, inputs=("x",), type=TensorType((BATCH,), DType.F32),
             attrs=make_attrs({"keepdim": False, "dims": (1,)}))
    assert a == b and hash(a) == hash(b)
    with pytest.raises(Exception):
        a.name = "m"


def test_jagged_type_batch_comes_from_offsets():
    t = JaggedType(BATCH, sym("N"), DType.I64, DType.I64)
    assert "jagged<i64/i64>[B;N]" == str(t)


@pytest.mark.parametrize("name", ZOO)
def test_every_zoo_graph_round_trips_through_json(name):
    _, g = imported_zoo(name)
    back = graph_from_json(graph_to_json(g), g.params)
    assert back.nodes == g.nodes and back.outputs == g.outputs
    verify(back)


def test_printer_shows_types_params_and_size():
    text = str(_tiny_graph())
    assert "graph tiny(%x: f32[B,4])" in text
    assert "linear(%x, @w)" in text and ": f32[B,3]" in text
