"""fuse_mlp: linear(+act) chains with single-use intermediates become one MLP op."""
import pytest

from xrec.ir import Op

from conftest import ZOO
from passutil import assert_preserves, zoo_prepared


@pytest.mark.parametrize("name", ZOO)
def test_mlp_fusion_preserves_every_zoo_model(name):
    _, g, inputs = zoo_prepared(name, upto=("recognize_cross",))
    after = assert_preserves("fuse_mlp", g, inputs)
    assert not after.nodes_of(Op.LINEAR)
    assert after.nodes_of(Op.MLP)


def test_dlrm_gets_bottom_and_top_mlps_with_their_activations():
    _, g, _ = zoo_prepared("dlrm-small")
    from passutil import apply
    mlps = apply("fuse_mlp", g).nodes_of(Op.MLP)
    assert [m.attr("acts") for m in mlps] == [("relu", "relu", "relu"), ("relu", "relu", "sigmoid")]
    assert [m.type.shape[1] for m in mlps] == [64, 1]
