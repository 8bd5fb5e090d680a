"""Bad requests get a 4xx with {"error": ...} naming what was wrong, are counted by kind, and the server stays up:
the next good request (and good requests merged in the same batch) still succeed."""
from __future__ import annotations

import copy
import json
import threading

import numpy as np
import pytest

from xrec import zoo

from .conftest import MAX_ROWS, TOL, infer, kserve_inputs, model_of, needs_cpu, post, torch_out

pytestmark = needs_cpu

B = 3


@pytest.fixture(scope="module")
def good():
    model = model_of("dlrm-small")
    args = zoo.make_inputs(model, B, seed=21)
    return args, kserve_inputs(args), torch_out(model, args)


def by_name(ins, name):
    return next(t for t in ins if t["name"] == name)


def drop(name):
    return lambda ins: [t for t in ins if t["name"] != name]


def edit(name, **fields):
    def f(ins):
        by_name(ins, name).update(fields)
        return ins
    return f


def set_data(name, fn):
    def f(ins):
        t = by_name(ins, name)
        t["data"] = fn(list(t["data"]))
        t["shape"] = [len(t["data"])] if len(t["shape"]) == 1 else t["shape"]
        return ins
    return f


def with_lengths_and_offsets(ins):
    off = by_name(ins, "offsets[2]")["data"]
    lens = list(np.diff(off))
    return ins + [{"name": "lengths[2]", "datatype": "INT64", "shape": [len(lens)], "data": [int(x) for x in lens]}]


def bad_lengths(fn):
    def f(ins):
        t = by_name(ins, "offsets[4]")
        lens = [int(x) for x in np.diff(t["data"])]
        lens = fn(lens)
        ins = [x for x in ins if x["name"] != "offsets[4]"]
        return ins + [{"name": "lengths[4]", "datatype": "INT64", "shape": [len(lens)], "data": lens}]
    return f


def first_nonempty_offsets(ins):
    """offsets[k] of a feature whose first and last bags are not empty (so offsets can be made inconsistent)."""
    for k in range(26):
        off = by_name(ins, f"offsets[{k}]")["data"]
        if off[1] > 0 and off[-1] > off[-2]:
            return k
    raise AssertionError("no feature with a non-empty first bag")


def offsets_case(fn):
    def f(ins):
        k = first_nonempty_offsets(ins)
        t = by_name(ins, f"offsets[{k}]")
        t["data"] = fn(list(t["data"]))
        return ins
    return f


# (id, mutation of the inputs, status, words the error must contain, metrics kind)
CASES = [
    ("missing-tensor", drop("indices[3]"), 400, ["missing input 'indices[3]'"], "missing_input"),
    ("missing-offsets", drop("offsets[7]"), 400, ["missing input 'offsets[7]' (or 'lengths[7]')"], "missing_input"),
    ("extra-tensor", lambda ins: ins + [{"name": "bogus", "datatype": "FP32", "shape": [1], "data": [1.0]}], 400,
     ["unknown input 'bogus'", "indices[0]..indices[25]"], "unknown_input"),
    ("duplicate-tensor", lambda ins: ins + [copy.deepcopy(by_name(ins, "dense"))], 400,
     ["'dense' is given twice"], "bad_request"),
    ("offsets-and-lengths", with_lengths_and_offsets, 400, ["either 'offsets[2]' or 'lengths[2]'"], "bad_request"),
    ("dense-datatype", edit("dense", datatype="FP64"), 400, ["'dense'", "datatype FP64, expected FP32"],
     "bad_datatype"),
    ("ids-datatype", edit("indices[1]", datatype="FP32"), 400, ["'indices[1]'", "expected INT64 or INT32"],
     "bad_datatype"),
    ("unknown-datatype", edit("dense", datatype="FLOAT"), 400, ["unsupported datatype \"FLOAT\""], "bad_datatype"),
    ("dense-width", lambda ins: edit("dense", shape=[B, 12], data=by_name(ins, "dense")["data"][:B * 12])(ins), 400,
     ["'dense'", "shape [3,12]", "signature [B,13]"], "bad_shape"),
    ("dense-rank", lambda ins: edit("dense", shape=[B * 13])(ins), 400, ["'dense'", "rank 1", "expected rank 2"],
     "bad_shape"),
    ("data-count", lambda ins: edit("dense", data=by_name(ins, "dense")["data"][:-1])(ins), 400,
     ["'dense'", "needs 39 elements", "holds 38"], "bad_shape"),
    ("offsets-length", set_data("offsets[5]", lambda d: d + [d[-1]]), 400,
     ["'offsets[5]'", "signature [B+1]", "B = 3 (from 'dense')", "must be [4]"], "bad_shape"),
    ("negative-dim", edit("dense", shape=[-1, 13]), 400, ["non-negative"], "bad_shape"),
    ("index-too-big", set_data("indices[0]", lambda d: [MAX_ROWS] + d[1:]), 400,
     ["'indices[0]'", f"index {MAX_ROWS} at position 0", f"table of {MAX_ROWS} rows"], "index_out_of_range"),
    ("index-negative", set_data("indices[2]", lambda d: d[:-1] + [-1]), 400,
     ["'indices[2]'", "index -1", "out of range"], "index_out_of_range"),
    ("offsets-start", offsets_case(lambda d: [1] + d[1:]), 400, ["offsets must start at 0, got 1"], "bad_offsets"),
    ("offsets-decrease", offsets_case(lambda d: [0, d[-1], 0, d[-1]]), 400,
     ["offsets decrease"], "bad_offsets"),
    ("offsets-end", offsets_case(lambda d: d[:-1] + [d[-1] - 1]), 400,
     ["offsets end at", "the last offset must equal the number of ids"], "bad_offsets"),
    ("lengths-negative", bad_lengths(lambda L: [-1] + L[1:]), 400, ["'lengths[4]'", "lengths must be >= 0"],
     "bad_offsets"),
    ("lengths-sum", bad_lengths(lambda L: L[:-1] + [L[-1] + 1]), 400, ["'lengths[4]'", "lengths sum to"],
     "bad_offsets"),
    ("id-not-integer", set_data("indices[6]", lambda d: [1.5] + d[1:]), 400,
     ["'indices[6]'", "element 0 is 1.5, not an integer"], "bad_value"),
    ("dense-string", edit("dense", data=["x"] * (B * 13)), 400, ["'dense'", "element 0 of \"data\" is \"x\""],
     "bad_request"),
    ("no-data", lambda ins: [{k: v for k, v in t.items() if k != "data"} if t["name"] == "dense" else t
                             for t in ins], 400, ["'dense' has no \"data\""], "bad_request"),
]


def good_request_succeeds(srv, good):
    args, ins, want = good
    status, body = infer(srv, "dlrm-small", ins)
    assert status == 200, body
    np.testing.assert_allclose(np.array(body["outputs"][0]["data"], np.float32).reshape(want.shape), want, **TOL)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_its_reason_and_the_server_stays_up(dlrm_server, good, case):
    _, mutate, status, words, kind = case
    before = dlrm_server.metric("xrec_errors_total", kind=kind)
    code, body = infer(dlrm_server, "dlrm-small", mutate(copy.deepcopy(good[1])))
    assert code == status, body
    assert set(body) == {"error"}
    for w in words:
        assert w in body["error"], (w, body["error"])
    assert dlrm_server.metric("xrec_errors_total", kind=kind) == before + 1
    good_request_succeeds(dlrm_server, good)


@pytest.mark.parametrize("body, words, kind", [
    ('{"inputs": [', ["malformed JSON", "parse error"], "bad_json"),
    ('[1, 2]', ["must be a JSON object"], "bad_request"),
    ('{"inputs": 7}', ["\"inputs\" must be an array"], "bad_request"),
    ('{"outputs": []}', ["needs \"inputs\""], "bad_request"),
    ('{"inputs": [7]}', ["inputs[0] is not an object"], "bad_request"),
], ids=["truncated", "array", "inputs-number", "no-inputs", "input-number"])
def test_malformed_bodies_are_400(dlrm_server, good, body, words, kind):
    before = dlrm_server.metric("xrec_errors_total", kind=kind)
    code, answer = post(dlrm_server, "/v2/models/dlrm-small/infer", body)
    assert code == 400
    for w in words:
        assert w in answer["error"], (w, answer["error"])
    assert dlrm_server.metric("xrec_errors_total", kind=kind) == before + 1
    good_request_succeeds(dlrm_server, good)


def test_unknown_model_infer_is_404(dlrm_server, good):
    code, body = infer(dlrm_server, "dlrm-big", good[1])
    assert code == 404 and "unknown model 'dlrm-big'" in body["error"]
    good_request_succeeds(dlrm_server, good)


def test_unknown_output_is_400(dlrm_server, good):
    code, body = infer(dlrm_server, "dlrm-small", good[1], outputs=[{"name": "logits"}])
    assert code == 400 and "unknown output 'logits'" in body["error"] and "'output'" in body["error"]
    good_request_succeeds(dlrm_server, good)


def test_binary_sizes_that_do_not_add_up_are_400(dlrm_server, good):
    head = json.dumps({"inputs": [{"name": "dense", "datatype": "FP32", "shape": [1, 13],
                                   "parameters": {"binary_data_size": 52}}]}).encode()
    code, body = post(dlrm_server, "/v2/models/dlrm-small/infer", head + b"\0" * 40,
                      headers={"Inference-Header-Content-Length": str(len(head))})
    assert code == 400 and "run past the end of the body" in body["error"]
    good_request_succeeds(dlrm_server, good)


def test_body_over_the_limit_is_413(artifact, start_server, good):
    srv = start_server(artifact("dlrm-small"), max_body_bytes=20000)
    ins = copy.deepcopy(good[1])
    ins[0]["data"] = ins[0]["data"] * 100      # ~ 80 KB of JSON
    ins[0]["shape"] = [B * 100, 13]
    code, body = infer(srv, "dlrm-small", ins)
    assert code == 413 and "exceeds the limit of 20000 bytes" in body["error"]
    assert srv.metric("xrec_errors_total", kind="too_large") == 1
    assert srv.metric("xrec_requests_total", code="413") == 1
    good_request_succeeds(srv, good)


def test_bad_requests_do_not_fail_the_good_ones_merged_with_them(artifact, start_server):
    """Good and bad requests sent at once to a server that waits 50 ms to merge: each bad one is refused alone,
    each good one gets its own rows."""
    srv = start_server(artifact("dlrm-small"), max_batch=256, max_delay_us=50_000, workers=1)
    model = model_of("dlrm-small")
    cases = []
    for k in range(12):
        args = zoo.make_inputs(model, 1 + k % 4, seed=100 + k)
        ins = kserve_inputs(args)
        if k % 3 == 0:      # every third: an index out of range
            t = by_name(ins, "indices[9]")
            t["data"] = [MAX_ROWS + k] + t["data"][1:] if t["data"] else t["data"]
            if not t["data"]:
                ins = drop("indices[9]")(ins)
        cases.append((k, args, ins, k % 3 == 0))
    results = {}

    def send(k, ins):
        results[k] = infer(srv, "dlrm-small", ins)
    threads = [threading.Thread(target=send, args=(k, ins)) for k, _, ins, _ in cases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, args, _, bad in cases:
        code, body = results[k]
        if bad:
            assert code == 400 and ("out of range" in body["error"] or "missing input" in body["error"]), body
        else:
            assert code == 200, body
            got = np.array(body["outputs"][0]["data"], np.float32).reshape(-1, 1)
            np.testing.assert_allclose(got, torch_out(model, args), **TOL)
    # they were merged: fewer kernel calls than good requests
    good_count = sum(1 for c in cases if not c[3])
    assert srv.metric("xrec_batch_size_count") < good_count
