"""The three ISA builds of the kernel headers link into one program side by side
(as the cpu target's generated code does) without sharing any inline symbol: a
shared weak symbol could be de-duplicated by the linker into another ISA's copy
and run, e.g., AVX-512 code on a CPU that only has AVX2."""
from __future__ import annotations

import subprocess

import pytest


@pytest.fixture(scope="module")
def objs(cpp_build):
    """isa_link.cpp compiled once per ISA build (like the generated code's per-ISA TUs)."""
    return {isa: cpp_build.compile([cpp_build.DRIVERS / "isa_link.cpp"], flags, kind="object")
            for isa, flags in cpp_build.ISA_FLAGS.items()}


def _weak_symbols(obj):
    out = subprocess.run(["nm", "--defined-only", str(obj)], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.split()[-2] in ("W", "V", "u")}


def test_three_isa_builds_link_and_compute_the_same_results(cpp_build, objs, tmp_path):
    exe = tmp_path / "link"
    subprocess.run(["g++", "-O1", *map(str, objs.values()), str(cpp_build.DRIVERS / "isa_link_main.cpp"),
                    "-o", str(exe)], check=True)
    can = ",".join(isa for isa in cpp_build.ISA_FLAGS if cpp_build.isa_supported(isa))
    out = subprocess.run([str(exe), can], capture_output=True, text=True, check=True).stdout
    vals = {k: float(v) for k, v in (line.split() for line in out.splitlines())}
    assert set(vals) == set(can.split(","))
    assert all(v > -1e29 for v in vals.values()), f"a build reported a bag error: {vals}"
    for isa, v in vals.items():
        assert v == pytest.approx(vals["scalar"], rel=1e-5), isa


def test_isa_builds_share_no_weak_symbols(objs):
    weak = {isa: _weak_symbols(o) for isa, o in objs.items()}
    shared = (weak["avx512"] & weak["avx2"]) | (weak["avx512"] & weak["scalar"]) | (weak["avx2"] & weak["scalar"])
    assert not shared, f"inline symbols shared between ISA builds: {sorted(shared)[:10]}"
