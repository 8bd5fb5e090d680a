"""Helpers for pass tests: apply one pass and check the numpy reference agrees before and after."""
import numpy as np

from xrec.ir import run_graph, verify
from xrec.passes import get_pass
from xrec.testing import edge_case_inputs

from conftest import flat, imported_zoo


def apply(name: str, g):
    return verify(get_pass(name).fn(g), where=name)


def assert_preserves(pass_name: str, g, inputs) -> object:
    """Run ``pass_name`` on ``g``; the interpreter gives the same outputs on every input before and after."""
    after = apply(pass_name, g)
    for args in inputs:
        before_out = run_graph(g, flat(args))
        after_out = run_graph(after, flat(args))
        for a, b in zip(after_out, before_out):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    return after


def zoo_prepared(name: str, upto: tuple[str, ...] = ()):
    """A small zoo model, its imported graph with ``upto`` passes applied, and edge-case inputs."""
    model, g = imported_zoo(name)
    for p in upto:
        g = apply(p, g)
    return model, g, edge_case_inputs(model, batches=(1, 7))
