"""Shared fixtures for the cpu target tests: compiled zoo models, cached per session."""
from __future__ import annotations

import pytest

import xrec
from xrec.targets import get_target
from xrec.targets.cpu.isa import best_isa

cpu_ok, cpu_why = get_target("cpu").available()
needs_cpu = pytest.mark.skipif(not cpu_ok, reason=f"cpu target unavailable: {cpu_why}")


@pytest.fixture(scope="session")
def compiled_zoo(tmp_path_factory):
    """compiled_zoo(name, isa=best) -> (CompiledModel, torch model); each compiled once per session."""
    from xrec import zoo
    from xrec.testing import zoo_model
    cache = {}

    def get(name: str, isa: str | None = None, max_rows: int = 300):
        isa = isa or best_isa()
        key = (name, isa, max_rows)
        if key not in cache:
            model = zoo_model(name, max_rows)
            out = tmp_path_factory.mktemp("art") / f"{name}-{isa.replace(',', '_')}.xrec"
            cm = xrec.compile(model, zoo.example_inputs(model), target="cpu", options={"isa": isa}, out=out)
            cache[key] = (cm, model)
        return cache[key]
    return get
