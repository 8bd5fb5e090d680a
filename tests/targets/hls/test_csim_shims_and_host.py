"""The C-sim stream model (deadlocks fail loudly), the XRT host code, headers and options."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from xrec.config import knobs
from xrec.targets.hls.placement import MemoryConfig, place, plan_of
from xrec.targets import get_target
from xrec.targets.hls.emit_host import emit_host
from xrec.targets.hls.headers import HeadersNotFound, ap_types_dir, shim_dir, xrt_include_dir, xrt_stub_dir
from xrec.targets.hls.spec import kernel_spec

from .conftest import T, bag_graph, needs_hls

pytestmark = needs_hls

STREAM_PROG = r"""
#include <hls_stream.h>
#include <cstdio>
int main(int argc, char** argv) {
  hls::stream<int> s("u3.id_s");
  s.write(1);
  if (argv[1][0] == 'e') { s.read(); s.read(); }           // one read too many: a deadlock in hardware
  else if (argv[1][0] == 'l') { s.write(2); s.read(); }    // one item never read
  else s.read();
  std::printf("finished\n");
  return 0;
}
"""


@pytest.fixture(scope="module")
def stream_prog(tmp_path_factory):
    d = tmp_path_factory.mktemp("stream")
    (d / "p.cpp").write_text(STREAM_PROG)

    def build(include: str):
        exe = d / f"p-{abs(hash(include))}"
        subprocess.run([knobs.cxx, "-std=c++17", f"-I{include}", str(d / "p.cpp"), "-o", str(exe)], check=True)
        return exe
    return build


def test_read_from_empty_stream_aborts_naming_the_stream(stream_prog):
    r = subprocess.run([str(stream_prog(str(shim_dir()))), "e"], capture_output=True, text=True)
    assert r.returncode != 0 and "finished" not in r.stdout
    assert "DEADLOCK: read from empty stream 'u3.id_s'" in r.stderr


def test_stream_left_with_data_aborts(stream_prog):
    r = subprocess.run([str(stream_prog(str(shim_dir()))), "l"], capture_output=True, text=True)
    assert r.returncode != 0
    assert "stream 'u3.id_s' destroyed with 1 unread items" in r.stderr


def test_balanced_stream_use_runs(stream_prog):
    r = subprocess.run([str(stream_prog(str(shim_dir()))), "ok"], capture_output=True, text=True)
    assert r.returncode == 0 and "finished" in r.stdout and r.stderr == ""


def test_vendor_stream_model_only_warns_which_is_why_xrec_has_its_own(stream_prog):
    r = subprocess.run([str(stream_prog(str(ap_types_dir()))), "e"], capture_output=True, text=True)
    assert r.returncode == 0 and "read while empty" in r.stdout


def test_ap_types_are_found_in_the_hls4ml_wheel_with_their_licence():
    d = ap_types_dir()
    assert (d / "ap_int.h").is_file() and (d / "ap_fixed.h").is_file()
    assert "Apache License" in (d / "ap_int.h").read_text()
    assert "hls4ml" in str(d)


def test_include_dir_option_must_hold_ap_int(tmp_path):
    with pytest.raises(HeadersNotFound, match="lacks ap_int.h"):
        ap_types_dir(str(tmp_path))
    assert ap_types_dir(str(ap_types_dir())) == ap_types_dir()


def _host_source(tmp_path) -> str:
    tables = [T(100, 16), T(30, 8, psw=True), T(400, 64)]
    g = place(bag_graph(tables, name="host"), MemoryConfig(uram_bytes=3000, bram_bytes=0, hbm_channels=2))
    ks = kernel_spec(g, plan_of(g))
    assert ks.onchip and ks.offchip
    for t in ks.tables:
        t.image = (f"lib/tables/t{t.id}.bin", 0, t.words * 64)
    p = tmp_path / "host.cpp"
    p.write_text(emit_host(ks))
    return str(p)


def test_host_code_syntax_checks_against_xrt_declarations(tmp_path):
    src = _host_source(tmp_path)
    text = open(src).read()
    for api in ("xrt::device(", "load_xclbin(", "xrt::kernel(", "group_id(", "xrt::bo ", "XCL_BO_SYNC_BO_TO_DEVICE",
                "run.wait()"):
        assert api in text
    r = subprocess.run([knobs.cxx, "-std=c++17", "-fsyntax-only", "-DXREC_HOST_MAIN", f"-I{xrt_stub_dir()}", src],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(xrt_include_dir() is None, reason="libxrt-dev (XRT headers) not installed")
def test_host_code_compiles_and_links_against_libxrt(tmp_path):
    src = _host_source(tmp_path)
    r = subprocess.run([knobs.cxx, "-std=c++17", "-O0", "-DXREC_HOST_MAIN", f"-I{xrt_include_dir()}", src, "-o",
                        str(tmp_path / "host"), "-lxrt_coreutil", "-luuid", "-pthread"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]


def test_unknown_or_invalid_options_are_errors_listing_the_valid_ones():
    t = get_target("hls")
    with pytest.raises(ValueError, match=r"unknown option\(s\) 'hbm_chanels'(.|\n)*hbm_channels: int = 32"):
        t.parse_options({"hbm_chanels": 4})
    with pytest.raises(ValueError, match="quantize_rows='int3'; choose one of none, fp16, int8"):
        t.parse_options({"quantize_rows": "int3"})
    with pytest.raises(ValueError, match="host='triton' must be one of cpu, reference"):
        t.parse_options({"host": "triton"})
    with pytest.raises(ValueError, match="hbm_channels=-1 must be >= 0"):
        t.parse_options({"hbm_channels": -1})
    with pytest.raises(ValueError, match="clock_mhz=0 must be a finite number > 0"):
        t.parse_options({"clock_mhz": 0})
    with pytest.raises(ValueError, match="pooling=.*needs ids per bag > 0"):
        t.parse_options({"pooling": {"indices[0]": 0}})
    with pytest.raises(ValueError, match=r"pooling=\[3, 4\] is not float \| dict\[str, float\] \| None"):
        t.parse_options({"pooling": [3, 4]})
    with pytest.raises(ValueError, match="runtime='fpga'; choose one of csim, xrt"):
        t.parse_options({"runtime": "fpga"})


def test_options_are_a_frozen_dataclass_with_defaults_and_string_values():
    import dataclasses
    from xrec.targets.hls.options import HlsOptions
    t = get_target("hls")
    assert t.typed_options() is HlsOptions
    o = t.parse_options({"hbm_channels": "4", "ddr_banks": 1, "pooling": "2.5", "build_host": "false"})
    assert isinstance(o, HlsOptions)
    assert (o.hbm_channels, o.ddr_banks, o.pooling, o.build_host, o.clock_mhz, o.host) == (4, 1, 2.5, False, 300.0,
                                                                                            None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.hbm_channels = 8
    assert t.capabilities(o).memory_channels == 5
    assert t.parse_options(o.as_dict()) == o          # what the manifest stores parses back to the same options
    d = t.parse_options({"pooling": '{"indices[1]": 7}'}).pooling
    assert d == {"indices[1]": 7.0}


def test_target_runs_placement_with_its_memory_options():
    t = get_target("hls")
    ((name, cfg),) = t.passes(t.parse_options({}))
    assert name == "place_tables" and cfg["hbm_channels"] == 32
    ((name, cfg),) = t.passes(t.parse_options({"hbm_channels": 4, "ddr_banks": 1}))
    assert name == "place_tables" and cfg["hbm_channels"] == 4 and cfg["ddr_banks"] == 1


def test_target_reports_missing_compiler(monkeypatch):
    with knobs.override(cxx="no-such-compiler-xrec"):
        ok, why = get_target("hls").available()
    assert not ok and "no-such-compiler-xrec" in why
    assert shutil.which(knobs.cxx)
