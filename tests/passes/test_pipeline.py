"""The pipeline: an ordered list of registered passes, verified after each, dumpable after any."""
import pytest

from xrec.ir import Op
from xrec.passes import DEFAULT_PIPELINE, all_passes, get_pass, run_pipeline

from conftest import imported_zoo


def test_every_pipeline_stage_is_registered_with_a_doc():
    for name in DEFAULT_PIPELINE:
        info = get_pass(name)
        assert info.doc and info.stage in ("canonicalize", "recognize", "compress", "fuse", "layout")
    assert set(DEFAULT_PIPELINE) <= set(all_passes())


def test_unknown_pass_lists_the_known_ones():
    with pytest.raises(KeyError, match="known passes: .*canonicalize"):
        get_pass("no_such_pass")


def test_stop_after_dumps_the_graph_at_that_stage():
    _, g = imported_zoo("dlrm-small")
    seen = []
    mid = run_pipeline(g, stop_after="fuse_embedding_bags", on_pass=lambda n, _: seen.append(n))
    assert seen == ["canonicalize", "fuse_embedding_bags"]
    assert mid.nodes_of(Op.EMBEDDING_BAG_GROUP) and not mid.nodes_of(Op.DOT_INTERACTION)
    with pytest.raises(KeyError, match="stages: import, canonicalize"):
        run_pipeline(g, stop_after="bogus")
