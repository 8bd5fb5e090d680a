"""Threading of the generated code at small batches: a batch of up to 16 rows is one tile on the
calling thread, and layers with at least 1 MiB of weights split their columns over the threads
(one thread alone cannot stream dlrm-v2's 64 MB of dense weights at the memory's bandwidth).
Each output column is still computed by one thread in the same order, so the results are the
same bit for bit whatever the thread count."""
from __future__ import annotations

import numpy as np
import pytest

from xrec.targets.cpu.binding import CpuModel
from xrec.targets.cpu.codegen import SPLIT_COLUMNS_BYTES
from xrec.testing import edge_case_inputs

from .conftest import needs_cpu

pytestmark = needs_cpu


def test_only_big_layers_split_their_columns(compiled_zoo):
    cm, model = compiled_zoo("dlrm-v2")
    src = (cm.path / "src" / "model.cpp").read_text()
    big = [m for m in model.modules() if hasattr(m, "in_features")
           and m.in_features * m.out_features * 4 >= SPLIT_COLUMNS_BYTES]
    assert big, "dlrm-v2 has layers of several MB"
    assert src.count("#pragma omp parallel for num_threads(C.col_threads)") == len(big)
    small, _ = compiled_zoo("dlrm-small")
    assert "num_threads(C.col_threads)" not in (small.path / "src" / "model.cpp").read_text()   # all < 1 MiB


@pytest.mark.parametrize("batches", [(1, 7, 16), (17, 64)])
def test_results_do_not_depend_on_the_thread_count(compiled_zoo, batches):
    cm, model = compiled_zoo("dlrm-v2")
    one, two = CpuModel(cm.path, threads=1), CpuModel(cm.path, threads=2)
    try:
        for args in edge_case_inputs(model, batches=batches):
            flat, _ = cm.flatten_inputs(args, {})
            np.testing.assert_array_equal(one(flat)[0], two(flat)[0])
    finally:
        one.close()
        two.close()
