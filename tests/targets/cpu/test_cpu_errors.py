"""Bad inputs, corrupt or mismatched artifacts, ISA refusal, unlowerable ops: clear errors, no crash."""
from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

import xrec
from xrec import zoo
from xrec.artifact import ArtifactError
from xrec.runtime.validate import InputError
from xrec.targets.cpu.binding import CpuModel

from .conftest import needs_cpu

pytestmark = needs_cpu


@pytest.fixture(scope="module")
def dlrm(compiled_zoo):
    cm, model = compiled_zoo("dlrm-small")
    raw = xrec.load(cm.path, validate=False)     # only the generated code's own checks
    flat, _ = raw.flatten_inputs(zoo.make_inputs(model, 9, seed=4), {})
    return raw, flat


def _run_bad(raw, flat, k, fix):
    bad = [a.copy() for a in flat]
    fix(bad[k])
    with pytest.raises(InputError) as e:
        raw.run_flat(bad)
    return str(e.value)


def test_index_out_of_range_names_feature_and_position(dlrm):
    raw, flat = dlrm
    msg = _run_bad(raw, flat, 1 + 5, lambda a: a.__setitem__(1, 24))      # table 5 has 24 rows
    assert "feature 'indices[5]'" in msg and "index 24 at position 1" in msg and "24 rows" in msg
    msg = _run_bad(raw, flat, 1 + 2, lambda a: a.__setitem__(0, -1))
    assert "feature 'indices[2]'" in msg and "index -1 at position 0" in msg


def test_bad_offsets(dlrm):
    raw, flat = dlrm
    off = 27 + 3
    msg = _run_bad(raw, flat, off, lambda a: a.__setitem__(4, a[3] - 1))
    assert "feature 'indices[3]'" in msg and "decrease at position 4" in msg
    msg = _run_bad(raw, flat, off, lambda a: a.__setitem__(5, 10**9))
    assert "feature 'indices[3]'" in msg and "beyond" in msg
    msg = _run_bad(raw, flat, off, lambda a: a.__setitem__(0, 1))
    assert "must start at 0" in msg
    msg = _run_bad(raw, flat, off, lambda a: a.__setitem__(-1, a[-1] - 1))
    assert "offsets end at" in msg


def test_bad_shapes_and_dtypes(dlrm):
    raw, flat = dlrm
    with pytest.raises(InputError, match="'dense': dtype float64, expected float32"):
        raw.run_flat([flat[0].astype(np.float64)] + flat[1:])
    with pytest.raises(InputError, match=r"'offsets\[0\]': dim 0 must be B \+ 1"):
        raw.run_flat([flat[0][:4]] + flat[1:])
    with pytest.raises(InputError, match="expected 53 input tensors, got 52"):
        raw.run_flat(flat[:-1])


def test_int32_ids_without_python_conversion(dlrm):
    raw, flat = dlrm
    as32 = [flat[0]] + [a.astype(np.int32) for a in flat[1:]]
    np.testing.assert_array_equal(raw.run_flat(as32)[0], raw.run_flat(flat)[0])


def test_bounds_check_off(tmp_path):
    from xrec.testing import zoo_model
    model = zoo_model("dcn-v2", 300)
    cm = xrec.compile(model, zoo.example_inputs(model), target="cpu",
                      options={"bounds_check": False, "isa": "scalar"}, out=tmp_path / "nb.xrec")
    assert "constexpr bool kBoundsCheck = false;" in (cm.path / "src" / "model.cpp").read_text()
    args = zoo.make_inputs(model, 5, seed=1)
    with torch.no_grad():
        np.testing.assert_allclose(cm(*args).numpy(), model(*args).numpy(), rtol=1e-4, atol=1e-6)


def test_concurrent_calls_share_one_model(dlrm):
    import threading
    raw, flat = dlrm
    want = raw.run_flat(flat)[0]
    errors = []

    def work():
        for _ in range(30):
            if not np.array_equal(raw.run_flat(flat)[0], want):
                errors.append("mismatch")
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# ---------------------------------------------------------------- artifacts
@pytest.fixture
def art_copy(compiled_zoo, tmp_path):
    cm, _ = compiled_zoo("dlrm-small")
    return shutil.copytree(cm.path, tmp_path / "copy.xrec")


def test_corrupt_weights_refused(art_copy):
    w = art_copy / "weights.bin"
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum"):
        CpuModel(art_copy, verify_weights=True)
    with pytest.raises(ArtifactError, match="checksum mismatch for weights.bin"):
        xrec.load(art_copy)                              # Python's sha256 check, before the C loader


def test_truncated_weights_refused(art_copy):
    w = art_copy / "weights.bin"
    w.write_bytes(w.read_bytes()[:-64])
    with pytest.raises(ArtifactError, match="holds .* bytes but manifest.json records"):
        CpuModel(art_copy)


def test_format_version_and_mismatched_library_refused(art_copy, compiled_zoo):
    mf = art_copy / "manifest.json"
    m = json.loads(mf.read_text())
    m["format_version"] = 99
    mf.write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="artifact format 99 but this runtime reads format 1"):
        CpuModel(art_copy)
    m["format_version"] = 1
    mf.write_text(json.dumps(m))
    other, _ = compiled_zoo("dcn-v2")
    isa = m["target_info"]["isas"][0]
    lib = f"lib/xrec_model_{isa}.so"
    shutil.copyfile(other.path / lib, art_copy / lib)
    # another model's library: its bytes are not the ones manifest.json records
    with pytest.raises(ArtifactError, match=r"xrec_model_.*\.so is corrupt or truncated: its sha256 is"):
        CpuModel(art_copy)
    # and with the recorded hash edited to match it, the library's fingerprint (or the manifest's own
    # checksum, where the loader has one) still refuses it: never another model's kernels on these weights
    m["files"][lib] = hashlib.sha256((art_copy / lib).read_bytes()).hexdigest()
    mf.write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match=r"fingerprint|layout_sha256"):
        CpuModel(art_copy)


def test_isa_the_cpu_lacks_is_refused(compiled_zoo, monkeypatch):
    from xrec.targets.cpu.isa import supported
    if not supported("avx512"):
        pytest.skip("needs an AVX-512 CPU to build the case")
    cm, _ = compiled_zoo("dlrm-small", "avx512")
    monkeypatch.setenv("XREC_FAKE_CPU_ISA", "avx2")
    with pytest.raises(ArtifactError, match="built for avx512 only.*best here: avx2"):
        CpuModel(cm.path)
    with pytest.raises(ArtifactError, match="needs AVX-512"):
        CpuModel(cm.path, isa="avx512")
    monkeypatch.delenv("XREC_FAKE_CPU_ISA")
    with pytest.raises(ArtifactError, match="'scalar' was not built into this artifact"):
        CpuModel(cm.path, isa="scalar")


# ---------------------------------------------------------------- what the target cannot lower
class BatchMean(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        y = self.lin(x)
        return y - y.mean(dim=0, keepdim=True)    # mixes rows of the batch


def test_unlowerable_op_names_op_and_source_line(tmp_path):
    from xrec.targets.cpu.lower import LoweringError
    with pytest.raises(LoweringError) as e:
        xrec.compile(BatchMean().eval(), (torch.randn(5, 4),), target="cpu", out=tmp_path / "m.xrec")
    msg = str(e.value)
    assert "mean" in msg and "test_cpu_errors.py" in msg and "batch" in msg


def test_no_compiler_is_a_clear_error():
    from xrec.config import knobs
    from xrec.targets import get_target
    with knobs.override(cxx="no-such-compiler-xyz"):
        ok, why = get_target("cpu").available()
    assert not ok and "no-such-compiler-xyz" in why and "CXX" in why
