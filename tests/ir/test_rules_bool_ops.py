"""Typing rules of comparisons, logic, where and softmax: bool results, broadcasting, and what each refuses."""
import pytest

from xrec.ir import BATCH, DType, Node, Op, TensorType, make_attrs
from xrec.ir.rules import TypeRuleError, infer_type

F32, BOOL = DType.F32, DType.BOOL


def _type(op, *ins, **attrs):
    n = Node(name="v", op=op, inputs=tuple(f"i{k}" for k in range(len(ins))), type=None, attrs=make_attrs(attrs))
    return infer_type(n, list(ins))


@pytest.mark.parametrize("op", [Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE])
def test_comparisons_broadcast_and_give_bool(op):
    t = _type(op, TensorType((BATCH, 4), F32), TensorType((BATCH, 1), F32))
    assert t.same_as(TensorType((BATCH, 4), BOOL))
    assert _type(op, TensorType((3,), DType.I64), TensorType((), DType.I64)).same_as(TensorType((3,), BOOL))
    with pytest.raises(TypeRuleError, match="dtype mismatch i64 vs f32"):
        _type(op, TensorType((3,), DType.I64), TensorType((3,), F32))


def test_logic_takes_bools_only():
    assert _type(Op.LOGICAL_AND, TensorType((BATCH, 1), BOOL), TensorType((5,), BOOL)).same_as(
        TensorType((BATCH, 5), BOOL))
    assert _type(Op.LOGICAL_NOT, TensorType((2, 3), BOOL)).same_as(TensorType((2, 3), BOOL))
    with pytest.raises(TypeRuleError, match="operands must be bool.*cast to bool first"):
        _type(Op.LOGICAL_OR, TensorType((2,), BOOL), TensorType((2,), F32))
    with pytest.raises(TypeRuleError, match="takes 1 inputs, got 2"):
        _type(Op.LOGICAL_NOT, TensorType((2,), BOOL), TensorType((2,), BOOL))


def test_where_broadcasts_all_three_and_keeps_the_value_dtype():
    t = _type(Op.WHERE, TensorType((BATCH, 1), BOOL), TensorType((4,), F32), TensorType((), F32))
    assert t.same_as(TensorType((BATCH, 4), F32))
    with pytest.raises(TypeRuleError, match="condition must be bool"):
        _type(Op.WHERE, TensorType((4,), F32), TensorType((4,), F32), TensorType((4,), F32))
    with pytest.raises(TypeRuleError, match="dtype mismatch f32 vs i64"):
        _type(Op.WHERE, TensorType((4,), BOOL), TensorType((4,), F32), TensorType((4,), DType.I64))
    with pytest.raises(TypeRuleError, match="do not broadcast"):
        _type(Op.WHERE, TensorType((3,), BOOL), TensorType((4,), F32), TensorType((4,), F32))


def test_softmax_keeps_the_type_and_wants_a_float_input_and_a_valid_dim():
    assert _type(Op.SOFTMAX, TensorType((BATCH, 2, 3), F32), dim=-1).same_as(TensorType((BATCH, 2, 3), F32))
    with pytest.raises(TypeRuleError, match="floating point"):
        _type(Op.SOFTMAX, TensorType((BATCH, 3), DType.I32), dim=1)
    with pytest.raises(TypeRuleError, match="dim 2 out of range for rank 2"):
        _type(Op.SOFTMAX, TensorType((BATCH, 3), F32), dim=2)
