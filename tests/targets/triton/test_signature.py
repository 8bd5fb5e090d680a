"""Planning steps ``inputs`` / ``params`` (targets/triton/signature.py): buffers, views, batch symbols."""
from __future__ import annotations

import pytest

from xrec.ir import Op
from xrec.lowering import LoweringError
from xrec.targets.triton.lower import context
from xrec.targets.triton.signature import declare_inputs, declare_params, weights_layout

from .conftest import compiled_zoo, lowered


def test_each_batch_symbol_is_bound_to_the_first_input_axis_that_has_it():
    g = compiled_zoo("deepfm")[1].graph
    ctx = lowered(g, "inputs")
    names = [n.name for n in g.input_nodes]
    assert ctx.symbols["B"] == (0, 0, 0)                       # dense [B, 13]
    n_syms = [s for s in ctx.symbols if s.startswith("N_")]
    assert n_syms
    for s in n_syms:
        k, axis, delta = ctx.symbols[s]
        assert str(g.input_nodes[k].type.shape[axis]) == s and delta == 0
    assert [b for _, b in ctx.inputs] == names


def test_parameters_are_views_into_the_weights_blob_at_their_offsets():
    g = compiled_zoo("dcn-v2")[1].graph
    ctx = lowered(g, "params")
    layout = weights_layout(g)
    for n in g.nodes_of(Op.PARAM):
        v, e = ctx.views[n.name], layout[n.attr("name")]
        assert v.buf == "weights" and v.offset * g.params[n.attr("name")].itemsize == e["offset"]
    assert ctx.blob_bytes % 64 == 0 and ctx.blob_bytes >= max(e["offset"] + e["nbytes"] for e in layout.values())


def test_a_parameter_not_aligned_to_its_element_size_is_a_lowering_error_naming_it():
    g = compiled_zoo("dcn-v2")[1].graph
    layout = weights_layout(g)
    key = next(iter(layout))
    layout[key] = {**layout[key], "offset": layout[key]["offset"] + 2}
    ctx = context(g, layout, {"aot": False})
    declare_inputs(ctx)
    with pytest.raises(LoweringError, match=key):
        declare_params(ctx)
