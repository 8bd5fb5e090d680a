"""The "roofline %" column of ``xrec bench``: the model's lower bound on this machine / measured median."""
from __future__ import annotations

import pytest

from xrec.bench import lower_bound, model_bench, report, roofline

# ceilings a bench run would have probed (numbers of a small machine); the run itself never probes here
CEILINGS = {"threads": 1, "stream_read_GBps": 10.0, "gather_GBps": 2.0, "fma_peak_GFLOPs": 50.0,
            "probe_source": "probes.c", "flags": "-O3", "stream_MiB": 64, "seconds": 0.1}
MACHINE = {"cpu_model": "Test CPU", "memory_bytes": 8 * 2**30,
           "caches": {"L2": "1024K (shared by cpus 0)", "L3": "4096K (shared by cpus 0-1)"}}
FAST = dict(threads=1, reps=2, warmup=0, max_rows=50, gap_ms=0.0, mode="cold")


@pytest.fixture
def fixed_ceilings(monkeypatch):
    """The bench's roofline probe returns CEILINGS; the catalogue's own (cached) host probe must not run."""
    calls = []

    def probe(threads, quick=False):
        calls.append(threads)
        return dict(CEILINGS, threads=threads)
    monkeypatch.setattr(roofline, "machine_ceilings", probe)

    def no_probe(*a, **k):
        raise AssertionError("the lower bound must use the bench's own probe, not xrec.cost's probe_host")
    import xrec.cost.catalogue as catalogue
    monkeypatch.setattr(catalogue, "probe_host", no_probe)
    return calls


def test_host_device_takes_the_probed_ceilings_not_the_probe_cache(fixed_ceilings):
    dev = lower_bound.host_device(CEILINGS, MACHINE)
    assert dev.name == "host" and "cpu" in dev.targets
    assert dev.peak_flops["f32"].value == pytest.approx(50e9)
    main = dev.memory["main"]
    assert main.bandwidth_Bps.value == pytest.approx(10e9)
    assert main.gather_bandwidth_Bps.value == pytest.approx(2e9)
    assert main.capacity_bytes.value == 8 * 2**30
    assert dev.cache_bytes == 4096 * 2**10                      # the last-level cache
    assert "probed in this bench run" in dev.description


@pytest.mark.parametrize("ceilings,why", [(None, "no roofline ceilings"),
                                          ({"error": "ProbeBuildError: no g++"}, "probes failed: ProbeBuildError")])
def test_no_usable_ceilings_is_a_reason(ceilings, why):
    with pytest.raises(lower_bound.LowerBoundUnavailable, match=why):
        lower_bound.host_device(ceilings, MACHINE)


def test_each_row_is_lower_bound_over_its_median_with_its_precisions_ir(fixed_ceilings):
    """A real (tiny) run: the column's value is the lower bound of the row's IR / its measured median, the
    lower bound is xrec.cost's prediction at efficiency 1 on the probed ceilings, computed independently
    here; the int8 variant is divided by its own IR's bound, eager by the fp32 one."""
    from xrec.api import lower
    from xrec.cost.graph import graph_work
    from xrec.cost.model import predict_work
    from xrec.ir.stats import measure_pooling
    from xrec.model_arg import resolve
    doc = model_bench.run_model_bench("dlrm-small", targets=["reference"], baselines=["eager"], batches=[1, 4],
                                      roofline=True, variants=["fp32", "int8"], calib_samples=256, **FAST)
    report.validate(doc)
    assert fixed_ceilings == [1]                                 # probed once, by the bench
    lb = doc["lower_bound"]
    assert lb["status"] == "ok" and lb["ids"] == "zipf:1.05" and lb["target"] == "cpu"
    assert lb["graphs"] == {"fp32": "xrec-reference", "int8": "xrec-reference-int8"}
    assert lb["device"]["fma_peak_GFLOPs"] == pytest.approx(50.0)
    rows = {(r["system"], r["batch"]): r for r in doc["rows"]}
    for (system, batch), r in rows.items():
        assert r["status"] == "ok", r
        variant = "int8" if system.endswith("int8") else "fp32"
        e = next(e for e in lb["entries"] if e["batch"] == batch and e["variant"] == variant)
        assert r["lower_bound_variant"] == variant
        assert r["lower_bound_ms"] == e["ms"] > 0
        assert r["roofline_pct"] == pytest.approx(100 * e["ms"] / r["median_ms"])
        assert e["bound"] in ("compute", "memory")
    # the fp32 bound, recomputed: the same IR (reference pipeline), pooling of the timed inputs, the same device
    src = resolve("dlrm-small", max_rows=50, seed=0)
    g, *_ = lower(src.module, src.example_inputs, target="reference", name=src.name)
    dev = lower_bound.host_device(dict(CEILINGS), doc["machine"])
    args = src.make_inputs(4, 123)
    pooling = {f: s.mean for f, s in measure_pooling(g, [lower_bound.flat_inputs(args)]).items()}
    want = predict_work(graph_work(g, 4, cache_bytes=dev.cache_bytes, ids="zipf:1.05", pooling=pooling), dev, "cpu")
    assert rows[("eager", 4)]["lower_bound_ms"] == pytest.approx(want.total_s * 1e3, rel=1e-9)
    # compressed tables: a different IR, a different bound
    fp32 = {e["batch"]: e["ms"] for e in lb["entries"] if e["variant"] == "fp32"}
    int8 = {e["batch"]: e["ms"] for e in lb["entries"] if e["variant"] == "int8"}
    assert fp32[4] != int8[4]
    # presented: the column, the bound rows, the section
    text = report.format_text(doc)
    header = next(ln for ln in text.splitlines() if ln.startswith("system"))
    assert header.split().count("roofline") == 2                 # one per batch
    line = next(ln for ln in text.splitlines() if ln.startswith("eager "))
    assert report._fmt_pct(rows[("eager", 4)]["roofline_pct"]) in line
    assert "lower bound (fp32 IR of xrec-reference)" in text
    assert "lower bound (int8 IR of xrec-reference-int8)" in text
    assert "roofline lower bound" in text
    page = report.markdown_page(doc)
    assert "| system | batch 1 | roofline % | batch 4 | roofline % |" in page
    assert "### Roofline lower bound" in page and "zipf:1.05" in page


def test_without_roofline_the_column_says_why():
    doc = model_bench.run_model_bench("two-tower", targets=[], baselines=["eager"], batches=[2], roofline=False,
                                      **FAST)
    report.validate(doc)
    assert doc["lower_bound"]["status"] == "absent" and "--no-roofline" in doc["lower_bound"]["reason"]
    (row,) = doc["rows"]
    assert row["roofline_pct"] is None and "--no-roofline" in row["roofline_reason"]
    text = report.format_text(doc)
    assert "roofline %" in text and "roofline % absent: --no-roofline" in text
    assert "| lower bound | absent | - |" in report.markdown_page(doc)


def test_failed_probes_make_the_column_say_so(monkeypatch):
    def broken(threads, quick=False):
        raise RuntimeError("no compiler")
    monkeypatch.setattr(roofline, "machine_ceilings", broken)
    doc = model_bench.run_model_bench("two-tower", targets=[], baselines=["eager"], batches=[2], roofline=True,
                                      **FAST)
    assert doc["lower_bound"]["status"] == "absent"
    assert "probes failed: RuntimeError: no compiler" in doc["lower_bound"]["reason"]
    assert doc["rows"][0]["roofline_pct"] is None


def test_baselines_alone_get_the_bound_of_the_ir_xrec_would_compile(fixed_ceilings):
    doc = model_bench.run_model_bench("two-tower", targets=[], baselines=["eager"], batches=[3], roofline=True,
                                      **FAST)
    lb = doc["lower_bound"]
    assert lb["status"] == "ok" and lb["graphs"]["fp32"].startswith("xrec.api.lower(target=")
    (row,) = doc["rows"]
    assert row["roofline_pct"] == pytest.approx(100 * row["lower_bound_ms"] / row["median_ms"])


# ------------------------------------------------------------------ presentation of saved documents
def _with_bounds(doc):
    lb = {"status": "ok", "reason": "", "what": "test", "target": "cpu", "ids": "uniform",
          "graphs": {"fp32": "xrec-cpu"}, "device": {"fma_peak_GFLOPs": 100.0, "stream_read_GBps": 10.0,
                                                     "gather_GBps": 2.0, "cache_bytes": 2**20},
          "entries": [{"batch": 1, "variant": "fp32", "graph_of": "xrec-cpu", "ms": 0.25, "bound": "memory",
                       "stages": {"embedding": {"ms": 0.25, "bound": "memory:main"}}, "notes": ["a note"]},
                      {"batch": 64, "variant": "fp32", "graph_of": "xrec-cpu", "ms": 4.0, "bound": "compute",
                       "stages": {"dense": {"ms": 4.0, "bound": "compute"}}, "notes": []}]}
    doc["lower_bound"] = lb
    for r in doc["rows"]:
        e = next(e for e in lb["entries"] if e["batch"] == r["batch"])
        ok = r["status"] == "ok"
        r.update(lower_bound_variant="fp32", lower_bound_ms=e["ms"],
                 roofline_pct=100 * e["ms"] / r["median_ms"] if ok else None)
    return doc


def test_a_saved_document_shows_the_percentages_and_the_bound_per_batch(sample_doc):
    doc = _with_bounds(sample_doc)
    header, body, cap = report._grid(doc)
    assert header == ["system", "batch 1", "roofline %", "batch 64", "roofline %"]
    rows = {b[0]: b[1:] for b in body}
    assert rows["eager"][1] == "12%" and rows["eager"][3] == "50%"         # 0.25 / 2.0, 4.0 / 8.0
    assert rows["xrec-cpu"][1] == "50%" and rows["xrec-cpu"][3] == "40%"
    assert rows["tvm"] == ["n/a", "n/a", "n/a", "n/a"]
    assert rows["lower bound (fp32 IR of xrec-cpu)"] == ["0.250", "memory", "4.000", "compute"]
    assert "roofline % = lower bound / median" in cap
    page = report.markdown_page(doc)
    assert "| eager | 2.000 (1.800-2.400) | 12% | 8.000 (7.200-9.600) | 50% |" in page
    assert "| 1 | fp32 | xrec-cpu | 0.250 | memory | embedding 0.250 ms memory:main |" in page
    assert "- a note" in page
    text = report.format_text(doc)
    assert "batch     1  fp32  0.250 ms memory-bound (IR of xrec-cpu" in text


def test_a_document_from_before_the_column_renders_as_before(sample_doc):
    header, _body, _cap = report._grid(sample_doc)
    assert header == ["system", "batch 1", "batch 64"]
    assert "roofline lower bound" not in report.format_text(sample_doc)
    assert "Roofline lower bound" not in report.markdown_page(sample_doc)


def test_small_percentages_keep_two_significant_digits():
    assert report._fmt_pct(0.0123) == "0.012%"
    assert report._fmt_pct(3.21) == "3.2%"
    assert report._fmt_pct(87.6) == "88%"


def test_a_row_faster_than_the_bound_is_flagged_not_hidden(sample_doc):
    doc = _with_bounds(sample_doc)
    r = next(r for r in doc["rows"] if r["system"] == "xrec-cpu" and r["batch"] == 64)
    r.update(median_ms=3.2, p10_ms=3.0, p90_ms=3.5, roofline_pct=125.0)
    _header, body, cap = report._grid(doc)
    assert {b[0]: b for b in body}["xrec-cpu"][4] == "125% ^"
    assert "^ = faster than the lower bound" in cap
    assert "xrec-cpu at batch 64: 3.200 ms is below the lower bound 4.000 ms (125%)" in report.format_text(doc)
    assert "Faster than the lower bound (`^`): `xrec-cpu` at batch 64" in report.markdown_page(doc)
