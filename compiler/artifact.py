"""The artifact: a directory NAME.xrec/ any target writes and ``xrec.load`` reads.

    manifest.json   format and xrec version, target, signature, tolerances, weight
                    layout, checksums of every file
    weights.bin     every parameter, 64-byte aligned, mmap-able (offsets in the manifest)
    ir.json         the optimized IR the target lowered (parameters by name)
    src/ lib/ include/   what the target generated and built
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .ir import Graph, Op, feature_inputs
from .ir.serialize import graph_from_json, graph_to_json
from .ir.types import DType, dim_str
from .runtime.manifest import check_manifest, seal

FORMAT_VERSION = 1
ALIGN = 64


class ArtifactError(Exception):
    """The artifact is corrupt, from another format version, or built for other hardware."""


def sha256_file(path: Path, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def signature_of(g: Graph) -> dict:
    """Inputs, outputs and sparse features in the form the manifest and the runtimes use."""
    ins = []
    for n in g.input_nodes:
        ins.append({"name": n.attr("name"), "value": n.name, "kind": n.attr("kind"),
                    "dtype": n.type.dtype.value, "shape": [dim_str(d) for d in n.type.shape]})
    index_of = {n.name: k for k, n in enumerate(g.input_nodes)}
    rows_of: dict[str, list[int]] = {}
    for n in g.nodes_of(Op.EMBEDDING_BAG, Op.EMBEDDING_BAG_GROUP):
        for fi in feature_inputs(n):
            rows = fi.feature.num_rows
            if rows < 0:     # a single bag: its logical rows are the remap's or the table's
                rows = int(g.type_of(fi.remap or fi.table).shape[0])
            rows_of.setdefault(fi.jagged, []).append(rows)
    features = []
    for j in g.nodes_of(Op.JAGGED):
        idx, off = j.inputs
        tables = rows_of.get(j.name, [])
        features.append({"feature": j.attr("feature"), "indices": index_of.get(idx),
                         "offsets": index_of.get(off), "include_last_offset": j.attr("include_last_offset"),
                         "num_rows": min(tables) if tables else None})
    outs = [{"value": o, "dtype": g.type_of(o).dtype.value,
             "shape": [dim_str(d) for d in g.type_of(o).shape]} for o in g.outputs]
    return {"inputs": ins, "outputs": outs, "features": features}


@dataclass
class ArtifactWriter:
    """Collects what a target produces; ``finish`` writes weights, IR and manifest last."""

    path: Path
    graph: Graph
    target: str
    target_info: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    tolerances: dict = field(default_factory=lambda: {"rtol": 1e-4, "atol": 1e-6})

    def __post_init__(self):
        self.path = Path(self.path)
        if self.path.exists():
            shutil.rmtree(self.path)
        for sub in ("src", "lib", "include"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        self.weights_layout: dict[str, dict] | None = None

    def widen_tolerances(self, rtol: float | None = None, atol: float | None = None) -> dict:
        """Loosen (never tighten) the tolerances the manifest records, e.g. for rows a target stores
        in fewer bits; returns the result."""
        if rtol is not None:
            self.tolerances["rtol"] = max(self.tolerances.get("rtol", 0.0), rtol)
        if atol is not None:
            self.tolerances["atol"] = max(self.tolerances.get("atol", 0.0), atol)
        return dict(self.tolerances)

    def write_text(self, rel: str, text: str) -> Path:
        p = self.path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        return p

    def write_weights(self, order: list[str] | None = None) -> dict[str, dict]:
        """Write weights.bin (64-byte aligned entries) and return the layout."""
        params = self.graph.params
        names = order or list(params)
        layout: dict[str, dict] = {}
        off = 0
        with open(self.path / "weights.bin", "wb") as f:
            for name in names:
                a = np.ascontiguousarray(params[name])
                pad = (-off) % ALIGN
                f.write(b"\0" * pad)
                off += pad
                layout[name] = {"offset": off, "nbytes": int(a.nbytes), "dtype": a.dtype.str,
                                "shape": list(a.shape)}
                f.write(memoryview(a).cast("B") if a.nbytes else b"")
                off += a.nbytes
        self.weights_layout = layout
        return layout

    def finish(self, source: dict | None = None) -> Path:
        if self.weights_layout is None:
            self.write_weights()
        (self.path / "ir.json").write_text(json.dumps(graph_to_json(self.graph)))
        files = {}
        for sub in ("src", "lib", "include"):
            for p in sorted((self.path / sub).rglob("*")):
                if p.is_file():
                    files[str(p.relative_to(self.path))] = sha256_file(p)
        manifest = {
            "format_version": FORMAT_VERSION,
            "xrec_version": __version__,
            "model": self.graph.name,
            "target": self.target,
            "target_info": self.target_info,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "signature": signature_of(self.graph),
            "in_spec": self.graph.in_spec,
            "out_spec": self.graph.out_spec,
            "tolerances": self.tolerances,
            "source": source or {},
            "weights": {"file": "weights.bin", "alignment": ALIGN,
                        "bytes": os.path.getsize(self.path / "weights.bin"),
                        "sha256": sha256_file(self.path / "weights.bin"),
                        "entries": self.weights_layout},
            "ir": {"file": "ir.json", "sha256": sha256_file(self.path / "ir.json")},
            "files": files,
            **self.extra,
        }
        # sealed: "layout_sha256" covers every field that decides how the bytes are read (xrec.runtime.manifest)
        (self.path / "manifest.json").write_text(seal(manifest))
        return self.path


@dataclass
class Artifact:
    """A verified artifact on disk: manifest, memory-mapped weights and the IR."""

    path: Path
    manifest: dict
    graph: Graph

    @property
    def target(self) -> str:
        return self.manifest["target"]


def read_manifest(path: Path) -> dict:
    path = Path(path)
    mf = path / "manifest.json"
    if not mf.is_file():
        raise ArtifactError(f"{path}: not an xrec artifact (no manifest.json); build one with "
                            "`xrec compile MODEL --target T -o OUT`")
    try:
        text = mf.read_text()
        manifest = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{mf}: manifest is not valid JSON ({e}); the artifact is corrupt") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{mf}: manifest is not a JSON object; the artifact is corrupt: recompile the model")
    v = manifest.get("format_version")
    if v != FORMAT_VERSION or isinstance(v, bool):
        raise ArtifactError(f"{path}: artifact format {v} but this xrec ({__version__}) reads format "
                            f"{FORMAT_VERSION}; recompile the model with this xrec")
    # the fields the loaders read (by name), then the checksum over them, before any other file is read
    bad = check_manifest(manifest, text)
    if bad:
        raise ArtifactError(f"{path}: {bad}")
    return manifest


def open_artifact(path, verify_checksums: bool = True) -> Artifact:
    path = Path(path)
    manifest = read_manifest(path)
    if verify_checksums:
        checks = {manifest["weights"]["file"]: manifest["weights"]["sha256"],
                  manifest["ir"]["file"]: manifest["ir"]["sha256"], **manifest.get("files", {})}
        for rel, want in checks.items():
            p = path / rel
            if not p.is_file():
                raise ArtifactError(f"{path}: missing file {rel}; the artifact is incomplete")
            got = sha256_file(p)
            if got != want:
                raise ArtifactError(f"{path}: checksum mismatch for {rel} (manifest {want[:12]}..., "
                                    f"file {got[:12]}...); the artifact is corrupt or was edited")
    w = manifest["weights"]
    size = w["bytes"]
    wpath = path / w["file"]
    if not wpath.is_file() or wpath.stat().st_size != size:
        have = f"holds {wpath.stat().st_size} bytes" if wpath.is_file() else "is missing"
        raise ArtifactError(f"{path}: {w['file']} {have} but manifest.json records {size} (weights.bytes); "
                            "the artifact is corrupt or incomplete: copy it again or recompile the model")
    mm = np.memmap(path / w["file"], dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
    params = {}
    for name, e in w["entries"].items():
        dt = np.dtype(e["dtype"])
        n = int(np.prod(e["shape"])) if e["shape"] else 1
        params[name] = np.frombuffer(mm, dtype=dt, count=n, offset=e["offset"]).reshape(e["shape"]) \
            if e["nbytes"] else np.zeros(e["shape"], dt)
    g = graph_from_json(json.loads((path / manifest["ir"]["file"]).read_text()), params)
    return Artifact(path=path, manifest=manifest, graph=g)
