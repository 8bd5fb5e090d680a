"""Requests a careless or hostile client sends (issue 22, items 6, 7a, 7f): an empty body, a non-string or deeply
nested `id`, invalid UTF-8 in names and ids. Each gets a 400 that says what is wrong, is counted in /metrics, and
the server stays up and still shuts down promptly on SIGTERM."""
from __future__ import annotations

import json
import time

import pytest

from xrec import zoo

from .conftest import infer, kserve_inputs, model_of, needs_cpu, post

pytestmark = needs_cpu

URL = "/v2/models/dlrm-small/infer"


@pytest.fixture(scope="module")
def good():
    model = model_of("dlrm-small")
    return kserve_inputs(zoo.make_inputs(model, 2, seed=5))


def counts(srv):
    s = srv.metrics()
    return (srv.metric("xrec_requests_received_total", s), srv.metric("xrec_requests_total", s, code=400),
            srv.metric("xrec_requests_total", s))


def test_empty_post_body_is_a_400_saying_the_body_is_empty_and_is_counted(dlrm_server):
    before = counts(dlrm_server)
    status, body = post(dlrm_server, URL, b"")
    assert status == 400, body
    assert "empty" in body["error"] and "inputs" in body["error"], body
    after = counts(dlrm_server)
    assert after[0] == before[0] + 1 and after[1] == before[1] + 1 and after[2] == before[2] + 1


def test_unknown_model_infer_is_counted_as_received_and_answered(dlrm_server, good):
    before = counts(dlrm_server)
    status, _ = post(dlrm_server, "/v2/models/nope/infer", {"inputs": good})
    assert status == 404
    after = counts(dlrm_server)
    assert after[0] == before[0] + 1 and after[2] == before[2] + 1


@pytest.mark.parametrize("bad_id", [7, None, ["a"], {"x": 1}, True])
def test_non_string_id_is_a_400(dlrm_server, good, bad_id):
    status, body = infer(dlrm_server, "dlrm-small", good, id=bad_id)
    assert status == 400, body
    assert "id" in body["error"] and "string" in body["error"], body


def test_string_id_is_echoed(dlrm_server, good):
    status, body = infer(dlrm_server, "dlrm-small", good, id="req-\u00e9-1")
    assert status == 200, body
    assert body["id"] == "req-\u00e9-1"


@pytest.mark.parametrize("where", ["id", "parameters", "input_parameters", "data"])
def test_60000_nested_arrays_are_a_400_and_the_server_stays_up(dlrm_server, good, where):
    deep = "[" * 60000 + "]" * 60000
    ins = json.dumps(good)
    if where == "id":
        body = '{"id": ' + deep + ', "inputs": ' + ins + "}"
    elif where == "parameters":
        body = '{"parameters": {"x": ' + deep + '}, "inputs": ' + ins + "}"
    elif where == "input_parameters":
        body = '{"inputs": [{"name": "dense", "parameters": {"x": ' + deep + "}}]}"
    else:
        body = '{"inputs": [{"name": "dense", "datatype": "FP32", "shape": [1], "data": ' + deep + "}]}"
    status, answer = post(dlrm_server, URL, body)
    assert status == 400, answer
    assert ("string" if where == "id" else "nests") in answer["error"], answer
    assert infer(dlrm_server, "dlrm-small", good)[0] == 200


@pytest.mark.parametrize("where", ["name", "id", "datatype", "model"])
def test_invalid_utf8_in_a_name_or_id_is_a_400(dlrm_server, good, where):
    ins = json.dumps(good)
    if where == "name":
        body = ('{"inputs": [{"name": "\x01BAD", "datatype": "FP32", "shape": [1], "data": [1]}]}').encode()
    elif where == "datatype":
        body = ('{"inputs": [{"name": "dense", "datatype": "\x01BAD", "shape": [1], "data": [1]}]}').encode()
    elif where == "id":
        body = ('{"id": "\x01BAD", "inputs": ' + ins + "}").encode()
    else:
        body = ('{"inputs": ' + ins + ', "outputs": [{"name": "\x01BAD"}]}').encode()
    body = body.replace(b"\x01BAD", b"ab\xff\xfecd")
    status, answer = post(dlrm_server, URL, body)
    assert status == 400, answer
    assert "UTF-8" in answer["error"], answer
    assert infer(dlrm_server, "dlrm-small", good)[0] == 200


def test_sigterm_after_error_answers_exits_promptly(start_server, artifact, good):
    srv = start_server(artifact("dlrm-small"))
    for body in (b"", b'{"id": "ab\xff", "inputs": []}', b'{"id": ' + b"[" * 60000 + b"]" * 60000 + b"}",
                 b"{not json"):
        assert post(srv, URL, body)[0] == 400
    assert infer(srv, "dlrm-small", good)[0] == 200
    t0 = time.monotonic()
    assert srv.stop(timeout=30) == 0
    assert time.monotonic() - t0 < 5.0
