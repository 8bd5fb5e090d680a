"""Fixtures for the inference-server tests: cpu artifacts of zoo models, the built server, servers on free
loopback ports (127.0.0.1 only), and helpers that turn zoo inputs into KServe v2 requests."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

import xrec
from xrec import zoo
from xrec.targets import get_target
from xrec.targets.cpu.isa import best_isa
from xrec.testing import zoo_model

cpu_ok, cpu_why = get_target("cpu").available()
needs_cpu = pytest.mark.skipif(not cpu_ok, reason=f"cpu target unavailable: {cpu_why}")

# the tables of the test models; 300 rows as the cpu target's tests, so both share the compiled code in the cache
MAX_ROWS = 300
TOL = {"rtol": 1e-4, "atol": 1e-6}


@pytest.fixture(scope="session")
def artifact(tmp_path_factory):
    """artifact(name) -> the path of a cpu artifact of zoo model `name` (best ISA here), compiled once per session."""
    cache = {}

    def get(name: str):
        if name not in cache:
            model = zoo_model(name, MAX_ROWS)
            out = tmp_path_factory.mktemp("serve") / f"{name}.xrec"
            xrec.compile(model, zoo.example_inputs(model), target="cpu", options={"isa": best_isa()}, out=out,
                         source={"kind": "zoo", "name": name, "max_rows": MAX_ROWS, "seed": 0})
            cache[name] = out
        return cache[name]
    return get


@pytest.fixture(scope="session")
def server_exe():
    from xrec.serve.build import server_binary
    return server_binary()


@pytest.fixture
def start_server(server_exe):
    """start_server(artifact, **flags) -> a running ServerProcess on a free 127.0.0.1 port, stopped afterwards."""
    from xrec.serve.process import ServerProcess
    started = []

    def start(path, **flags):
        srv = ServerProcess(path, host="127.0.0.1", port=0, **flags).start()
        started.append(srv)
        return srv
    yield start
    for srv in started:
        srv.stop()


@pytest.fixture(scope="module")
def dlrm_server(artifact, server_exe):
    """dlrm-small served with the default batching settings, shared by a test module."""
    from xrec.serve.process import ServerProcess
    srv = ServerProcess(artifact("dlrm-small"), host="127.0.0.1", port=0).start()
    yield srv
    assert srv.stop() == 0


# ------------------------------------------------------------------ requests
def model_of(name: str):
    return zoo_model(name, MAX_ROWS)


def torch_out(model, args) -> np.ndarray:
    with torch.no_grad():
        return model(*args).numpy()


def kserve_inputs(args, lengths: bool = False) -> list[dict]:
    """(dense, indices, offsets) -> KServe v2 JSON tensors named as the manifest names them."""
    dense, idx, off = args
    out = [{"name": "dense", "datatype": "FP32", "shape": list(dense.shape), "data": dense.numpy().ravel().tolist()}]
    dt = lambda t: "INT64" if t.dtype == torch.int64 else "INT32"  # noqa: E731
    out += [{"name": f"indices[{k}]", "datatype": dt(t), "shape": [len(t)], "data": t.tolist()} for k, t in enumerate(idx)]
    for k, t in enumerate(off):
        if lengths:
            v = np.diff(t.numpy())
            out.append({"name": f"lengths[{k}]", "datatype": dt(t), "shape": [len(v)], "data": v.tolist()})
        else:
            out.append({"name": f"offsets[{k}]", "datatype": dt(t), "shape": [len(t)], "data": t.tolist()})
    return out


def triton_inputs(args, binary: bool = True):
    """(dense, indices, offsets) -> tritonclient.http.InferInput list."""
    import tritonclient.http as th
    dense, idx, off = args
    named = [("dense", dense)] + [(f"indices[{k}]", t) for k, t in enumerate(idx)] + \
            [(f"offsets[{k}]", t) for k, t in enumerate(off)]
    ins = []
    for name, t in named:
        a = t.numpy()
        i = th.InferInput(name, list(a.shape), th.np_to_triton_dtype(a.dtype))
        i.set_data_from_numpy(a, binary_data=binary)
        ins.append(i)
    return ins


def post(srv, path: str, body, headers: dict | None = None, timeout: float = 60.0) -> tuple[int, dict]:
    """POST a JSON (dict) or raw (bytes/str) body; returns (status, parsed JSON answer)."""
    data = body if isinstance(body, bytes) else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
    req = urllib.request.Request(srv.url + path, data=data, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def infer(srv, model: str, inputs: list[dict], **extra) -> tuple[int, dict]:
    return post(srv, f"/v2/models/{model}/infer", {"inputs": inputs, **extra})


def get_json(srv, path: str) -> tuple[int, dict]:
    status, body = srv.get(path)
    return status, json.loads(body) if body else {}
