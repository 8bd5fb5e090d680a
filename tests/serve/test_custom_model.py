"""A user model with its own input names and no dense input (the batch is len(offsets) - 1): served under the
names its forward() gives, merged across requests, results equal to PyTorch."""
from __future__ import annotations

import json
import threading
import urllib.request

import numpy as np
import pytest
import torch

import xrec
from xrec.targets.cpu.isa import best_isa
from xrec.testing import BagsOnly, bags_only_inputs

from .conftest import TOL, get_json, needs_cpu, post

pytestmark = needs_cpu


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    torch.manual_seed(0)
    model = BagsOnly().eval()
    out = tmp_path_factory.mktemp("bags") / "bags.xrec"
    xrec.compile(model, bags_only_inputs(4), target="cpu", options={"isa": best_isa()}, name="bags-only", out=out)
    return model, out


def body(args, rid):
    names = ("ia", "oa", "ib", "ob")
    return {"id": rid, "inputs": [{"name": n, "datatype": "INT64", "shape": [len(t)], "data": t.tolist()}
                                  for n, t in zip(names, args)]}


def test_model_without_dense_input_is_served_and_merged(bags, start_server):
    model, art = bags
    srv = start_server(art, max_batch=64, max_delay_us=50_000, workers=1)
    status, meta = get_json(srv, "/v2/models/bags-only")
    assert status == 200 and [t["name"] for t in meta["inputs"]] == ["ia", "oa", "ib", "ob"]
    assert meta["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 7]}]
    cases = [bags_only_inputs(1 + k % 5, seed=k) for k in range(10)]
    answers = [None] * len(cases)

    def send(k):
        req = urllib.request.Request(srv.url + "/v2/models/bags-only/infer", method="POST",
                                     data=json.dumps(body(cases[k], f"q{k}")).encode())
        with urllib.request.urlopen(req) as r:
            answers[k] = json.loads(r.read())
    threads = [threading.Thread(target=send, args=(k,)) for k in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, (args, ans) in enumerate(zip(cases, answers)):
        assert ans["id"] == f"q{k}"
        with torch.no_grad():
            want = model(*args).numpy()
        out = ans["outputs"][0]
        assert out["shape"] == list(want.shape)
        np.testing.assert_allclose(np.array(out["data"], np.float32).reshape(want.shape), want, **TOL)
    assert srv.metric("xrec_batch_size_sum") == 10 and srv.metric("xrec_batch_size_count") < 10
    # its own checks: an id beyond its 20-row table
    bad = body((torch.tensor([1]), torch.tensor([0, 1, 1]), torch.tensor([20]), torch.tensor([0, 0, 1])), "bad")
    status, err = post(srv, "/v2/models/bags-only/infer", bad)
    assert status == 400 and "'ib'" in err["error"] and "table of 20 rows" in err["error"]
