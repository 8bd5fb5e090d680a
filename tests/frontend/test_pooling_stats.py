"""The frontend records each sparse feature's pooling statistics (ids per bag) from the example inputs, once."""
import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from xrec import zoo
from xrec.frontend import import_model
from xrec.ir.serialize import graph_from_json, graph_to_json
from xrec.ir.stats import POOLING_KEY, measure_pooling, pooling_stats, record_pooling
from xrec.passes import run_pipeline
from xrec.passes.pipeline import build_pipeline

from conftest import flat, imported_zoo


def _lengths(off: torch.Tensor, nnz: int, last: bool = True) -> np.ndarray:
    o = off.numpy().astype(np.int64)
    return np.diff(o if last else np.append(o, nnz))


@pytest.mark.parametrize("name", ["dlrm-small", "two-tower"])
def test_zoo_import_records_bags_ids_min_and_max_of_every_feature_from_the_example_inputs(name):
    model, g = imported_zoo(name)
    _, idx, off = zoo.example_inputs(model)
    stats = pooling_stats(g)
    assert sorted(stats) == sorted(f"indices[{k}]" for k in range(len(idx)))
    for k, (i, o) in enumerate(zip(idx, off)):
        s, n = stats[f"indices[{k}]"], _lengths(o, len(i))
        assert (s.bags, s.ids, s.min_ids, s.max_ids) == (len(n), int(n.sum()), int(n.min()), int(n.max()))
        assert s.mean == pytest.approx(n.mean())
        assert s.one_hot == (zoo.spec_of(model).features[k].pooling == 1.0)


class NoLastOffset(nn.Module):
    """offsets of length B (include_last_offset=False): the last bag runs to the end of the ids."""

    def __init__(self):
        super().__init__()
        self.bag = nn.EmbeddingBag(40, 4, mode="sum")

    def forward(self, ids, offsets):
        return self.bag(ids, offsets)


def test_offsets_without_the_last_one_count_the_last_bag_to_the_end():
    ids = torch.tensor([3, 3, 7, 1, 0, 9, 9, 2])
    off = torch.tensor([0, 3, 3, 4])                 # bags of 3, 0 (empty), 1 and 4 ids
    g = import_model(NoLastOffset(), (ids, off))
    (s,) = pooling_stats(g).values()
    assert (s.bags, s.ids, s.min_ids, s.max_ids) == (4, 8, 0, 4) and not s.one_hot


def test_statistics_accumulate_over_batches_and_replace_the_recorded_ones():
    model, g = imported_zoo("wide-deep")
    batches = [zoo.make_inputs(model, b, seed=s, empty_bag_prob=0.3) for b, s in ((1, 1), (17, 2), (64, 3))]
    g2 = record_pooling(g, [flat(a) for a in batches])
    assert sum(1 for k, _ in g2.meta if k == POOLING_KEY) == 1
    for k in range(len(batches[0][1])):
        n = np.concatenate([_lengths(a[2][k], len(a[1][k])) for a in batches])
        s = pooling_stats(g2)[f"indices[{k}]"]
        assert (s.bags, s.ids, s.min_ids, s.max_ids) == (82, int(n.sum()), int(n.min()), int(n.max()))
    with pytest.raises(ValueError, match="expected .* flat inputs"):
        measure_pooling(g, [[np.zeros(3)]])


def test_statistics_survive_the_pass_pipeline_and_the_ir_json_round_trip():
    _, g = imported_zoo("dlrm-small")
    opt = run_pipeline(g, build_pipeline())
    assert pooling_stats(opt) == pooling_stats(g)
    back = graph_from_json(json.loads(json.dumps(graph_to_json(opt))), opt.params)
    assert pooling_stats(back) == pooling_stats(g)


def test_an_exported_program_records_the_statistics_of_the_inputs_it_was_exported_with(tmp_path):
    from xrec.frontend import import_exported
    ids = torch.tensor([3, 3, 7, 1, 0, 9, 9, 2])
    off = torch.tensor([0, 3, 3, 4])
    dyn = {"ids": {0: torch.export.Dim.AUTO}, "offsets": {0: torch.export.Dim.AUTO}}
    ep = torch.export.export(NoLastOffset(), (ids, off), dynamic_shapes=dyn, strict=False)
    torch.export.save(ep, tmp_path / "m.pt2")
    g = import_exported(torch.export.load(tmp_path / "m.pt2"), "m")
    (s,) = pooling_stats(g).values()
    assert (s.bags, s.ids, s.min_ids, s.max_ids) == (4, 8, 0, 4)
