"""Serving features: dynamic batching merges concurrent requests into one kernel call and splits the results back
(each client gets its own rows), max-batch caps a call's rows, the bounded queue answers 503, per-request timeouts
answer 504, and SIGTERM finishes the requests in flight before the server exits 0."""
from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from xrec import zoo

from .conftest import TOL, infer, kserve_inputs, model_of, needs_cpu, torch_out

pytestmark = needs_cpu


def send_all(srv, bodies: list[bytes], timeout: float = 120.0) -> list[tuple[int, dict]]:
    """POST every body at once (one thread each); returns (status, answer) in order."""
    out: list = [None] * len(bodies)
    go = threading.Barrier(len(bodies))

    def one(k):
        req = urllib.request.Request(srv.url + "/v2/models/dlrm-small/infer", data=bodies[k], method="POST",
                                     headers={"Content-Type": "application/json"})
        go.wait()
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                out[k] = (r.status, json.loads(r.read()))
        except urllib.error.HTTPError as e:
            out[k] = (e.code, json.loads(e.read()))
    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def body_of(args, **extra) -> bytes:
    return json.dumps({"inputs": kserve_inputs(args), **extra}).encode()


def rows_of(answer) -> np.ndarray:
    out = answer["outputs"][0]
    return np.array(out["data"], np.float32).reshape(out["shape"])


def test_concurrent_requests_are_merged_and_each_gets_its_own_rows(artifact, start_server):
    srv = start_server(artifact("dlrm-small"), max_batch=64, max_delay_us=50_000, workers=1)
    model = model_of("dlrm-small")
    cases = [zoo.make_inputs(model, 1 + k % 4, seed=200 + k, empty_bag_prob=0.2) for k in range(16)]
    answers = send_all(srv, [body_of(a, id=f"r{k}") for k, a in enumerate(cases)])
    for k, (args, (status, body)) in enumerate(zip(cases, answers)):
        assert status == 200, body
        assert body["id"] == f"r{k}"
        np.testing.assert_allclose(rows_of(body), torch_out(model, args), **TOL)
    calls = srv.metric("xrec_batch_size_count")
    assert srv.metric("xrec_batch_size_sum") == 16                 # every request ran exactly once
    assert calls < 16                                                # ... in fewer kernel calls: merged
    assert srv.metric("xrec_batch_size_bucket", le="1") < calls      # some call merged more than one request
    assert srv.metric("xrec_batch_rows_sum") == sum(len(a[0]) for a in cases)


def test_max_batch_one_never_merges(artifact, start_server):
    srv = start_server(artifact("dlrm-small"), max_batch=1, max_delay_us=50_000, workers=1)
    model = model_of("dlrm-small")
    cases = [zoo.make_inputs(model, 1, seed=300 + k) for k in range(8)]
    for args, (status, body) in zip(cases, send_all(srv, [body_of(a) for a in cases])):
        assert status == 200, body
        np.testing.assert_allclose(rows_of(body), torch_out(model, args), **TOL)
    assert srv.metric("xrec_batch_size_count") == 8 and srv.metric("xrec_batch_size_sum") == 8


def test_max_batch_caps_the_rows_of_a_kernel_call(artifact, start_server):
    """max-batch 4 rows: 3-row requests never share a call; a 10-row request still runs (alone)."""
    srv = start_server(artifact("dlrm-small"), max_batch=4, max_delay_us=50_000, workers=1)
    model = model_of("dlrm-small")
    cases = [zoo.make_inputs(model, 3, seed=400 + k) for k in range(6)] + [zoo.make_inputs(model, 10, seed=499)]
    for args, (status, body) in zip(cases, send_all(srv, [body_of(a) for a in cases])):
        assert status == 200, body
        np.testing.assert_allclose(rows_of(body), torch_out(model, args), **TOL)
    calls = srv.metric("xrec_batch_size_count")
    assert calls == 7 and srv.metric("xrec_batch_size_sum") == 7
    assert srv.metric("xrec_batch_rows_bucket", le="4") == 6 and srv.metric("xrec_batch_rows_sum") == 28


@pytest.fixture(scope="module")
def heavy():
    """A 2048-row request (tens of ms of kernel time) and its expected output."""
    model = model_of("dlrm-small")
    args = zoo.make_inputs(model, 2048, seed=500)
    return body_of(args), torch_out(model, args)


def test_full_queue_answers_503_and_every_request_is_answered(artifact, start_server, heavy):
    srv = start_server(artifact("dlrm-small"), max_batch=1, workers=1, queue=1)
    body, want = heavy
    answers = send_all(srv, [body] * 12)
    codes = [s for s, _ in answers]
    assert set(codes) <= {200, 503} and codes.count(503) >= 1 and codes.count(200) >= 1, codes
    for status, answer in answers:
        if status == 503:
            assert "queue is full" in answer["error"]
        else:
            np.testing.assert_allclose(rows_of(answer), want, **TOL)
    assert srv.metric("xrec_errors_total", kind="queue_full") == codes.count(503)
    assert srv.metric("xrec_requests_received_total") == 12 and srv.metric("xrec_requests_total") == 12
    status, answer = send_all(srv, [body])[0]       # the server is still up, the queue drained
    assert status == 200


def test_request_past_its_deadline_is_504_and_the_server_goes_on(artifact, start_server, heavy):
    srv = start_server(artifact("dlrm-small"), workers=1)
    body, want = heavy
    slow = json.loads(body)
    slow["parameters"] = {"timeout": 1000}          # 1 ms for a 2048-row request
    status, answer = send_all(srv, [json.dumps(slow).encode()])[0]
    assert status == 504 and "no answer within 1 ms" in answer["error"]
    assert srv.metric("xrec_errors_total", kind="timeout") == 1
    status, answer = send_all(srv, [body])[0]
    assert status == 200
    np.testing.assert_allclose(rows_of(answer), want, **TOL)


def test_sigterm_finishes_requests_in_flight_then_exits_0(artifact, start_server, heavy):
    srv = start_server(artifact("dlrm-small"), max_batch=1, workers=1, queue=64)
    body, want = heavy
    answers: list = []
    sender = threading.Thread(target=lambda: answers.extend(send_all(srv, [body] * 6)))
    sender.start()
    deadline = time.monotonic() + 60
    while srv.metric("xrec_requests_received_total") < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert srv.metric("xrec_requests_total") < 6, "all answered before the signal: the test needs slower requests"
    srv.proc.send_signal(signal.SIGTERM)
    sender.join(120)
    assert len(answers) == 6
    for status, answer in answers:
        assert status == 200, answer
        np.testing.assert_allclose(rows_of(answer), want, **TOL)
    assert srv.proc.wait(60) == 0   # it exits by itself
    srv.stop()                      # (only joins the output readers now)
    assert any("stopped" in line for line in srv.stdout)


def test_draining_server_refuses_new_requests(artifact, start_server, heavy):
    srv = start_server(artifact("dlrm-small"), max_batch=1, workers=1, queue=64)
    body, _ = heavy
    sender = threading.Thread(target=lambda: send_all(srv, [body] * 4))
    sender.start()
    while srv.metric("xrec_requests_received_total") < 4:
        time.sleep(0.01)
    srv.proc.send_signal(signal.SIGTERM)
    while True:                     # wait until the server says it is not ready (or is gone)
        try:
            status, _ = srv.get("/v2/health/ready")
        except OSError:
            status = None
        if status != 200:
            break
        time.sleep(0.005)
    assert status == 503, "the server stopped before it was seen draining: the test needs slower requests"
    code, answer = infer(srv, "dlrm-small", kserve_inputs(zoo.make_inputs(model_of("dlrm-small"), 1, seed=1)))
    assert code == 503 and "shutting down" in answer["error"]
    sender.join(120)
    assert srv.proc.wait(60) == 0
