"""Shared fixtures for the cpu target tests: compiled zoo models, cached per session."""
from __future__ import annotations

import numpy as np
import pytest

import xrec
from xrec.ir import BATCH, DType, Graph, GraphBuilder, Op, TensorType
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


# ---------------------------------------------------------------- small IR graphs (planning-step tests)

def f32(*shape) -> TensorType:
    return TensorType(shape, DType.F32)


class G:
    """A GraphBuilder with short helpers: ``x = G(); a = x.input("a", 4); y = x.op(Op.EXP, a)``."""

    def __init__(self):
        self.b = GraphBuilder(Graph(name="g", nodes=(), outputs=()))

    def input(self, name: str, *dims) -> str:
        return self.b.emit(Op.INPUT, (), f32(BATCH, *dims), {"name": name, "kind": "dense"}, hint=name)

    def param(self, name: str, array) -> str:
        return self.b.add_param(name, np.asarray(array, dtype=np.float32))

    def full(self, value: float, *shape) -> str:
        return self.b.emit(Op.FULL, (), f32(*shape), {"value": value, "shape": shape})

    def op(self, op: Op, *inputs, type=None, hint: str = "", **attrs) -> str:
        if type is None:
            type = self.b.types[inputs[0]]
        return self.b.emit(op, inputs, type, attrs, hint=hint)

    def finish(self, *outputs) -> Graph:
        return self.b.finish(outputs=list(outputs), dce=False)


@pytest.fixture
def ir():
    """``ir()`` -> a new :class:`G` (a GraphBuilder with short helpers); ``ir.f32(*shape)`` a float32 type."""
    def new() -> G:
        return G()
    new.f32 = f32
    new.B = BATCH
    return new
