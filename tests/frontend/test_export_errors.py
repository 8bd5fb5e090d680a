"""A model torch.export cannot trace gets one clear FrontendError naming the user's line and the fix,
without torch's partial FX graph on stderr (that only under XREC_VERBOSE)."""
import inspect

import pytest
import torch
import torch.nn as nn

from xrec.config import knobs
from xrec.frontend import import_model
from xrec.frontend.errors import FrontendError


class DataDependentIf(nn.Module):
    def __init__(self):
        super().__init__()
        self.bag = nn.EmbeddingBag(10, 4, include_last_offset=True)
        self.lin = nn.Linear(4, 1)

    def forward(self, ids, offsets):
        x = self.bag(ids, offsets)
        if x.sum() > 0:
            x = x * 2
        return torch.sigmoid(self.lin(x))


EXAMPLE = (torch.tensor([1, 2, 3, 4]), torch.tensor([0, 2, 4]))
IF_LINE = inspect.getsourcelines(DataDependentIf.forward)[1] + 2


def test_data_dependent_if_names_the_line_and_the_fix_without_printing_the_graph(capfd):
    with knobs.override(verbose=False), pytest.raises(FrontendError) as e:
        import_model(DataDependentIf(), EXAMPLE)
    msg = str(e.value)
    assert f"test_export_errors.py:{IF_LINE} (`if x.sum() > 0:`)" in msg
    assert "Python control flow on a tensor's values" in msg and "torch.where(cond, a, b)" in msg
    assert len(msg.splitlines()) == 2
    err = capfd.readouterr().err
    assert "def forward" not in err and "torch.ops.aten" not in err, err


def test_data_dependent_if_shows_torchs_partial_graph_under_verbose(capfd):
    with knobs.override(verbose=True), pytest.raises(FrontendError, match="Python control flow"):
        import_model(DataDependentIf(), EXAMPLE)
    assert "def forward" in capfd.readouterr().err
