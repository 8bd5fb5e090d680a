"""Running an hls artifact: the gather kernel (C simulation or a card via XRT), then the host part."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from xrec.artifact import open_artifact
from xrec.runtime.validate import InputError, check_feature

from .. import get_target
from .csim import CSimError, run_csim
from .options import HlsOptions
from .placement import plan_of
from .spec import kernel_spec
from .split import dense_input_sources, feature_sources, full_offsets, pack_unit_inputs
from .tables import effective_table


class Gatherer:
    """Runs the gather kernel on one batch: packs each unit's inputs, runs the binary, unpacks outputs."""

    def __init__(self, ks, g, root: Path, opts: HlsOptions):
        self.ks, self.g, self.root, self.opts = ks, g, Path(root), opts
        self.last_counters: dict | None = None
        if opts.runtime == "xrt":
            self.binary = self.root / "lib" / "host"
            if not self.binary.is_file():
                raise FileNotFoundError(f"{self.root}: no lib/host; compile with hls options build_host=True "
                                        "runtime='xrt' on a machine with XRT")
            if not opts.xclbin or not Path(opts.xclbin).is_file():
                raise FileNotFoundError(f"hls runtime='xrt' needs option xclbin=<path to {self.root.name} "
                                        f"xclbin built from src/Makefile>, got {opts.xclbin!r}")
        else:
            self.binary = self.root / "lib" / "csim"
            if not self.binary.is_file():
                raise FileNotFoundError(f"{self.root}: no lib/csim; the artifact is incomplete, recompile it")
        # per table: where its feature comes from in the model's flat inputs
        self.sources = {t.id: feature_sources(g, t.jagged_value, t.psw_value) for t in ks.tables}
        # per gathered feature, the checks of xrec.runtime.validate (offsets start at 0, never decrease, end at
        # len(indices); ids inside the logical rows, a pruned table's remap length): the kernel must never see
        # a bad id, and the error is the one every target raises, in the same words
        self.checks: dict[str, dict] = {}
        for t in ks.tables:
            i_idx, i_off, last, _ = self.sources[t.id]
            c = self.checks.setdefault(t.jagged_value, {"feature": t.plan.feature, "indices": i_idx,
                                                        "offsets": i_off, "include_last_offset": last,
                                                        "num_rows": t.plan.rows})
            c["num_rows"] = min(c["num_rows"], t.plan.rows)

    def check_inputs(self, flat) -> None:
        """InputError (xrec.runtime.validate's words) for the first bad offsets or id of a gathered feature."""
        for c in self.checks.values():
            check_feature(c, flat)

    def features_from_inputs(self, flat) -> tuple[dict, int]:
        self.check_inputs(flat)
        feats, batch = {}, None
        for t in self.ks.tables:
            if t.jagged_value in feats:
                continue
            i_idx, i_off, last, i_w = self.sources[t.id]
            ids = np.asarray(flat[i_idx])
            off = full_offsets(flat[i_off], len(ids), last)
            w = None if i_w is None else np.asarray(flat[i_w], np.float32)
            feats[t.jagged_value] = (ids, off, w)
            b = len(off) - 1
            if batch is not None and b != batch:
                raise InputError(f"feature {t.plan.feature!r} has batch {b}, other features {batch}")
            batch = b
        return feats, batch or 0

    def run_features(self, feats: dict, batch: int) -> tuple[dict, dict]:
        """Pooled outputs {gather node: [batch, sum D] float32} and the run's trip counters."""
        ks = self.ks
        for t in ks.tables:   # features that did not come through features_from_inputs (its flat checks)
            ids = feats[t.jagged_value][0]
            if len(ids) and (ids.min() < 0 or ids.max() >= t.plan.rows):
                check_feature({"feature": t.plan.feature, "indices": 0, "offsets": 1, "include_last_offset": True,
                               "num_rows": t.plan.rows}, [ids, feats[t.jagged_value][1]])
        per_table = {}
        counters = None
        if batch > 0:
            with tempfile.TemporaryDirectory(prefix="xrec-hls-io-") as io:
                io = Path(io)
                (io / "batch.txt").write_text(f"{batch}\n")
                for u in ks.units:
                    bag_off, ids, psw = pack_unit_inputs(
                        [(feats[t.jagged_value][0], feats[t.jagged_value][1],
                          feats[t.jagged_value][2] if t.psw else None) for t in u.tables], batch)
                    bag_off.tofile(io / f"{u.name}_bag_off.bin")
                    ids.tofile(io / f"{u.name}_ids.bin")
                    if u.has_psw:
                        psw.tofile(io / f"{u.name}_psw.bin")
                if self.opts.runtime == "xrt":
                    import subprocess
                    r = subprocess.run([str(self.binary), self.opts.xclbin, str(self.root), str(io)],
                                       capture_output=True, text=True, timeout=self.opts.csim_timeout_s)
                    if r.returncode != 0:
                        raise RuntimeError(f"XRT host program failed: {(r.stderr or r.stdout)[-3000:]}")
                else:
                    run_csim(self.binary, self.root, io, timeout_s=self.opts.csim_timeout_s)
                for u in ks.units:
                    out = np.fromfile(io / f"{u.name}_out.bin", np.float32)
                    if out.size != batch * u.outch * 16:
                        raise CSimError(f"{u.name}: output has {out.size} floats, expected {batch * u.outch * 16}")
                    out = out.reshape(batch, u.outch * 16)
                    for t, co in zip(u.tables, u.chunk_offsets()):
                        per_table[t.id] = out[:, co * 16: co * 16 + t.plan.dim]
                cpath = io / "counters.json"
                if cpath.is_file():
                    counters = json.loads(cpath.read_text())
        else:
            for t in ks.tables:
                per_table[t.id] = np.zeros((0, t.plan.dim), np.float32)
        self.last_counters = counters
        pooled = {}
        for node in dict.fromkeys(t.plan.node for t in ks.tables):
            parts = sorted((t.plan.pos, t.id) for t in ks.tables if t.plan.node == node)
            dt = self.g.type_of(node).dtype.to_numpy()      # f32, or f16 for a lone bag over an f16 table
            pooled[node] = np.ascontiguousarray(np.concatenate([per_table[i] for _, i in parts], axis=1),
                                                dtype=dt)
        return pooled, counters

    def __call__(self, flat) -> dict:
        feats, batch = self.features_from_inputs(flat)
        return self.run_features(feats, batch)[0]


def reference_pooled(g, ks, feats: dict, batch: int) -> dict:
    """What the kernel must produce: the IR interpreter's bag semantics on the tables as stored on the card."""
    from xrec.ir.interpreter import Jagged, _bag
    per = {}
    for t in ks.tables:
        ids, off, w = feats[t.jagged_value]
        table = effective_table(g.params[g.node(t.table_value).attr("name")], g.type_of(t.table_value),
                                t.plan.fmt, t.plan.dim)
        pad = None if t.pad < 0 else t.pad
        remap = g.params[g.node(t.remap_value).attr("name")] if t.pruned else None
        per[t.id] = _bag(table, Jagged(ids, off, True), t.mode, pad, w if t.psw else None, t.plan.feature,
                         remap=remap)
    out = {}
    for node in dict.fromkeys(t.plan.node for t in ks.tables):
        parts = sorted((t.plan.pos, t.id) for t in ks.tables if t.plan.node == node)
        out[node] = np.concatenate([per[i] for _, i in parts], axis=1).astype(np.float64)
    return out


def make_runner(target, artifact, opts: HlsOptions):
    g = artifact.graph
    root = Path(artifact.path)
    plan = plan_of(g)
    host_art = open_artifact(root / "lib" / "host.xrec")
    host = get_target(host_art.target)
    ok, why = host.available()
    if not ok:
        raise RuntimeError(f"{root}: its dense part was built for host target {host_art.target!r}, which is not "
                           f"available here: {why}")
    host_run = host.load(host_art, host_art.manifest.get("target_info", {}).get("options", {}))
    srcs = dense_input_sources(g, host_art.graph)
    gather = None
    if plan.tables:
        ks = kernel_spec(g, plan, fadd_latency=opts.fadd_latency, outstanding=opts.outstanding_reads)
        gather = Gatherer(ks, g, root, opts)

    def run(flat):
        pooled = gather(flat) if gather is not None else {}
        ins = [np.asarray(flat[k]) if kind == "model" else pooled[k] for kind, k in srcs]
        return host_run(ins)

    run.gatherer = gather
    return run
