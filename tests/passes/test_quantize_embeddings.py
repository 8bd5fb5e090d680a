"""quantize_embeddings: tables re-encoded per feature; pooled outputs stay f32 and close to fp32."""
import numpy as np
import pytest

from xrec.ir import DType, Op, run_graph
from xrec.ir.quant import dequantize_rows

from conftest import flat
from passutil import apply, zoo_prepared


def _quantized(name, precision):
    model, g, inputs = zoo_prepared(name, upto=("fuse_embedding_bags", "canonicalize"))
    from xrec.passes import get_pass
    from xrec.ir import verify
    return model, g, verify(get_pass("quantize_embeddings").fn(g, precision=precision)), inputs


@pytest.mark.parametrize("precision,layout,dtype", [("int8", "rowwise_i8", DType.U8), ("int4", "rowwise_i4", DType.U8),
                                                    ("int2", "rowwise_i2", DType.U8), ("fp16", "", DType.F16),
                                                    ("bf16", "", DType.BF16)])
def test_every_table_gets_the_precision_and_outputs_stay_f32(precision, layout, dtype):
    _, g, q, inputs = _quantized("dlrm-small", precision)
    group = q.nodes_of(Op.EMBEDDING_BAG_GROUP)[0]
    tables = [q.node(group.inputs[2 * k]) for k in range(26)]
    assert all(t.type.layout == layout and t.type.dtype is dtype for t in tables)
    assert group.type.dtype is DType.F32
    assert q.param_bytes() < g.param_bytes()
    bound = {"int8": 0.01, "int4": 0.05, "int2": 0.2, "fp16": 1e-3, "bf16": 1e-2}[precision]
    for args in inputs:
        a, b = run_graph(q, flat(args))[0], run_graph(g, flat(args))[0]
        assert a.dtype == np.float32 and np.abs(a - b).max() < bound


def test_int8_group_pools_the_dequantized_rows_exactly():
    _, g, q, inputs = _quantized("two-tower", "int8")
    group = q.nodes_of(Op.EMBEDDING_BAG_GROUP)[0]
    # rebuild the fp32 graph from the dequantized tables: the quantized graph must equal it
    params = dict(g.params)
    g_group = g.nodes_of(Op.EMBEDDING_BAG_GROUP)[0]
    for k, f in enumerate(group.attr("features")):
        qname = q.node(group.inputs[2 * k]).attr("name")
        fname = g.node(g_group.inputs[2 * k]).attr("name")
        params[fname] = dequantize_rows(q.params[qname], "rowwise_i8", f.dim)
    deq = g.with_(params=params)
    for args in inputs:
        np.testing.assert_allclose(run_graph(q, flat(args))[0], run_graph(deq, flat(args))[0], rtol=1e-6, atol=1e-7)


def test_per_feature_plan_and_unknown_precision():
    _, g, q, _ = _quantized("dlrm-small", {"indices[0]": "int4", "*": "fp32"})
    group = q.nodes_of(Op.EMBEDDING_BAG_GROUP)[0]
    assert q.node(group.inputs[0]).type.layout == "rowwise_i4"
    assert q.node(group.inputs[2]).type.dtype is DType.F32
    with pytest.raises(ValueError, match="unknown precision 'int3'"):
        _quantized("dlrm-small", "int3")
