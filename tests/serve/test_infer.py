"""Inference through the official tritonclient (HTTP) and plain JSON: results match PyTorch (rtol 1e-4)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from xrec import zoo
from xrec.testing import edge_case_inputs

from .conftest import TOL, infer, kserve_inputs, model_of, needs_cpu, post, torch_out, triton_inputs

pytestmark = needs_cpu


@pytest.fixture(scope="module")
def two_tower_server(artifact, server_exe):
    from xrec.serve.process import ServerProcess
    srv = ServerProcess(artifact("two-tower"), host="127.0.0.1", port=0).start()
    yield srv
    assert srv.stop() == 0


def client(srv):
    import tritonclient.http as th
    return th.InferenceServerClient(srv.address)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_official_client_dlrm_matches_pytorch_on_edge_cases(dlrm_server, binary):
    """Batches 1, 7, 64 with int64 and int32 ids, empty bags, duplicate ids, ids 0 and rows-1, an all-empty feature;
    tensors as binary data (tritonclient's default) and as JSON, both ways."""
    import tritonclient.http as th
    model = model_of("dlrm-small")
    c = client(dlrm_server)
    for args in edge_case_inputs(model):
        outputs = [th.InferRequestedOutput("output", binary_data=binary)]
        res = c.infer("dlrm-small", triton_inputs(args, binary=binary), outputs=outputs)
        got = res.as_numpy("output")
        np.testing.assert_allclose(got, torch_out(model, args), **TOL)
        assert got.shape == (len(args[0]), 1)
    c.close()


def test_official_client_two_tower_matches_pytorch(two_tower_server):
    model = model_of("two-tower")
    c = client(two_tower_server)
    cases = edge_case_inputs(model, batches=(1, 9)) + [zoo.make_inputs(model, 100, seed=5, index_dtype=torch.int32)]
    for args in cases:
        res = c.infer("two-tower", triton_inputs(args))      # no outputs named: all, as binary data
        np.testing.assert_allclose(res.as_numpy("output"), torch_out(model, args), **TOL)
    assert c.get_model_metadata("two-tower")["inputs"][0] == {"name": "dense", "datatype": "FP32", "shape": [-1, 13]}
    c.close()


def test_plain_json_request_like_curl(dlrm_server):
    """What the README's curl example sends: JSON tensors, a request id, JSON outputs."""
    model = model_of("dlrm-small")
    args = zoo.make_inputs(model, 3, seed=11)
    status, body = infer(dlrm_server, "dlrm-small", kserve_inputs(args), id="req-42")
    assert status == 200, body
    assert body["model_name"] == "dlrm-small" and body["id"] == "req-42"
    (out,) = body["outputs"]
    assert out["name"] == "output" and out["datatype"] == "FP32" and out["shape"] == [3, 1]
    np.testing.assert_allclose(np.array(out["data"], np.float32).reshape(3, 1), torch_out(model, args), **TOL)


def test_lengths_replace_offsets(dlrm_server):
    model = model_of("dlrm-small")
    args = zoo.make_inputs(model, 6, seed=12, empty_bag_prob=0.3)
    status, body = infer(dlrm_server, "dlrm-small", kserve_inputs(args, lengths=True))
    assert status == 200, body
    np.testing.assert_allclose(np.array(body["outputs"][0]["data"], np.float32).reshape(6, 1),
                               torch_out(model, args), **TOL)


def test_nested_json_data_is_read_row_major(dlrm_server):
    model = model_of("dlrm-small")
    args = zoo.make_inputs(model, 2, seed=13)
    ins = kserve_inputs(args)
    ins[0]["data"] = args[0].numpy().tolist()        # [[13 floats], [13 floats]]
    status, body = infer(dlrm_server, "dlrm-small", ins)
    assert status == 200, body
    np.testing.assert_allclose(np.array(body["outputs"][0]["data"], np.float32).reshape(2, 1),
                               torch_out(model, args), **TOL)


def test_empty_batch_gives_an_empty_output(dlrm_server):
    model = model_of("dlrm-small")
    args = zoo.make_inputs(model, 1, seed=14)
    empty = (args[0][:0], [t[:0] for t in args[1]], [torch.zeros(1, dtype=t.dtype) for t in args[2]])
    status, body = infer(dlrm_server, "dlrm-small", kserve_inputs(empty))
    assert status == 200, body
    assert body["outputs"][0]["shape"] == [0, 1] and body["outputs"][0]["data"] == []


def test_binary_data_output_parameter_returns_raw_float32(dlrm_server):
    model = model_of("dlrm-small")
    args = zoo.make_inputs(model, 4, seed=15)
    import json
    import urllib.request
    req = urllib.request.Request(dlrm_server.url + "/v2/models/dlrm-small/infer", method="POST",
                                 data=json.dumps({"inputs": kserve_inputs(args),
                                                  "parameters": {"binary_data_output": True}}).encode())
    with urllib.request.urlopen(req) as r:
        n = int(r.headers["Inference-Header-Content-Length"])
        raw = r.read()
    head = json.loads(raw[:n])
    assert head["outputs"][0]["parameters"]["binary_data_size"] == 16
    np.testing.assert_allclose(np.frombuffer(raw[n:], np.float32).reshape(4, 1), torch_out(model, args), **TOL)


def test_request_timeout_parameter_and_versioned_infer_path(dlrm_server):
    model = model_of("dlrm-small")
    args = zoo.make_inputs(model, 2, seed=16)
    status, body = post(dlrm_server, "/v2/models/dlrm-small/versions/1/infer",
                        {"inputs": kserve_inputs(args), "parameters": {"timeout": 30_000_000}})
    assert status == 200, body
    np.testing.assert_allclose(np.array(body["outputs"][0]["data"], np.float32).reshape(2, 1),
                               torch_out(model, args), **TOL)
