"""recognize_cross: x0 * (W x + b) + x (full rank) and x0 * (W(V x) + b) + x (low rank) -> CROSS_LAYER."""
import pytest

from xrec.ir import Op

from passutil import assert_preserves, zoo_prepared


@pytest.mark.parametrize("name,low_rank", [("dcn-v2", False), ("dlrm-v2", True)])
def test_three_cross_layers_are_recognized(name, low_rank):
    _, g, inputs = zoo_prepared(name)
    after = assert_preserves("recognize_cross", g, inputs)
    cross = after.nodes_of(Op.CROSS_LAYER)
    assert len(cross) == 3 and all(n.attr("low_rank") == low_rank for n in cross)
    x0 = cross[0].inputs[0]
    assert all(n.inputs[0] == x0 for n in cross)               # every layer reads the same x0
    assert cross[1].inputs[1] == cross[0].name                   # and the previous layer's output


def test_a_linear_whose_output_is_reused_is_not_absorbed():
    _, g, _ = zoo_prepared("dlrm-small")
    from passutil import apply
    assert not apply("recognize_cross", g).nodes_of(Op.CROSS_LAYER)
