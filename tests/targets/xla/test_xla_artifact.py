"""The xla artifact: files and manifest, portable StableHLO, save/load, options and version checks."""

import numpy as np
import pytest

import xrec
from xrec import zoo
from xrec.targets import get_target
from xrec.targets.xla import runtime, tpu

from conftest import flat, imported_zoo


def test_artifact_holds_module_portable_artifact_and_budgets(compile_zoo):
    model, cm = compile_zoo("dlrm-small", batch=16)
    m = cm.manifest
    assert {"src/model.mlir", "lib/model.stablehlo.bc"} <= set(m["files"])          # checksummed
    ti = m["target_info"]
    assert ti["stablehlo"]["jax"] == runtime.REQUIRED_JAX
    assert ti["budgets"]["indices[0]"] == {"max_ids_per_bag": 1,
                                           "source": "pooling: one-hot (one id in each of 8 bags seen)"}
    # C3 (zoo pooling 20): 2 x the mean of the 8 example bags (19.6) + 8, rounded up to 8
    assert ti["budgets"]["indices[2]"]["max_ids_per_bag"] == 48
    assert ti["budgets"]["indices[2]"]["source"].startswith("pooling: mean 19.62 ids per bag")
    args = ti["module"]["args"]
    assert [a["role"] for a in args[:3]] == ["input", "ids", "lengths"]       # all features in two arrays
    total = sum(b["max_ids_per_bag"] for b in ti["budgets"].values())
    assert args[1]["shape"] == [16, total] and args[2]["shape"] == [16, 26]
    cols = [(f["column"], f["max_ids"]) for f in ti["module"]["features"]]
    assert cols[0][0] == 0 and all(c + m == c2 for (c, m), (c2, _) in zip(cols, cols[1:]))
    assert [a["role"] for a in args[3:]] == ["param"] * len(cm.graph.params)
    assert m["tolerances"] == {"rtol": 1e-4, "atol": 1e-6}


def test_portable_artifact_reads_back_to_the_same_computation(compile_zoo):
    model, cm = compile_zoo("dlrm-small", batch=16)
    text = runtime.read_portable_artifact((cm.path / "lib" / "model.stablehlo.bc").read_bytes())
    assert "stablehlo.gather" in text
    info = cm.manifest["target_info"]["module"]
    args = zoo.make_inputs(model, 9, seed=4)
    margs = runtime.Runner(text, info, cm.graph.params).module_args(flat(args), cm.graph.params)
    import jax
    exe, _ = runtime.compile_cpu(text)
    _, dev = runtime.cpu_device()
    got = runtime.execute(exe, [jax.device_put(a, dev) for a in margs])[0][:9]
    np.testing.assert_allclose(got, cm(*args).numpy(), rtol=1e-6, atol=1e-7)


def test_saved_artifact_loads_and_runs(compile_zoo, tmp_path):
    model, cm = compile_zoo("wide-deep", batch=8)
    path = cm.save(tmp_path / "wd.xrec")
    cm2 = xrec.load(path)
    args = zoo.make_inputs(model, 12, seed=2)
    np.testing.assert_array_equal(cm2(*args).numpy(), cm(*args).numpy())


def test_other_jax_version_is_refused_with_the_pinned_version(monkeypatch):
    import jax
    monkeypatch.setattr(jax, "__version__", "0.4.30")
    ok, why = get_target("xla").available()
    assert not ok and "0.10.2" in why and "0.4.30" in why
    with pytest.raises(RuntimeError, match="0.10.2"):
        runtime.compile_cpu("module {}")


def test_options_are_validated():
    t = get_target("xla")
    with pytest.raises(ValueError, match="unknown option"):
        t.parse_options({"bach": 8})
    with pytest.raises(ValueError, match="dtype"):
        t.parse_options({"dtype": "fp8"})
    with pytest.raises(ValueError, match="overflow"):
        t.parse_options({"overflow": "drop"})
    with pytest.raises(ValueError, match="batch"):
        t.parse_options({"batch": 0})
    with pytest.raises(ValueError, match="max_ids_per_bag"):
        t.parse_options({"max_ids_per_bag": {"C1": 0}})
    assert t.parse_options({"tpu": "off"})["tpu"] is None


def test_tpu_auto_without_libtpu_records_why_it_was_skipped(monkeypatch):
    monkeypatch.setattr(tpu, "libtpu_version", lambda: None)
    _, g = imported_zoo("two-tower")
    cm = xrec.compile(g, target="xla", options={"batch": 8})
    assert "libtpu is not installed" in cm.manifest["target_info"]["tpu"]["skipped"]
    assert not any(f.endswith(".tpu") for f in cm.manifest["files"])
