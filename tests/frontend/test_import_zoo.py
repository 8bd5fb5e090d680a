"""Every zoo model imports, and its IR (before and after the pipeline) matches PyTorch.

Inputs cover the edge cases: batch 1, odd batches, int32 and int64 ids, empty
bags, duplicate ids, first and last table rows, one feature with all bags empty.
"""
import numpy as np
import pytest

from xrec.ir import Op, run_graph
from xrec.passes import run_pipeline
from xrec.testing import edge_case_inputs

from conftest import ZOO, flat, imported_zoo, torch_out


@pytest.mark.parametrize("name", ZOO)
def test_imported_zoo_model_matches_pytorch_on_edge_cases(name):
    model, g = imported_zoo(name)
    opt = run_pipeline(g)
    for args in edge_case_inputs(model, batches=(1, 7, 64)):
        want = torch_out(model, args)
        np.testing.assert_allclose(run_graph(g, flat(args))[0], want, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(run_graph(opt, flat(args))[0], want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_symbols_are_batch_and_ids_per_feature(name):
    _, g = imported_zoo(name)
    dense = [n for n in g.input_nodes if n.attr("kind") == "dense"]
    assert dense and all(str(n.type.shape[0]) == "B" for n in dense)
    for j in g.nodes_of(Op.JAGGED):
        assert str(j.type.batch) == "B"
        assert str(j.type.nnz).startswith("N_")


def test_dlrm_small_ir_has_one_table_batched_group_and_one_interaction():
    _, g = imported_zoo("dlrm-small")
    opt = run_pipeline(g)
    groups = opt.nodes_of(Op.EMBEDDING_BAG_GROUP)
    assert len(groups) == 1 and len(groups[0].attr("features")) == 26
    assert not opt.nodes_of(Op.EMBEDDING_BAG)
    inter = opt.nodes_of(Op.DOT_INTERACTION)
    assert len(inter) == 1 and len(inter[0].attr("pairs")) == 27 * 26 // 2
    assert not opt.nodes_of(Op.MATMUL, Op.INDEX)
    assert [len(n.attr("acts")) for n in opt.nodes_of(Op.MLP)] == [3, 3]


@pytest.mark.parametrize("name,op,count", [("dlrm-v2", Op.CROSS_LAYER, 3), ("dcn-v2", Op.CROSS_LAYER, 3),
                                           ("deepfm", Op.FM, 1)])
def test_recognizers_find_the_zoo_interactions(name, op, count):
    _, g = imported_zoo(name)
    assert len(run_pipeline(g).nodes_of(op)) == count
