"""fuse_embedding_bags: all bags over one batch become one table-batched group [B, sum D]."""
import pytest

from xrec.ir import Op

from conftest import ZOO
from passutil import apply, assert_preserves, zoo_prepared


@pytest.mark.parametrize("name", ZOO)
def test_grouping_preserves_every_zoo_model(name):
    _, g, inputs = zoo_prepared(name)
    after = assert_preserves("fuse_embedding_bags", g, inputs)
    bags = g.nodes_of(Op.EMBEDDING_BAG)
    groups = after.nodes_of(Op.EMBEDDING_BAG_GROUP)
    assert len(groups) == 1 and not after.nodes_of(Op.EMBEDDING_BAG)
    feats = groups[0].attr("features")
    assert [f.feature for f in feats] == [b.attr("feature") for b in bags]
    assert groups[0].type.shape[1] == sum(f.dim for f in feats)


def test_modes_survive_grouping():
    _, g, _ = zoo_prepared("two-tower")
    modes = {f.mode for f in apply("fuse_embedding_bags", g).nodes_of(Op.EMBEDDING_BAG_GROUP)[0].attr("features")}
    assert modes == {"sum", "max"}


def test_concat_of_all_bags_becomes_the_group_itself_after_canonicalize():
    _, g, _ = zoo_prepared("dlrm-small", upto=("fuse_embedding_bags", "canonicalize"))
    group = g.nodes_of(Op.EMBEDDING_BAG_GROUP)[0]
    cats = [n for n in g.nodes_of(Op.CAT) if group.name in n.inputs]
    assert len(cats) == 1 and len(cats[0].inputs) == 2        # cat(bottom_mlp, group): no 26 slices
    assert not g.nodes_of(Op.SLICE)
