"""pytest-benchmark suites of xrec (not part of `pytest tests`; see bench/README.md).

    .venv/bin/python -m pytest bench/suites --benchmark-autosave

Options: --bench-threads N (default: all cores), --bench-rows N (rows per
embedding table, default 1000000), --bench-batch B (default 512),
--bench-target T (xrec target, default cpu).
"""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("XREC_QUIET", "1")


def pytest_addoption(parser):
    g = parser.getgroup("xrec bench")
    g.addoption("--bench-threads", type=int, default=None, help="threads for torch and xrec (default all cores)")
    g.addoption("--bench-rows", type=int, default=1_000_000, help="rows per embedding table (default 1000000)")
    g.addoption("--bench-batch", type=int, default=512, help="batch size (default 512)")
    g.addoption("--bench-target", default="cpu", help="xrec target to measure (default cpu)")


@pytest.fixture(scope="session")
def bench_opts(request):
    from xrec.bench.machine import usable_cpus
    threads = request.config.getoption("--bench-threads") or usable_cpus()
    torch.set_num_threads(threads)
    return {"threads": threads, "rows": request.config.getoption("--bench-rows"),
            "batch": request.config.getoption("--bench-batch"), "target": request.config.getoption("--bench-target")}


@pytest.fixture(scope="session")
def xrec_compile(bench_opts):
    """compile(module, example) -> CompiledModel for the chosen target, or skip saying why."""
    def compile_(module, example, **kw):
        import xrec
        from xrec.config import knobs
        from xrec.targets import available_targets
        t = bench_opts["target"]
        why = available_targets().get(t, f"unknown target {t!r}")
        if why:
            pytest.skip(f"target {t} not available: {why}")
        try:
            with knobs.override(threads=bench_opts["threads"]):
                return xrec.compile(module, example, target=t, **kw)
        except Exception as e:              # the benchmark cannot run; the tests in tests/ say why
            pytest.skip(f"xrec.compile(target={t!r}) failed: {type(e).__name__}: {' '.join(str(e).split())[:300]}")
    return compile_
