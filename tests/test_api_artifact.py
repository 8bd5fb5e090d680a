"""xrec.compile / save / load, the artifact's files and checksums, and refusal of bad artifacts."""
import json

import numpy as np
import pytest
import torch

import xrec
from xrec import zoo
from xrec.artifact import ALIGN, ArtifactError
from xrec.testing import check_model, edge_case_inputs, zoo_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    m = zoo_model("deepfm")
    cm = xrec.compile(m, zoo.example_inputs(m), target="reference", source={"kind": "zoo", "name": "deepfm",
                                                                           "max_rows": 300})
    path = cm.save(tmp_path_factory.mktemp("art") / "deepfm.xrec")
    return m, cm, path


def test_compiled_model_runs_at_any_batch_and_matches_pytorch(saved):
    m, cm, _ = saved
    check_model(cm, m, edge_case_inputs(m, batches=(1, 7, 64, 300)), rtol=1e-5)


def test_saved_artifact_has_the_documented_layout(saved):
    _, _, path = saved
    for rel in ("manifest.json", "weights.bin", "ir.json", "src/model.xir"):
        assert (path / rel).is_file(), rel
    man = json.loads((path / "manifest.json").read_text())
    assert man["format_version"] == 1 and man["target"] == "reference"
    assert all(e["offset"] % ALIGN == 0 for e in man["weights"]["entries"].values())
    names = [i["name"] for i in man["signature"]["inputs"]]
    assert names[0] == "dense" and names[1] == "indices[0]" and names[-1] == "offsets[25]"
    assert man["signature"]["inputs"][0]["shape"] == ["B", "13"]
    assert {f["feature"] for f in man["signature"]["features"]} == {f"indices[{i}]" for i in range(26)}


def test_load_gives_the_same_answers(saved):
    m, cm, path = saved
    cm2 = xrec.load(path)
    args = zoo.make_inputs(m, 9, seed=4)
    torch.testing.assert_close(cm2(*args), cm(*args))


def test_corrupt_weights_are_refused_with_the_file_named(saved, tmp_path):
    _, cm, _ = saved
    bad = cm.save(tmp_path / "bad.xrec")
    with open(bad / "weights.bin", "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(ArtifactError, match="checksum mismatch for weights.bin"):
        xrec.load(bad)


def test_other_format_version_and_missing_manifest_are_refused(saved, tmp_path):
    _, cm, _ = saved
    bad = cm.save(tmp_path / "old.xrec")
    man = json.loads((bad / "manifest.json").read_text())
    man["format_version"] = 99
    (bad / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ArtifactError, match="format 99 .* recompile"):
        xrec.load(bad)
    with pytest.raises(ArtifactError, match="no manifest.json"):
        xrec.load(tmp_path)


def test_unknown_target_lists_the_known_ones():
    m = zoo_model("two-tower")
    with pytest.raises(KeyError, match="known targets: reference, cpu"):
        xrec.compile(m, zoo.example_inputs(m), target="quantum")


def test_unsaved_compilations_clean_up_their_cache_directory():
    m = zoo_model("two-tower")
    cm = xrec.compile(m, zoo.example_inputs(m), target="reference")
    path = cm.path
    assert path.is_dir()
    del cm
    import gc
    gc.collect()
    assert not path.exists()
