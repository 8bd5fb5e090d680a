"""Every zoo model's optimised IR is costed by its own rules (no default, no guessed pooling)."""
import pytest

from xrec import zoo
from xrec.api import lower
from xrec.cost import graph_work

from conftest import imported_zoo

# the stage each model's distinguishing op costs in
EXPECT = {"dlrm-small": "interaction", "dcn-v2": "interaction", "deepfm": "interaction", "two-tower": "other",
          "wide-deep": "dense", "dlrm-v2": "interaction"}


@pytest.mark.parametrize("name", zoo.list_models())
def test_zoo_model_costs_without_assumptions(name):
    _, g = imported_zoo(name)
    g, *_ = lower(g, target="reference")
    small, big = graph_work(g, 8), graph_work(g, 256)
    assert small.notes == () and small.estimated == ()
    for stage in ("embedding", "dense", EXPECT.get(name, "dense")):
        assert small.stage(stage).total_flops > 0, stage
        assert big.stage(stage).total_flops > small.stage(stage).total_flops, stage
    assert big.total.total_bytes > small.total.total_bytes
    assert all(k in small.bindings for k in ("B",)) and len(small.bindings) > 1
