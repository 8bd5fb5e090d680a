"""xrec.lowering: rules keyed by Op per target, one LoweringError, fallbacks as listed decisions."""
import numpy as np
import pytest

from xrec import lowering
from xrec.config import knobs
from xrec.ir import DType, Node, Op, TensorType
from xrec.ir.interpreter import IMPLS, Interpreter
from xrec.lowering import (LoweringError, TargetLowering, fallbacks, known_ops, lowering_for, lowering_rule,
                           register_fallback, register_lowering, rules_of)


@pytest.fixture
def registry(monkeypatch):
    """A clean registry for the test (the real rules come back afterwards)."""
    monkeypatch.setattr(lowering, "_RULES", {})
    monkeypatch.setattr(lowering, "_FALLBACKS", {})


def _node(op=Op.RELU, name="h", loc="model.py:12"):
    return Node(name=name, op=op, inputs=("x",), type=TensorType((4,), DType.F32), loc=loc)


def test_a_rule_registered_for_several_ops_is_found_for_each_and_only_on_its_target(registry):
    @register_lowering([Op.ADD, Op.SUB], "toy")
    def lower_add_sub(ctx, node):
        return node.op.value

    assert lowering_rule("toy", Op.ADD) is lower_add_sub and lowering_rule("toy", Op.SUB) is lower_add_sub
    assert lowering_rule("toy", Op.MUL) is None and lowering_rule("other", Op.ADD) is None
    assert known_ops("toy") == [Op.ADD, Op.SUB]
    assert lowering_for("toy").rule(_node(Op.SUB))(None, _node(Op.SUB)) == "sub"


def test_registering_a_second_rule_for_an_op_is_an_error_unless_replacing(registry):
    register_lowering(Op.RELU, "toy")(lambda c, n: 1)
    with pytest.raises(ValueError, match="already has a lowering rule for 'relu'.*replace=True"):
        register_lowering(Op.RELU, "toy")(lambda c, n: 2)
    register_lowering(Op.RELU, "toy", replace=True)(lambda c, n: 3)
    assert lowering_rule("toy", Op.RELU)(None, None) == 3
    with pytest.raises(TypeError, match="keyed by xrec.ir.Op"):
        register_lowering("relu", "toy")


def test_missing_rule_error_names_op_node_source_target_known_ops_and_what_to_do(registry):
    register_lowering([Op.ADD, Op.EXP], "toy")(lambda c, n: None)
    with pytest.raises(LoweringError) as e:
        lowering_for("toy").rule(_node(Op.LAYER_NORM, name="probs", loc="net.py:7"))
    msg = str(e.value)
    assert "target 'toy' cannot lower %probs = layer_norm(...) at net.py:7" in msg
    assert "no lowering rule for op 'layer_norm'" in msg and "target 'toy' lowers: add, exp" in msg
    assert "@register_lowering(Op.LAYER_NORM, 'toy')" in msg
    assert e.value.op is Op.LAYER_NORM and e.value.target == "toy" and e.value.node.name == "probs"
    assert isinstance(e.value, NotImplementedError)      # what the triton target caught before


def test_plain_message_form_keeps_the_message():
    assert str(LoweringError("weights are not aligned")) == "weights are not aligned"


def test_a_listed_fallback_is_printed_recorded_and_refused_when_strict(registry, capsys):
    register_fallback("toy", Op.LAYER_NORM, "runs as a torch step", rule=lambda c, n: "torch")
    assert [(f.op, f.reason) for f in fallbacks("toy")] == [(Op.LAYER_NORM, "runs as a torch step")]
    low = lowering_for("toy")
    with knobs.override(quiet=False):
        assert low.rule(_node(Op.LAYER_NORM, name="p"))(None, None) == "torch"
    err = capsys.readouterr().err
    assert "toy: %p = layer_norm(...) at model.py:12 takes a fallback: runs as a torch step" in err
    assert low.fallbacks_used() == [{"op": "layer_norm", "node": "p", "loc": "model.py:12",
                                     "reason": "runs as a torch step"}]
    with pytest.raises(LoweringError, match="fallback listed for 'layer_norm' \\(runs as a torch step\\).*strict=True"):
        lowering_for("toy", strict=True).rule(_node(Op.LAYER_NORM))


def test_a_fallback_without_a_rule_is_for_the_targets_own_generic_path(registry):
    register_fallback("toy", [Op.NORM, Op.POW], "generic torch step")
    low = TargetLowering("toy", say=lambda m: None)
    assert low.use_fallback(_node(Op.NORM)).reason == "generic torch step"
    with pytest.raises(LoweringError, match="has no rule registered"):
        low.rule(_node(Op.POW))
    with pytest.raises(ValueError, match="needs a reason"):
        register_fallback("toy", Op.POW, "")


def test_the_interpreter_is_the_reference_targets_rules_and_covers_every_op():
    assert IMPLS == dict(rules_of("reference"))
    assert set(Op) - set(IMPLS) == {Op.INPUT}


def test_the_interpreter_refuses_a_graph_with_an_op_it_has_no_rule_for(monkeypatch):
    from xrec.ir import Graph, GraphBuilder
    b = GraphBuilder(Graph(name="g", nodes=(), outputs=()))
    x = b.emit(Op.INPUT, (), TensorType((3,), DType.F32), {"name": "x", "kind": "dense"}, hint="x")
    y = b.emit(Op.EXP, (x,), TensorType((3,), DType.F32), loc="m.py:3")
    g = b.finish(outputs=[y])
    np.testing.assert_allclose(Interpreter(g).run([np.zeros(3, np.float32)])[0], np.ones(3))
    monkeypatch.delitem(lowering._RULES["reference"], Op.EXP)
    with pytest.raises(LoweringError, match=r"target 'reference' cannot lower %exp = exp\(...\) at m.py:3"):
        Interpreter(g)
