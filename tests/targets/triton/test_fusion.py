"""Planning step ``fusion`` (targets/triton/fusion.py): DLRM's cat(dense, interactions) absorbs its interaction."""
from __future__ import annotations

from xrec.ir import Op

from .conftest import compiled_zoo, lowered


def test_dlrms_outer_concat_absorbs_its_dot_interaction():
    g = compiled_zoo("dlrm-small")[1].graph
    ctx = lowered(g, "fusion")
    assert len(ctx.fused_inter) == 1
    (cat, inter), = ctx.fused_inter.items()
    assert g.node(cat).op is Op.CAT and g.node(inter).op is Op.DOT_INTERACTION
    assert g.node(cat).inputs[1] == inter


def test_an_interaction_that_is_also_an_output_is_not_fused():
    g = compiled_zoo("dlrm-small")[1].graph
    ctx = lowered(g, "params")
    inter = next(n.name for n in g.nodes if n.op is Op.DOT_INTERACTION)
    ctx.outputs.add(inter)
    from xrec.targets.triton.fusion import interaction_fusions
    assert interaction_fusions(ctx) == {}


def test_models_without_a_dot_interaction_fuse_nothing():
    for name in ("dcn-v2", "deepfm", "two-tower"):
        assert lowered(compiled_zoo(name)[1].graph, "fusion").fused_inter == {}
