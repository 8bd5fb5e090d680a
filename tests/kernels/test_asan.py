"""All kernel families under AddressSanitizer on exactly-sized heap buffers: bounds
checking stops before reading a bad row/offset, and valid inputs (odd dims, the
last table row, every row format and pooling mode, GEMM tails) read nothing out of
bounds. Checksums of valid cases must agree across the ISA builds."""
from __future__ import annotations

import os
import subprocess

import pytest

_RESULTS: dict[str, dict[str, tuple]] = {}


def _run(cpp_build, isa):
    if not cpp_build.isa_supported(isa):
        pytest.skip(f"this CPU cannot run the {isa} build")
    if isa not in _RESULTS:
        exe = cpp_build.compile([cpp_build.DRIVERS / "asan_main.cpp"],
                                cpp_build.ISA_FLAGS[isa] + ["-O1", "-fsanitize=address", "-fno-omit-frame-pointer"],
                                kind="exe")
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1")
        r = subprocess.run([str(exe)], capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 0 and "AddressSanitizer" not in r.stderr, r.stderr[-4000:]
        rows = {}
        for line in r.stdout.splitlines():
            name, code, pos, val, checksum = line.split()
            rows[name] = (int(code), int(pos), int(val), float(checksum))
        _RESULTS[isa] = rows
    return _RESULTS[isa]


def test_bounds_check_stops_before_any_out_of_bounds_read_under_asan(cpp_build, isa):
    rows = _run(cpp_build, isa)
    assert rows["id_too_large"][:3] == (1, 3, 10)
    assert rows["negative_id"][:3] == (1, 1, -1)
    assert rows["offsets_decreasing"][:3] == (2, 2, 1)
    assert rows["offsets_beyond_indices"][:3] == (3, 2, 7)
    assert rows["negative_offset"][:3] == (3, 0, -1)


def test_valid_inputs_read_nothing_out_of_bounds_and_agree_across_isa_builds(cpp_build, isa):
    rows = _run(cpp_build, isa)
    valid = [k for k in rows if not k.startswith(("id_", "negative", "offsets"))]
    assert len(valid) >= 84 + 6
    assert all(rows[k][0] == 0 for k in valid)
    ref = _run(cpp_build, "scalar")
    for k in valid:
        assert rows[k][3] == pytest.approx(ref[k][3], rel=1e-4, abs=1e-3), k
