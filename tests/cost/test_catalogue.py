"""The hardware catalogue: every shipped file validates; bad files and names are clear errors."""
import copy
import json

import pytest

from xrec.cost import CatalogueError, device_names, load_device
from xrec.cost import catalogue
from xrec.cost.catalogue import HARDWARE_DIR, parse_device

SHIPPED = ("host", "xeon-8592plus", "epyc-9654", "a100-80gb", "h100-sxm", "h200", "l4", "tpu-v5e", "tpu-v6e",
           "alveo-u280", "alveo-u55c")
FAKE_PROBES = {"fma_peak_GFLOPs": 250.0, "stream_read_GBps": 20.0, "gather_GBps": 5.0, "memory_bytes": 8 * 2**30,
               "llc_bytes": 32 * 2**20, "threads": 2}


@pytest.fixture
def fake_host(monkeypatch):
    monkeypatch.setattr(catalogue, "probe_host", lambda **kw: dict(FAKE_PROBES))


def _raw(name):
    return json.loads((HARDWARE_DIR / f"{name}.json").read_text())


def _figures(obj, path=""):
    """Every figure object of a catalogue file, with its dotted path."""
    if isinstance(obj, dict) and "source" in obj:
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _figures(v, f"{path}.{k}" if path else k)


def test_the_catalogue_ships_the_devices_of_the_issue():
    assert set(SHIPPED) <= set(device_names())


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_file_validates_and_every_figure_has_a_source(name, fake_host):
    d = load_device(name)
    assert d.name == name
    assert d.memory["main"].bandwidth_Bps.value > 0
    assert any(f.known and f.value > 0 for f in d.peak_flops.values())
    figs = list(_figures(_raw(name)))
    assert len(figs) >= 6
    for path, f in figs:
        assert f["source"].strip(), path
        if f.get("value", 0) is None:
            assert f["reason"].strip(), path
    p = d.price_per_hour
    assert p.known or p.reason
    if p.known:
        assert p.source.startswith("list price, "), name


def test_datasheet_figures_are_the_published_ones():
    h100, l4, v5e = load_device("h100-sxm"), load_device("l4"), load_device("tpu-v5e")
    assert h100.peak_flops["f32"].value == 67e12 and h100.memory["main"].bandwidth_Bps.value == 3.35e12
    assert l4.memory["main"].capacity_bytes.value == 24e9 and l4.power["max_W"].value == 72
    assert v5e.peak_flops["bf16"].value == 197e12 and v5e.memory["main"].bandwidth_Bps.value == 819e9
    assert load_device("h200").memory["main"].bandwidth_Bps.value == 4.8e12


def test_host_is_filled_from_the_probes(fake_host):
    d = load_device("host")
    assert d.peak_flops["f32"].value == 250e9
    assert d.memory["main"].bandwidth_Bps.value == 20e9
    assert d.memory["main"].gather_bandwidth_Bps.value == 5e9
    assert d.cache_bytes == 32 * 2**20
    assert d.peak_flops["f32"].source.startswith("measured here")


def test_host_probe_runs_here():
    d = load_device("host", probe_quick=True)
    assert d.peak_flops["f32"].value > 1e9 and d.memory["main"].bandwidth_Bps.value > 1e8


def test_unknown_device_lists_the_known_ones():
    with pytest.raises(CatalogueError, match=r"unknown hardware 'h800'; known: .*a100-80gb.*h100-sxm.*tpu-v6e"):
        load_device("h800")


def _write(tmp_path, data, name="mydev.json"):
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return str(p)


@pytest.mark.parametrize("mutate,field", [
    (lambda d: d.pop("power"), "'power' is missing"),
    (lambda d: d["memory"].pop("main"), "'memory.main' is missing"),
    (lambda d: d["memory"]["main"].pop("bandwidth_Bps"), "'memory.main.bandwidth_Bps' is missing"),
    (lambda d: d["memory"]["main"]["bandwidth_Bps"].__setitem__("value", -1),
     "'memory.main.bandwidth_Bps.value' must not be negative"),
    (lambda d: d["peak_flops"]["f32"].__setitem__("value", -67e12), "'peak_flops.f32.value' must not be negative"),
    (lambda d: d["power"]["max_W"].pop("source"), "'power.max_W.source' is missing"),
    (lambda d: d["power"]["max_W"].__setitem__("value", None), "'power.max_W.reason' is missing"),
    (lambda d: d["peak_flops"]["f32"].__setitem__("value", "fast"), "'peak_flops.f32.value' must be a number"),
    (lambda d: d["peak_flops"].__setitem__("fp32", d["peak_flops"]["f32"]), "'peak_flops.fp32' is not a known key"),
    (lambda d: d.__setitem__("kind", "npu"), "'kind' must be one of"),
    (lambda d: d.__setitem__("colour", "green"), "'colour' is not a known field"),
])
def test_a_bad_file_is_refused_naming_the_file_and_field(tmp_path, mutate, field):
    data = copy.deepcopy(_raw("h100-sxm"))
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(CatalogueError) as e:
        load_device(path)
    assert path in str(e.value) and field in str(e.value)


def test_a_user_file_in_the_schema_loads(tmp_path):
    data = copy.deepcopy(_raw("l4"))
    data["name"] = "my-l4"
    data["price_per_hour"] = {"value": 0.7, "source": "list price, some cloud, 2026-01"}
    assert load_device(_write(tmp_path, data)).price_per_hour.value == 0.7


def test_unreadable_files_are_catalogue_errors(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{not json")
    with pytest.raises(CatalogueError, match="cannot read a JSON object"):
        load_device(str(p))
    with pytest.raises(CatalogueError, match="does not exist"):
        load_device(str(tmp_path / "missing.json"))
    with pytest.raises(CatalogueError, match="one JSON object"):
        parse_device([1, 2], "list.json")


def test_host_at_a_thread_count_is_this_machine_probed_at_that_count(monkeypatch):
    """host@T: one device = one server worker of T threads (xrec plan counts devices as workers)."""
    from xrec.cost import catalogue, load_device, profile_path
    seen = []

    def fake_probe(*, quick=False, refresh=False, threads=None):
        seen.append(threads)
        return {"fma_peak_GFLOPs": 100.0 * threads, "stream_read_GBps": 20.0, "gather_GBps": 10.0,
                "memory_bytes": 2**34, "llc_bytes": 2**25, "threads": threads, "cpu_model": "Test CPU"}
    monkeypatch.setattr(catalogue, "probe_host", fake_probe)
    one, two = load_device("host@1"), load_device("host@2")
    assert seen == [1, 2]
    assert (one.name, two.name) == ("host@1", "host@2")
    assert two.peak_flops["f32"].value == 2 * one.peak_flops["f32"].value
    assert profile_path(one, "cpu") != profile_path(two, "cpu")          # a profile per thread count
    assert profile_path(one, "cpu") == profile_path(load_device("host", threads=1), "cpu")
    with pytest.raises(catalogue.CatalogueError, match="host@"):
        load_device("host@0")
