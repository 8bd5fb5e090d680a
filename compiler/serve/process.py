"""Run the server as a child process (for tests, benchmarks and notebooks).

    with ServerProcess("dlrm.xrec", max_batch=64) as srv:     # a free loopback port
        print(srv.url)                                       # http://127.0.0.1:PORT
        srv.metric("xrec_requests_total", code="200")
    # leaving the block sends SIGTERM and waits for the graceful shutdown
"""
from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

_URL = re.compile(r"at (http://[^\s]+):(\d+)")
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[tuple[str, dict, float]]:
    """Prometheus text format -> [(name, labels, value)]."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line.strip())
        if m:
            labels = dict(_LABEL.findall(m.group(2) or ""))
            out.append((m.group(1), labels, float(m.group(3))))
    return out


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerProcess:
    """The built xrec-server serving one artifact; options are its command-line flags (max_batch=8 -> --max-batch 8)."""

    def __init__(self, artifact, host: str = "127.0.0.1", port: int = 0, **options):
        self.artifact = Path(artifact)
        self.host, self.port = host, port
        self.options = options
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers: list[threading.Thread] = []

    def command(self) -> list[str]:
        from .build import server_binary
        cmd = [str(server_binary()), str(self.artifact), "--host", self.host, "--port", str(self.port)]
        for k, v in self.options.items():
            flag = "--" + k.replace("_", "-")
            if v is True:
                cmd.append(flag)
            elif v is not None and v is not False:
                cmd += [flag, str(v)]
        return cmd

    def start(self, timeout: float = 120.0) -> "ServerProcess":
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     bufsize=1)
        deadline = time.monotonic() + timeout
        while not self.url:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                err = self.proc.stderr.read() if self.proc.poll() is not None else ""
                self.kill()
                raise RuntimeError(f"the server did not start ({' '.join(self.command())}): {err.strip()}")
            ready, _, _ = select.select([self.proc.stdout], [], [], min(left, 0.5))
            if ready:
                line = self.proc.stdout.readline()
                self.stdout.append(line)
                m = _URL.search(line)
                if m:
                    self.url = f"{m.group(1)}:{m.group(2)}"
                    self.port = int(m.group(2))
        for stream, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            t = threading.Thread(target=lambda s=stream, o=sink: [o.append(x) for x in s], daemon=True)
            t.start()
            self._readers.append(t)
        return self

    @property
    def address(self) -> str:
        """host:port, as tritonclient wants it."""
        return self.url.split("://", 1)[1]

    def get(self, path: str, timeout: float = 30.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def metrics(self) -> list[tuple[str, dict, float]]:
        status, body = self.get("/metrics")
        assert status == 200, body
        return parse_metrics(body.decode())

    def metric(self, name: str, samples=None, **labels) -> float:
        """The sum of the samples of `name` whose labels include `labels`."""
        samples = self.metrics() if samples is None else samples
        return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == str(x) for k, x in labels.items()))

    def stop(self, timeout: float = 60.0, sig=signal.SIGTERM) -> int:
        """Graceful shutdown (SIGTERM); returns the exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        for t in self._readers:
            t.join(5)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "ServerProcess":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
