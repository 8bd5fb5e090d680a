"""The KServe v2 / Open Inference Protocol endpoints besides infer: health, metadata, config, errors, /metrics."""
from __future__ import annotations

import pytest

from .conftest import get_json, needs_cpu

pytestmark = needs_cpu


def test_health_live_and_ready(dlrm_server):
    assert get_json(dlrm_server, "/v2/health/live") == (200, {"live": True})
    assert get_json(dlrm_server, "/v2/health/ready") == (200, {"ready": True})


def test_server_metadata_names_the_binary_extension(dlrm_server):
    status, meta = get_json(dlrm_server, "/v2")
    assert status == 200 and meta["name"] == "xrec" and "binary_tensor_data" in meta["extensions"]


def test_model_metadata_uses_manifest_names_and_dynamic_dims(dlrm_server):
    status, meta = get_json(dlrm_server, "/v2/models/dlrm-small")
    assert status == 200
    assert meta["name"] == "dlrm-small" and meta["versions"] == ["1"]
    ins = {t["name"]: t for t in meta["inputs"]}
    assert len(ins) == 1 + 26 + 26
    assert ins["dense"] == {"name": "dense", "datatype": "FP32", "shape": [-1, 13]}     # [B, 13]
    assert ins["indices[3]"] == {"name": "indices[3]", "datatype": "INT64", "shape": [-1]}   # [N_indices_3]
    assert ins["offsets[25]"] == {"name": "offsets[25]", "datatype": "INT64", "shape": [-1]}  # [B+1]
    assert meta["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 1]}]


def test_official_client_reads_health_metadata_and_config(dlrm_server):
    import tritonclient.http as th
    c = th.InferenceServerClient(dlrm_server.address)
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("dlrm-small") and c.is_model_ready("dlrm-small", "1")
    assert not c.is_model_ready("dlrm-small", "2")
    meta = c.get_model_metadata("dlrm-small")
    assert [t["name"] for t in meta["inputs"]][:3] == ["dense", "indices[0]", "indices[1]"]
    cfg = c.get_model_config("dlrm-small")
    assert cfg["dynamic_batching"]["enabled"] is True
    assert cfg["dynamic_batching"]["max_batch_rows"] == 64
    c.close()


@pytest.mark.parametrize("path", ["/v2/models/nope", "/v2/models/nope/ready", "/v2/models/nope/config",
                                  "/v2/models/dlrm-small/versions/7", "/v2/models/dlrm-small/versions/7/ready"])
def test_unknown_model_or_version_is_404_with_a_json_error(dlrm_server, path):
    status, body = get_json(dlrm_server, path)
    assert status == 404
    assert ("unknown model 'nope'" in body["error"] and "serves 'dlrm-small'" in body["error"]) or \
        "no version '7'" in body["error"]


def test_unknown_route_is_404_with_a_json_error(dlrm_server):
    status, body = get_json(dlrm_server, "/v3/whatever")
    assert status == 404 and "no route for GET /v3/whatever" in body["error"]


def test_metrics_are_prometheus_text_with_the_documented_families(dlrm_server):
    import urllib.request
    with urllib.request.urlopen(dlrm_server.url + "/metrics") as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    for family, kind in (("xrec_requests_total", "counter"), ("xrec_requests_received_total", "counter"),
                         ("xrec_errors_total", "counter"), ("xrec_request_duration_seconds", "histogram"),
                         ("xrec_batch_size", "histogram"), ("xrec_batch_rows", "histogram"),
                         ("xrec_queue_depth", "gauge"), ("xrec_queue_wait_seconds", "histogram")):
        assert f"# TYPE {family} {kind}" in text, family
    assert 'xrec_batch_size_bucket{model="dlrm-small",le="+Inf"}' in text
    assert 'xrec_errors_total{model="dlrm-small",kind="queue_full"}' in text
    samples = dlrm_server.metrics()
    assert all(v >= 0 for _, _, v in samples)
