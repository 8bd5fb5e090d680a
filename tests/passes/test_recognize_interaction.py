"""recognize_interaction: bmm(T, T^T)[:, li, lj] -> DOT_INTERACTION with DLRM's pair order."""
from xrec.ir import Op

from passutil import assert_preserves, zoo_prepared


def test_dlrm_interaction_is_one_op_with_lower_triangle_pairs():
    _, g, inputs = zoo_prepared("dlrm-small", upto=("fuse_embedding_bags", "canonicalize"))
    after = assert_preserves("recognize_interaction", g, inputs)
    (op,) = after.nodes_of(Op.DOT_INTERACTION)
    pairs = op.attr("pairs")
    assert pairs == tuple((i, j) for i in range(27) for j in range(i))
    assert not after.nodes_of(Op.MATMUL) and not after.nodes_of(Op.INDEX)


def test_models_without_the_pattern_are_unchanged():
    _, g, _ = zoo_prepared("dcn-v2")
    from passutil import apply
    assert apply("recognize_interaction", g).nodes == g.nodes
