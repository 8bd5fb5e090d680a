"""recognize_fm: 0.5 * sum_k((sum_f v)^2 - sum_f v^2) -> FM(v)."""
from xrec.ir import Op

from passutil import assert_preserves, zoo_prepared


def test_deepfm_second_order_term_is_one_fm_op():
    _, g, inputs = zoo_prepared("deepfm", upto=("fuse_embedding_bags", "canonicalize"))
    after = assert_preserves("recognize_fm", g, inputs)
    (fm,) = after.nodes_of(Op.FM)
    v = after.node(fm.inputs[0])
    assert v.type.rank == 3 and v.type.shape[1:] == (26, 10)
    assert not after.nodes_of(Op.POW) and not after.nodes_of(Op.SUB)
