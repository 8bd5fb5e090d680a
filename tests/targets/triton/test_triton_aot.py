"""Ahead of time: cubin for sm_80 and sm_90 compiled here without a GPU, resource usage in the
manifest, and the C launcher (the model-level C ABI) compiled with gcc against the wheel's cuda.h.

Without a GPU the C library still runs: a fake libcuda (fake_cuda.c) stands in for the driver,
so every launch the C code makes (kernel, grid, arguments) is checked against the program. The
real thing (link, load the cubins, run, compare with PyTorch) is marked gpu.
"""
from __future__ import annotations

import ctypes
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import xrec
from xrec import zoo
from xrec.targets.triton.aot import launch_keys
from xrec.targets.triton.launcher import compile_library, generate
from xrec.targets.triton.program import INPUT, Program, TEMP
from xrec.testing import zoo_model

HERE = Path(__file__).resolve().parent
ARCHS = ("sm_80", "sm_90")


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    m = zoo_model("dlrm-small", max_rows=100)
    out = tmp_path_factory.mktemp("aot") / "dlrm-small.xrec"
    cm = xrec.compile(m, zoo.example_inputs(m), target="triton", out=out,
                      source={"kind": "zoo", "name": "dlrm-small", "max_rows": 100})
    return m, cm, Program.from_json((out / "src" / "program.json").read_text())


@pytest.fixture(scope="module")
def fake_cuda(tmp_path_factory):
    lib = tmp_path_factory.mktemp("fakecuda") / "libcuda.so.1"
    subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-Wall", "-Werror", "-Wl,-soname,libcuda.so.1",
                    str(HERE / "fake_cuda.c"), "-o", str(lib)], check=True)
    return lib


@pytest.mark.slow
def test_artifact_has_cubin_for_sm80_and_sm90_for_every_kernel_of_every_launch(artifact):
    _, cm, prog = artifact
    ti = cm.manifest["target_info"]
    assert ti["archs"] == list(ARCHS)
    by_key = {k["key"]: k for k in ti["kernels"]}
    for s in prog.launches():
        for key in launch_keys(s):
            k = by_key[key]
            for arch in ARCHS:
                e = k["archs"][arch]
                blob = (cm.path / e["cubin"]).read_bytes()
                assert blob[:4] == b"\x7fELF"
                assert 0 < e["registers"] <= 255 and e["shared_bytes"] >= 0 and e["local_bytes"] >= 0
                assert e["cubin"] in cm.manifest["files"]          # checksummed like every artifact file
            assert (cm.path / k["archs"]["sm_80"]["ptx"]).read_text().count(".target sm_80") == 1


def test_c_launcher_compiles_against_the_wheels_cuda_h_and_exposes_the_c_abi(artifact):
    m, cm, prog = artifact
    abi = cm.manifest["target_info"]["c_abi"]
    assert abi["runs_in_c"] and (cm.path / abi["library"]).is_file()
    src = (cm.path / abi["source"]).read_text()
    launchers = re.findall(r"static CUresult launch_\w+_([0-9a-f]{10})\(", src)
    assert sorted(launchers) == sorted(k["key"] for k in cm.manifest["target_info"]["kernels"])
    lib = ctypes.CDLL(str(cm.path / abi["library"]))
    lib.xrec_model_input_name.restype = ctypes.c_char_p
    lib.xrec_model_input_shape.restype = ctypes.c_char_p
    assert lib.xrec_model_num_inputs(None) == 53 and lib.xrec_model_num_outputs(None) == 1
    assert lib.xrec_model_input_name(None, 1) == b"indices[0]"
    assert lib.xrec_model_input_shape(None, 27) == b"B+1"
    dims = (ctypes.c_int64 * 8)()
    assert lib.xrec_model_output_shape(None, 0, ctypes.c_int64(37), dims) == 0 and list(dims[:2]) == [37, 1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the failure without a CUDA driver")
def test_c_library_load_fails_cleanly_without_a_cuda_driver(artifact, tmp_path):
    _, cm, _ = artifact
    res = _drive(cm.path, zoo.make_inputs(artifact[0], 2), tmp_path)
    assert "cannot open the CUDA driver" in res["load_error"]


def _flat(args):
    dense, idx, off = args
    return [dense.numpy()] + [i.numpy() for i in idx] + [o.numpy() for o in off]


def _drive(path: Path, args, tmp_path: Path, fake: Path | None = None, env: dict | None = None, isa: str | None = None,
           host_io: bool = False):
    np.savez(tmp_path / "in.npz", *_flat(args))
    cmd = [sys.executable, str(HERE / "c_abi_driver.py"), str(path), str(tmp_path / "in.npz"), str(tmp_path / "o.json")]
    if fake:
        cmd += ["--fake-cuda", str(fake)]
    if host_io:
        cmd += ["--host-io"]
    if isa:
        cmd += ["--isa", isa]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((tmp_path / "o.json").read_text())


def _fake_env(cm, prog, log: Path, sm: int = 90, **extra) -> dict:
    sigs = {}
    for k in cm.manifest["target_info"]["kernels"]:
        sym = k["archs"]["sm_80"]["symbol"]
        sigs[sym] = "".join("p" if k["signature"][n].startswith("*") else "i" for n in k["params"]) + "pp"
    return {"FAKE_CUDA_LOG": str(log), "FAKE_CUDA_SM": str(sm),
            "FAKE_CUDA_SIGS": ";".join(f"{s}:{v}" for s, v in sigs.items()), **extra}


@pytest.mark.parametrize("batch", [3, 100])
def test_c_entry_point_launches_the_programs_kernels_with_its_grids_and_arguments(artifact, fake_cuda, tmp_path,
                                                                                    batch):
    m, cm, prog = artifact
    log = tmp_path / "launches.log"
    args = zoo.make_inputs(m, batch, seed=1)
    res = _drive(cm.path, args, tmp_path, fake_cuda, _fake_env(cm, prog, log))
    assert res["load_error"] == "" and res["run_rc"] == 0, res
    assert res["isa"] == "sm_90"
    lines = log.read_text().splitlines()
    assert lines.count("M ELF") == len(cm.manifest["target_info"]["kernels"])
    launches = [ln.split()[1:] for ln in lines if ln.startswith("L ")]
    steps = prog.launches()
    assert [ln[0] for ln in launches] == [s.kernel for s in steps]
    flat = _flat(args)
    binds = prog.bind([x.shape for x in flat])
    bases: dict[str, int] = {}
    from xrec.targets.triton.program import ev
    for s, ln in zip(steps, launches):
        v = next(v for v in s.variants if v.max_batch is None or ev(s.batch, binds) <= v.max_batch)
        assert [int(x) for x in ln[1:4]] == [-(-ev(e, binds) // b) for e, b in v.grid], s.note
        assert int(ln[4]) == 32 * v.num_warps
        vals = [int(x) for x in ln[6:]]
        assert vals[-2:] == [0, 0]                                 # Triton's scratch pointers
        for a, got in zip(s.args, vals):
            if a.kind == "i32":
                assert got == ev(a.expr, binds), (s.note, a.name)
                continue
            buf = prog.buffers[a.view.buf]
            itemsize = np.dtype({"f32": np.float32, "f16": np.float16, "i64": np.int64, "i32": np.int32,
                                 "u8": np.uint8, "i16": np.int16}[a.view.dtype]).itemsize
            base = got - ev(a.view.offset, binds) * itemsize
            if buf.kind == INPUT:
                assert base == res["inputs"][buf.index], (s.note, a.name)
            elif buf.kind == TEMP and any(o.buf == buf.name for o in prog.outputs):
                assert base == res["outputs"][0], (s.note, a.name)
            else:                                                  # one consistent base per buffer
                assert bases.setdefault(buf.name, base) == base, (s.note, a.name)
    assert bases["weights"] % 256 == 0


def test_c_entry_point_stages_host_tensors_through_device_buffers(artifact, fake_cuda, tmp_path):
    """Host memory (what xrec-server passes) is copied in and out; kernels see only device memory."""
    m, cm, prog = artifact
    log = tmp_path / "launches.log"
    args = zoo.make_inputs(m, 5, seed=3)
    res = _drive(cm.path, args, tmp_path, fake_cuda, _fake_env(cm, prog, log, FAKE_CUDA_TRACK_HOST="1"))
    assert res["load_error"] == "" and res["run_rc"] == 0, res
    lines = log.read_text().splitlines()
    flat = _flat(args)
    to_dev = [int(ln.split()[1]) for ln in lines if ln.startswith("H ")]
    for x in flat:                                             # every input copied in, with its own size
        assert x.nbytes in to_dev
    to_host = [int(ln.split()[1]) for ln in lines if ln.startswith("D ")]
    assert 5 * 1 * 4 in to_host                                # the [5, 1] float output copied back
    host = set(res["inputs"]) | set(res["outputs"])
    launches = [ln for ln in lines if ln.startswith("L ")]
    assert launches
    for ln in launches:                                        # L symbol gx gy gz threads shared args...
        assert not host & {int(v) for v in ln.split()[7:]}, ln  # no kernel got a host address


def test_c_entry_point_uses_device_pointers_as_they_are(artifact, fake_cuda, tmp_path):
    m, cm, prog = artifact
    log = tmp_path / "launches.log"
    res = _drive(cm.path, zoo.make_inputs(m, 5, seed=3), tmp_path, fake_cuda, _fake_env(cm, prog, log))
    assert res["run_rc"] == 0, res
    dense_args = {int(ln.split()[7]) for ln in log.read_text().splitlines() if ln.startswith("L linear")}
    assert res["inputs"][0] in dense_args                       # the first layer reads the caller's dense


@pytest.mark.parametrize("sm,isa,want", [(80, None, ("sm_80", "ELF")), (89, None, ("sm_80", "ELF")),
                                         (100, None, ("ptx", "PTX")), (90, "sm_80", ("sm_80", "ELF"))])
def test_c_entry_point_picks_the_cubin_the_gpu_can_run(artifact, fake_cuda, tmp_path, sm, isa, want):
    m, cm, prog = artifact
    log = tmp_path / "l.log"
    res = _drive(cm.path, zoo.make_inputs(m, 2), tmp_path, fake_cuda, _fake_env(cm, prog, log, sm=sm), isa=isa)
    assert res["isa"] == want[0] and res["run_rc"] == 0
    assert set(ln for ln in log.read_text().splitlines() if ln.startswith("M ")) == {f"M {want[1]}"}


def test_c_entry_point_reports_a_bad_id_the_kernel_flags_with_feature_position_and_value(artifact, fake_cuda,
                                                                                      tmp_path):
    m, cm, prog = artifact
    args = zoo.make_inputs(m, 4, seed=5)
    bags = next(s for s in prog.launches() if s.kernel == "embedding_bag_group_kernel")
    err_arg = [a.name for a in bags.args].index("ERR")
    # play the kernel: it atomic-mins a bad id's position into ERR[2 * slot]; the fake stores 1 into ERR[0]
    first = next(e for e in prog.errors if e.slot == 0)
    env = _fake_env(cm, prog, tmp_path / "l.log", FAKE_CUDA_POKE=f"embedding_bag_group_kernel:{err_arg}:1")
    res = _drive(cm.path, args, tmp_path, fake_cuda, env)
    want_id = int(args[1][0][1])
    assert res["run_rc"] == 1                                      # XREC_ERR_INPUT
    assert res["run_error"] == (f"feature '{first.feature}': index {want_id} at position 1 is out of range for its "
                                f"table of {first.num_rows} rows")       # the cpu code's and validate's words


def test_c_entry_point_checks_input_shapes_and_dtypes(artifact, fake_cuda, tmp_path):
    m, cm, prog = artifact
    dense, idx, off = zoo.make_inputs(m, 3)
    res = _drive(cm.path, (dense[:, :12].contiguous(), idx, off), tmp_path, fake_cuda,
                 _fake_env(cm, prog, tmp_path / "l.log"))
    assert res["shapes_rc"] == 1 and res["shapes_error"] == "input dense: dim 1 must be 13, got 12"
    bad_off = [o.clone() for o in off]
    bad_off[4] = bad_off[4][:-1].contiguous()
    res = _drive(cm.path, (dense, idx, bad_off), tmp_path, fake_cuda, _fake_env(cm, prog, tmp_path / "l.log"))
    assert res["shapes_rc"] == 1 and res["shapes_error"] == "input offsets[4]: dim 0 must be B+1 = 4, got 3"
    res = _drive(cm.path, (dense, [i.int() for i in idx], off), tmp_path, fake_cuda,
                 _fake_env(cm, prog, tmp_path / "l.log"))
    assert res["shapes_rc"] == 1 and "input indices[0]: dtype 3, this model was compiled for i64" in res["shapes_error"]


def test_models_with_torch_steps_get_a_c_library_that_refuses_to_load_and_says_why(tmp_path):
    from torch import nn
    from xrec.targets.triton.aot import kernel_specs
    model = nn.Sequential(nn.Linear(13, 8), nn.LayerNorm(8)).eval()
    cm = xrec.compile(model, (torch.randn(4, 13),), target="triton", options={"aot": False})
    prog = Program.from_json((cm.path / "src" / "program.json").read_text())
    fake_kernels = [{**s, "params": [n for n in s["signature"]],
                     "archs": {f"sm_{a}": {"symbol": s["kernel"], "cubin": "lib/none", "ptx": "lib/none",
                                           "shared_bytes": 0, "registers": 1, "local_bytes": 0} for a in (80, 90)}}
                    for s in kernel_specs(prog)]
    art = tmp_path / "a"
    for d in ("src", "include", "lib"):
        (art / d).mkdir(parents=True)
    from xrec.targets.triton.launcher import SOURCE, abi_header
    (art / SOURCE).write_text(generate(prog, fake_kernels, [80, 90], cm.graph))
    (art / "include" / "xrec_model.h").write_text(abi_header().read_text())
    ok, log = compile_library(art)
    assert ok, log
    lib = ctypes.CDLL(str(art / "lib" / "libxrec_model_cuda.so"))
    lib.xrec_model_load.restype = ctypes.c_void_p
    lib.xrec_last_error.restype = ctypes.c_char_p
    assert lib.xrec_model_load(str(art).encode()) is None
    assert b"layer_norm (torch)" in lib.xrec_last_error() and b"use the Python runtime" in lib.xrec_last_error()


@pytest.mark.gpu
def test_c_entry_point_on_a_gpu_matches_pytorch(artifact, tmp_path):
    m, cm, _ = artifact
    for batch in (1, 64, 2048):
        args = zoo.make_inputs(m, batch, seed=batch)
        res = _drive(cm.path, args, tmp_path)
        assert res["load_error"] == "" and res["run_rc"] == 0, res
        with torch.no_grad():
            want = m(*args).numpy()
        np.testing.assert_allclose(np.array(res["output_values"][0], np.float32), want, rtol=1e-4, atol=1e-6)


@pytest.mark.gpu
def test_c_entry_point_on_a_gpu_takes_host_memory_too(artifact, tmp_path):
    m, cm, _ = artifact
    for batch in (1, 64):
        args = zoo.make_inputs(m, batch, seed=batch)
        res = _drive(cm.path, args, tmp_path, host_io=True)
        assert res["load_error"] == "" and res["run_rc"] == 0, res
        with torch.no_grad():
            want = m(*args).numpy()
        np.testing.assert_allclose(np.array(res["output_values"][0], np.float32), want, rtol=1e-4, atol=1e-6)


@pytest.mark.gpu
def test_python_runtime_on_a_gpu_matches_pytorch(artifact):
    m, cm, _ = artifact
    from xrec.targets.triton.runtime import load_model
    model = load_model(cm.path, mode="gpu")
    for batch in (1, 64, 2048):
        dense, idx, off = zoo.make_inputs(m, batch, seed=batch)
        got = model(dense.cuda(), *[i.cuda() for i in idx], *[o.cuda() for o in off])[0]
        assert got.is_cuda
        with torch.no_grad():
            torch.testing.assert_close(got.cpu(), m(dense, idx, off), rtol=1e-4, atol=1e-6)


class _SoftmaxOverBatch(torch.nn.Module):
    def forward(self, x):
        return torch.softmax(x, dim=0)          # not along the last dim: the listed torch fallback


def test_a_model_of_fallback_steps_only_still_builds_its_c_library_which_refuses_it_at_load(tmp_path):
    x = torch.randn(4, 5)
    cm = xrec.compile(_SoftmaxOverBatch(), (x,), target="triton", out=tmp_path / "fb.xrec")
    ti = cm.manifest["target_info"]
    assert [f["op"] for f in ti["fallbacks"]] == ["softmax"]
    assert ti["c_abi"]["runs_in_c"] is False and (tmp_path / "fb.xrec" / "lib" / "libxrec_model_cuda.so").is_file()
    torch.testing.assert_close(torch.as_tensor(cm(x)), torch.softmax(x, dim=0))
    with pytest.raises(xrec.lowering.LoweringError, match="softmax"):
        xrec.compile(_SoftmaxOverBatch(), (x,), target="triton", options={"strict": True})
