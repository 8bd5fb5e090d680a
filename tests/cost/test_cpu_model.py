"""The cpu target's performance model (xrec.cost.targets.cpu): dense weights streamed per layer the way
the generated code schedules them, at the bandwidth the calibration sweep measured for that working set."""
import math
import subprocess

import pytest

from xrec.cost import PerfParams, predict, predict_target
from xrec.cost.perf import perf_model_for
from xrec.cost.targets import cpu as cpu_model
from xrec.cost.targets.cpu import core_stream_Bps, layers_of, weight_seconds
from xrec.kernels import cpu_include_dir
from xrec.targets.cpu.codegen import SPLIT_COLUMNS_BYTES, splits_columns
from xrec.targets.cpu.plan import TILE_MAX, tile_rows, tiles

from cost.graphs import linear_graph
from cost.test_model import device

POINTS = [[1e6, 80e9], [2e6, 40e9], [4e6, 20e9]]
STREAM = {"threads": 2, "all_slow_Bps": 30e9, "points": POINTS}


def test_the_cpu_target_registers_its_own_model():
    assert perf_model_for("cpu") is cpu_model.predict_cpu


def test_python_tile_rows_is_the_runtimes_c_function(tmp_path):
    cases = [(b, t) for b in (0, 1, 2, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 1000, 2048)
             for t in (1, 2, 3, 4, 8)]
    src = tmp_path / "tiles.cpp"
    src.write_text('#include <cstdio>\n#include "xrec_gen.h"\nusing namespace xrec::XREC_ISA_NS;\nint main() {\n'
                   + "".join(f'  std::printf("%ld\\n", gen::tile_rows({b}, {t}, {TILE_MAX}));\n' for b, t in cases)
                   + "  return 0;\n}\n")
    exe = tmp_path / "tiles"
    from xrec.serve.build import csrc_dir
    build = subprocess.run(["g++", "-std=c++17", "-fopenmp", f"-I{cpu_include_dir()}", f"-I{csrc_dir()}", str(src),
                            "-o", str(exe)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    got = [int(x) for x in subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()]
    assert got == [tile_rows(b, t) for b, t in cases]
    assert tiles(16, 2) == 1 and tiles(17, 2) == 2 and tiles(64, 1) == 1 and tiles(2048, 2) == 32


def test_a_layer_splits_its_columns_from_the_codegen_threshold_on():
    k = SPLIT_COLUMNS_BYTES // 4 // 256
    assert splits_columns(k, 256) and not splits_columns(k - 1, 256)


def test_core_stream_follows_the_measured_curve_in_log_bytes_and_clamps_at_its_ends():
    assert core_stream_Bps(0.5e6, POINTS) == pytest.approx(80e9)
    assert core_stream_Bps(1e6, POINTS) == pytest.approx(80e9)
    assert core_stream_Bps(math.sqrt(2) * 1e6, POINTS) == pytest.approx(math.sqrt(80e9 * 40e9))
    assert core_stream_Bps(9e6, POINTS) == pytest.approx(20e9)


def test_core_stream_curve_is_made_non_increasing():
    noisy = [[1e6, 50e9], [2e6, 90e9], [4e6, 20e9]]       # a slow small point (overheads) and a fast bigger one
    assert core_stream_Bps(1e6, noisy) == pytest.approx(90e9)
    assert core_stream_Bps(1.5e6, noisy) == pytest.approx(90e9)


def test_batch_one_unsplit_layers_stream_on_one_core_at_the_curve_of_their_sum():
    layers = [("a", 500, 500), ("b", 500, 500)]           # 1 MB each, under the split threshold
    assert not splits_columns(500, 500)
    ws, how = weight_seconds(layers, 1, STREAM)
    assert how["tiles"] == 1 and how["working_set_bytes"] == pytest.approx(2e6)
    assert ws["a"] == ("cache", 1e6, pytest.approx(1e6 / 40e9))
    assert ws["b"][2] == pytest.approx(1e6 / 40e9)


def test_batch_one_split_layers_count_their_share_and_stream_on_every_core():
    layers = [("big", 1024, 1024), ("small", 500, 500)]   # 4 MiB: split over 2 threads; 1 MB: one core
    ws, how = weight_seconds(layers, 1, STREAM)
    per_core = 4 * 1024 * 1024 / 2 + 1e6
    assert how["working_set_bytes"] == pytest.approx(per_core)
    core = core_stream_Bps(per_core, POINTS)
    t = math.log(80e9 / core) / math.log(80e9 / 20e9)     # how far the core has gone down its curve
    split_bw = math.exp((1 - t) * math.log(2 * 80e9) + t * math.log(30e9))
    assert ws["big"][2] == pytest.approx(4 * 1024 * 1024 / split_bw)
    assert ws["small"][2] == pytest.approx(1e6 / core)


def test_several_tiles_stream_every_layer_per_tile_on_each_thread():
    layers = [("big", 1024, 1024)]
    ws, how = weight_seconds(layers, 256, STREAM)          # 4 tiles of 64 rows on 2 threads: 2 tiles each
    assert how["tiles"] == 4 and how["working_set_bytes"] == pytest.approx(4 * 1024 * 1024)
    one, _ = weight_seconds(layers, 128, STREAM)           # 2 tiles: 1 each
    assert ws["big"][2] == pytest.approx(2 * one["big"][2])


def _profile(**kw):
    return PerfParams(efficiency={"dense": 0.5}, call_overhead_s=0.0, per_node=True, bandwidth_Bps={"cache": 1e12},
                      **kw)


def test_batch_one_weight_time_is_the_measured_stream_not_divided_by_the_gemm_efficiency():
    g = linear_graph(500, 500, bias=False)                 # 1 MB of weights, one core
    dev = device(cache=(1e9, 1e12))
    p = predict_target(g, dev, "cpu", 1, _profile(weight_stream=STREAM)).stage("dense")
    acts = 4 * (500 + 500) / 1e12                          # the activations at the profile's cache bandwidth
    assert p.time_s == pytest.approx(1e6 / 80e9 + acts / 0.5, rel=1e-6)


def test_without_a_weight_stream_the_cpu_model_is_the_plain_calibrated_roofline():
    g = linear_graph(500, 500, bias=False)
    dev = device(cache=(1e9, 1e12))
    for b in (1, 64, 2048):
        assert predict_target(g, dev, "cpu", b, _profile()).total_s == pytest.approx(
            predict(g, dev, "cpu", b, _profile()).total_s)


def test_a_compute_bound_batch_is_unchanged_by_the_weight_stream():
    g = linear_graph(500, 500, bias=False)
    dev = device(cache=(1e9, 1e12))
    a = predict_target(g, dev, "cpu", 2048, _profile()).stage("dense")
    b = predict_target(g, dev, "cpu", 2048, _profile(weight_stream=STREAM)).stage("dense")
    assert a.bound == "compute" and b.time_s == pytest.approx(a.time_s)


def test_layers_come_from_the_cpu_targets_own_lowering():
    assert layers_of(linear_graph(300, 200)) == [("y", 300, 200)]


def test_bad_weight_stream_points_are_refused():
    from xrec.cost import CostError
    with pytest.raises(CostError, match="weight_stream"):
        PerfParams(weight_stream={"threads": 2, "all_slow_Bps": 1e9, "points": [[1e6, -1.0]]})
