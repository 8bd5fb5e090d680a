"""CUDA graph replay of a triton program: what a captured graph bakes in, and (on a GPU) that one
graph per batch size serves every id count, matches PyTorch, and still reports bad ids."""
from __future__ import annotations

import pytest
import torch

import xrec
from xrec import zoo
from xrec.runtime.validate import InputError
from xrec.targets.triton.runtime import _baked
from xrec.testing import zoo_model

ZOO = zoo.list_models()


def _model(name: str, **options):
    m = zoo_model(name, max_rows=300)
    cm = xrec.compile(m, zoo.example_inputs(m), target="triton", options={"aot": False, **options})
    return m, cm._run.model


@pytest.mark.parametrize("name", ZOO)
def test_a_graph_of_a_zoo_model_depends_on_the_batch_only_and_holds_only_the_dense_input(name):
    _, model = _model(name)
    syms, inputs = _baked(model.program)
    assert syms == ("B",)
    assert inputs == {"dense"}          # ids, offsets reach the kernels through pointer tables


def test_cuda_graphs_are_off_in_the_interpreter_and_can_be_turned_off():
    _, model = _model("dlrm-small")
    assert model.interpret and not model.cuda_graphs
    with pytest.raises(ValueError, match=r"cuda_graphs=.maybe. is not a bool"):
        _model("dlrm-small", cuda_graphs="maybe")


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["dlrm-small", "two-tower", "wide-deep"])
def test_one_graph_per_batch_serves_every_id_count_and_matches_pytorch(name):
    m, model = _model(name, mode="gpu")
    assert model.cuda_graphs
    for seed in range(4):                                   # same batch, other ids and id counts
        dense, idx, off = zoo.make_inputs(m, 37, seed=seed, empty_bag_prob=0.2 * (seed % 2))
        got = model(dense.cuda(), *[i.cuda() for i in idx], *[o.cuda() for o in off])[0]
        with torch.no_grad():
            torch.testing.assert_close(got.cpu(), m(dense, idx, off), rtol=1e-4, atol=1e-6)
    assert len(model._graphs) == 1 and model.graph_error is None
    dense, idx, off = zoo.make_inputs(m, 1, seed=9)          # another batch: a second graph
    got = model(dense, *idx, *off)[0]                        # CPU tensors are moved to the GPU
    with torch.no_grad():
        torch.testing.assert_close(got.cpu(), m(dense, idx, off), rtol=1e-4, atol=1e-6)
    assert len(model._graphs) == 2


@pytest.mark.gpu
def test_a_replayed_graph_still_reports_a_bad_id_and_bad_offsets():
    m, model = _model("dlrm-small", mode="gpu")
    dense, idx, off = zoo.make_inputs(m, 8, seed=1, min_ids_per_feature=1)
    model(dense, *idx, *off)                                 # captures the batch-8 graph
    bad = [i.clone() for i in idx]
    bad[3][0] = 10 ** 6
    with pytest.raises((InputError, IndexError), match="index 1000000 at position 0"):
        model(dense, *bad, *off)
    worse = [o.clone() for o in off]
    worse[2][1] = worse[2][-1] + 5
    with pytest.raises(InputError, match="offsets"):
        model(dense, *idx, *worse)
    got = model(dense, *idx, *off)[0]                        # and the graph is still good after errors
    with torch.no_grad():
        torch.testing.assert_close(got.cpu(), m(dense, idx, off), rtol=1e-4, atol=1e-6)
