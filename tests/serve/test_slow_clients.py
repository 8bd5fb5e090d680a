"""Slow clients cannot starve the server (issue 22, item 7e).

A reliability probe held every HTTP thread (128) with 140 connections that send a request a byte at a time and
never finish it (the header, or the body after a complete header): a valid request from another client went
unanswered and SIGTERM waited for the slow clients. Now a connection gets --request-timeout-ms for a whole request,
one client address at most --max-conns-per-client connections, and while every HTTP thread is busy and connections
wait for one, the connections that have waited for or read a request longest (over --overload-grace-ms) are
closed. Each test opens 140 dripping connections against a server with the default 128 HTTP threads, then checks
that a valid request is answered correctly within seconds, that /metrics counts the refused / timed-out
connections, and that SIGTERM still stops the server at once."""
from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from xrec import zoo

from .conftest import TOL, kserve_inputs, model_of, needs_cpu, post, torch_out

pytestmark = needs_cpu

N_SLOW = 140
URL = "/v2/models/dlrm-small/infer"
ANSWER_WITHIN = 4.0    # seconds for the valid request, slow clients holding on
EXIT_WITHIN = 5.0      # seconds from SIGTERM to exit


class SlowClients:
    """n connections from `source` that each send a request one byte every `every` seconds and never finish it:
    even ones stall in the header, odd ones send a whole header (Content-Length 100000) and drip the body."""

    def __init__(self, port: int, n: int = N_SLOW, source: str = "127.0.0.1", every: float = 0.25):
        self.port, self.n, self.source, self.every = port, n, source, every
        self.socks: list[socket.socket] = []
        self.closed_by_server = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drip, daemon=True)

    def __enter__(self) -> "SlowClients":
        for i in range(self.n):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5, source_address=(self.source, 0))
            if i % 2 == 0:
                s.sendall(b"POST " + URL.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            else:
                s.sendall(b"POST " + URL.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"inputs\": [")
            s.setblocking(False)
            self.socks.append(s)
        self._thread.start()
        time.sleep(0.5)   # let the server take them all up
        return self

    def _drip(self) -> None:
        live = list(self.socks)
        while not self._stop.wait(self.every):
            still = []
            for s in live:
                try:
                    s.send(b" ")
                    still.append(s)
                except OSError:   # the server closed it (refused, timed out, evicted)
                    self.closed_by_server += 1
            live = still

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        for s in self.socks:
            s.close()


@pytest.fixture(scope="module")
def good():
    model = model_of("dlrm-small")
    args = zoo.make_inputs(model, 2, seed=11)
    return kserve_inputs(args), torch_out(model, args)


def answered_in_time(srv, good) -> float:
    inputs, want = good
    t0 = time.monotonic()
    try:
        status, body = post(srv, URL, {"inputs": inputs}, timeout=ANSWER_WITHIN + 2)
    except OSError as e:   # URLError, socket.timeout
        pytest.fail(f"a valid request was not answered within {ANSWER_WITHIN + 2} s while slow clients held on: {e}")
    took = time.monotonic() - t0
    assert status == 200, body
    np.testing.assert_allclose(np.array(body["outputs"][0]["data"], np.float32).reshape(2, 1), want, **TOL)
    assert took < ANSWER_WITHIN, f"answered after {took:.1f} s"
    return took


def stops_promptly(srv) -> None:
    t0 = time.monotonic()
    rc = srv.stop(timeout=EXIT_WITHIN + 5)
    took = time.monotonic() - t0
    assert rc == 0 and took < EXIT_WITHIN, f"SIGTERM with slow clients connected: exit {rc} after {took:.1f} s"


def loopback_alias_ok() -> bool:
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.2", 0))
        return True
    except OSError:
        return False


def test_slow_clients_from_one_address_leave_threads_for_another_client(start_server, artifact, good):
    """The defaults: 140 slow connections from 127.0.0.2 (one client address) hold at most
    --max-conns-per-client (3/4 of the 128 HTTP threads); the rest are refused at once, and a request from
    127.0.0.1 is answered."""
    if not loopback_alias_ok():
        pytest.skip("cannot bind 127.0.0.2 (a second loopback address) here")
    srv = start_server(artifact("dlrm-small"))
    with SlowClients(srv.port, source="127.0.0.2"):
        answered_in_time(srv, good)
        s = srv.metrics()
        refused = srv.metric("xrec_http_connections_refused_total", s, reason="per_client_limit")
        assert refused >= N_SLOW - 128, s
        assert srv.metric("xrec_http_connections_open", s) >= 1
        stops_promptly(srv)


def test_slow_clients_on_every_thread_are_evicted_for_a_waiting_request(start_server, artifact, good):
    """No per-address cap (as if the 140 came from 140 addresses): every HTTP thread is held, so the slow
    connections that waited longest are closed for the connections waiting for a thread."""
    srv = start_server(artifact("dlrm-small"), max_conns_per_client=0)
    with SlowClients(srv.port, source="127.0.0.1"):
        took = answered_in_time(srv, good)
        s = srv.metrics()
        assert srv.metric("xrec_http_connections_timed_out_total", s, reason="overload") >= 1, (took, s)
        stops_promptly(srv)


def test_a_request_that_does_not_arrive_in_time_is_closed_with_408(start_server, artifact):
    srv = start_server(artifact("dlrm-small"), request_timeout_ms=1000)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        t0 = time.monotonic()
        got = b""
        while time.monotonic() - t0 < 4:
            try:
                s.sendall(b"a")
            except OSError:
                break
            s.settimeout(0.2)
            try:
                chunk = s.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            if not chunk:
                break
            got += chunk
        took = time.monotonic() - t0
    assert took < 3, f"a request dripping for {took:.1f} s was not cut off at --request-timeout-ms 1000"
    assert got.startswith(b"HTTP/1.1 408"), got
    assert srv.metric("xrec_http_connections_timed_out_total", reason="request") >= 1
    assert srv.get("/v2/health/live")[0] == 200


def test_pipelined_requests_on_one_connection_are_answered_at_once(start_server, artifact):
    """The server reads connections itself now: a second request already read with the first is served at
    once, not after the keep-alive wait."""
    srv = start_server(artifact("dlrm-small"))
    one = b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
        t0 = time.monotonic()
        s.sendall(one + one + one.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        took = time.monotonic() - t0
    assert got.count(b"HTTP/1.1 200") == 3, got
    assert took < 1.5, f"pipelined requests answered after {took:.1f} s"
