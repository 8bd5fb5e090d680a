"""The Python -> C path of a cpu artifact: torch tensors straight into the generated code, and
where the weights live (file mapping or transparent huge pages).

A compiled cpu model called with torch tensors takes a native path that reads the tensors
without numpy views or a Python validator (the generated code checks every input). These
tests pin that this path is taken, returns what the general numpy path returns, accepts what
the general path accepts (int32 ids, empty bags, strided or grad-requiring tensors) and fails
with the same messages.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from xrec.runtime.validate import InputError
from xrec.targets.cpu.binding import CpuModel
from xrec.testing import edge_case_inputs

from .conftest import needs_cpu

pytestmark = needs_cpu


def _general_path(cm, args):
    """The numpy route: flatten to numpy views, validate in Python, run through the buffer binding."""
    flat, _ = cm.flatten_inputs(args, {})
    return cm.run_flat(flat)


def _no_general_path(cm, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the call left the torch fast path")
    monkeypatch.setattr(cm, "flatten_inputs", refuse)


@pytest.mark.parametrize("name", ["dlrm-small", "two-tower"])
def test_torch_fast_path_matches_the_numpy_path_on_edge_cases(compiled_zoo, monkeypatch, name):
    cm, model = compiled_zoo(name)
    assert cm._fast is not None
    cases = edge_case_inputs(model)
    want = [_general_path(cm, args) for args in cases]
    _no_general_path(cm, monkeypatch)
    for args, ref in zip(cases, want):
        got = cm(*args)
        got = list(got) if isinstance(got, (tuple, list)) else [got]
        assert all(isinstance(g, torch.Tensor) for g in got)
        for g, r in zip(got, ref):
            assert g.dtype == torch.from_numpy(r).dtype and tuple(g.shape) == r.shape
            np.testing.assert_array_equal(g.numpy(), r)
        with torch.no_grad():
            ref_torch = model(*args)
        ref_torch = list(ref_torch) if isinstance(ref_torch, (tuple, list)) else [ref_torch]
        for g, r in zip(got, ref_torch):
            torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)


def test_torch_fast_path_takes_strided_and_grad_requiring_tensors(compiled_zoo, monkeypatch):
    cm, model = compiled_zoo("dlrm-small")
    dense, idx, off = edge_case_inputs(model, batches=(7,))[0]
    wide = torch.randn(7, 2 * dense.shape[1])
    wide[:, ::2] = dense
    strided = wide[:, ::2]                       # not contiguous
    assert not strided.is_contiguous()
    leaf = dense.clone().requires_grad_(True)
    want = _general_path(cm, (dense, idx, off))[0]
    _no_general_path(cm, monkeypatch)
    np.testing.assert_array_equal(cm(strided, idx, off).numpy(), want)
    np.testing.assert_array_equal(cm(leaf, idx, off).numpy(), want)


def test_numpy_inputs_and_keyword_calls_take_the_general_path(compiled_zoo):
    cm, model = compiled_zoo("dlrm-small")
    dense, idx, off = edge_case_inputs(model, batches=(3,))[0]
    out_np = cm(dense.numpy(), [i.numpy() for i in idx], [o.numpy() for o in off])
    assert isinstance(out_np, np.ndarray)
    np.testing.assert_array_equal(out_np, cm(dense, idx, off).numpy())


def test_fast_path_errors_read_like_the_general_path(compiled_zoo):
    cm, model = compiled_zoo("dlrm-small")
    dense, idx, off = edge_case_inputs(model, batches=(4,))[0]
    with pytest.raises(InputError, match=r"convert with \.float\(\)"):
        cm(dense.double(), idx, off)
    bad = [i.clone() for i in idx]
    bad[2][0] = 10 ** 6
    with pytest.raises(InputError, match=r"out of range|outside"):
        cm(dense, bad, off)
    with pytest.raises(InputError, match="called with"):
        cm(dense, idx[:-1], off)
    short = [o.clone() for o in off]
    short[1] = short[1][:-1]
    with pytest.raises(InputError):
        cm(dense, idx, short)


@pytest.mark.parametrize("mode", ["on", "off"])
def test_weights_in_huge_pages_or_file_mapping_give_identical_outputs(compiled_zoo, mode):
    cm, model = compiled_zoo("dlrm-small")
    flat, _ = cm.flatten_inputs(edge_case_inputs(model, batches=(9,))[0], {})
    m = CpuModel(cm.path, huge_pages=mode)
    try:
        thp = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        thp = "[never]"
    expect = "hugepages" if mode == "on" and "[never]" not in thp else "file"
    assert m.weights_memory == expect
    np.testing.assert_array_equal(m(flat)[0], cm.run_flat(flat)[0])
    m.close()


def test_unknown_huge_pages_setting_is_refused(compiled_zoo):
    cm, _ = compiled_zoo("dlrm-small")
    with pytest.raises(ValueError, match="huge_pages must be one of auto, on, off"):
        CpuModel(cm.path, huge_pages="sometimes")


def test_loading_does_not_build_the_python_binding_the_first_call_does(compiled_zoo, monkeypatch):
    """A compile that only writes the artifact never waits for the per-call extension (built once per torch
    version); the first call builds or loads it and then runs as before."""
    from xrec.targets.cpu import binding
    cm, model = compiled_zoo("dlrm-small")
    built = []
    real = binding.pycall_module
    monkeypatch.setattr(binding, "pycall_module", lambda: built.append(1) or real())
    m = CpuModel(cm.path)
    assert built == []
    flat, _ = cm.flatten_inputs(edge_case_inputs(model)[0], {})
    np.testing.assert_array_equal(m(flat)[0], cm.run_flat(flat)[0])
    m(flat)
    assert built == [1]
