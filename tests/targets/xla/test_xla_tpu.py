"""TPU without a TPU: the module compiled for a v5e topology description with libtpu."""
import numpy as np
import pytest

import xrec
from xrec.targets.xla import tpu

from conftest import imported_zoo

pytestmark = [pytest.mark.tpu,
              pytest.mark.skipif(not tpu.available()[0], reason=tpu.available()[1] or "libtpu missing")]


def test_dlrm_v2_artifact_includes_a_v5e_executable_with_cost_and_memory_analysis(compile_zoo):
    # bf16 (the TPU's native matmul type) keeps this test fast: with f32 and precision HIGHEST
    # (6 bf16 MXU passes) libtpu needs ~3x longer; `xrec compile dlrm-v2 --target xla` does that
    _, cm = compile_zoo("dlrm-v2", batch=64, dtype="bf16", tpu="auto")
    info = cm.manifest["target_info"]["tpu"]
    assert info["topology"] == "v5e:2x2" and "v5" in info["device_kind"].lower()
    exe = cm.path / info["file"]
    assert info["file"] in cm.manifest["files"] and exe.stat().st_size == info["bytes"] > 0
    assert info["cost_analysis"]["flops"] > 0 and info["cost_analysis"]["bytes accessed"] > 0
    mem = info["memory_analysis"]
    # the weights are arguments (bf16 here): at least the bytes of every module argument
    from xrec.targets.xla.layout import np_dtype
    args = cm.manifest["target_info"]["module"]["args"]
    want = sum(int(np.prod(a["shape"])) * np.dtype(np_dtype(a["dtype"])).itemsize for a in args)
    assert want > cm.graph.param_bytes() / 2 and mem["argument_size_in_bytes"] >= want
    assert mem["output_size_in_bytes"] > 0


def test_other_topologies_compile_and_bad_ones_say_what_to_use():
    cm = xrec.compile(imported_zoo("two-tower")[1], target="xla", options={"batch": 8, "tpu": "v4:2x2x1",
                                                                             "dtype": "bf16"})
    assert "v4" in cm.manifest["target_info"]["tpu"]["device_kind"].lower()
    text = (cm.path / "src" / "model.mlir").read_text()
    assert "v6" in tpu.compile_for_tpu(text, "v6e:2x2").device_kind.lower()
    with pytest.raises(RuntimeError, match="v5e:2x2"):
        tpu.compile_for_tpu(text, "v99:1x1")
