"""Fixtures of the xla target's tests: zoo models traced once per session, compiled per option set."""
from __future__ import annotations

import functools
import json

import pytest

import xrec
from conftest import imported_zoo           # tests/conftest.py: (model, imported graph), cached


def xla_ready() -> tuple[bool, str]:
    from xrec.targets import get_target
    return get_target("xla").available()


@functools.lru_cache(maxsize=None)
def _compiled(name: str, key: str):
    model, g = imported_zoo(name)
    return model, xrec.compile(g, target="xla", options=json.loads(key))


@pytest.fixture
def compile_zoo():
    """compile_zoo(name, **options) -> (PyTorch model, CompiledModel); cached per (name, options)."""
    ok, why = xla_ready()
    if not ok:
        pytest.skip(why)

    def get(name: str, **options):
        options.setdefault("tpu", None)
        return _compiled(name, json.dumps(options, sort_keys=True))
    return get
