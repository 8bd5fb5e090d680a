"""cpu planning step `ops`: one lowering rule per Op; the driver runs the named steps in order."""
import pytest

from xrec.ir import BATCH, Op
from xrec.targets.cpu.context import LowerContext
from xrec.targets.cpu.lower import STAGES, LoweringError, lower, run_stages
from xrec.lowering import register_lowering
from xrec.targets.cpu.rules import RULES



def test_an_op_without_a_rule_names_the_op_its_source_line_and_the_ops_the_cpu_lowers(ir):
    g = ir()
    x = g.input("x", 4)
    i = g.b.emit(Op.INDEX, (x,), ir.f32(BATCH, 2), {"dim": 1, "index": (0, 2)}, hint="picked", loc="model.py:7")
    with pytest.raises(LoweringError) as e:
        lower(g.finish(i))
    msg = str(e.value)
    assert "target 'cpu' cannot lower %picked = index(...) at model.py:7" in msg
    assert "no lowering rule for op 'index'" in msg and "embedding_bag_group" in msg and "layer_norm" in msg
    assert e.value.op is Op.INDEX and e.value.target == "cpu"


def test_every_cpu_rule_is_in_the_shared_registry_and_a_second_one_is_refused(ir):
    assert RULES[Op.MLP].__name__ == "lower_mlp" and RULES[Op.RELU] is RULES[Op.ADD]   # one loop rule
    assert {Op.EMBEDDING_BAG_GROUP, Op.DOT_INTERACTION, Op.CAT, Op.SUM, Op.LAYER_NORM} <= set(RULES)
    with pytest.raises(ValueError, match="already has a lowering rule for 'mlp'"):
        register_lowering(Op.MLP, "cpu")(lambda ctx, n: None)


def test_a_value_that_mixes_batch_rows_is_refused_with_the_reason(ir):
    g = ir()
    x = g.input("x", 4)
    s = g.op(Op.SUM, x, type=ir.f32(1, 4), hint="s", dims=(0,), keepdim=True)
    y = g.op(Op.SUB, x, s, hint="y")                          # x - x.sum(0): row b depends on every row
    with pytest.raises(LoweringError, match="target .cpu. cannot lower %s = sum.*does not have the batch as leading "
                       "dim") as e:
        lower(g.finish(y))
    assert (e.value.target, e.value.op, e.value.node.name) == ("cpu", Op.SUM, "s")


def test_stages_run_in_order_and_can_stop_after_any_one(ir):
    names = [n for n, _ in STAGES]
    assert names.index("fold") < names.index("inline") < names.index("concat") < names.index("ops") \
        < names.index("arena")
    g = ir()
    x = g.input("x", 4)
    graph = g.finish(g.op(Op.EXP, x, hint="y"))
    ctx = run_stages(LowerContext(graph), until="inputs")
    assert ctx.steps == [] and [i.name for i in ctx.inputs] == ["x"]
    ctx = run_stages(LowerContext(graph))
    assert [s.node for s in ctx.steps] == ["y"] and ctx.arena_bytes == 0    # written into the output directly
    with pytest.raises(ValueError, match="no cpu lowering stage 'fuse'.*fold, inline"):
        run_stages(LowerContext(graph), until="fuse")
