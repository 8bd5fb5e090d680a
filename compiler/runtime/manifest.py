"""manifest.json's layout checks and checksum, shared by the compiler (which writes it) and every loader.

Every field that decides how an artifact's bytes are read (the weights file, its size, sha256 and per-entry
offset / nbytes / dtype / shape, the IR file, the file hashes, the signature, the target's info) is covered
by one checksum the compiler stores as ``manifest["layout_sha256"]``; the Python loader
(``xrec.artifact.read_manifest``) and the C loader (``csrc/xrec_json.h``: ``check_manifest``, called by
``xrec_model_load`` and ``xrec::Model::open``) check the fields' types and ranges (naming the field) and then
recompute it, before any file of the artifact is read.

The checksum (both sides must reproduce it byte for byte):

    layout_sha256 = sha256("xrec-layout-v1\\n" + concat over K in LAYOUT_KEYS of  S(K) + (C(manifest[K]) or "-"))

where "-" stands for an absent key, and C(v), a canonical form of a parsed JSON value, is

    null -> "n"      true -> "t"      false -> "f"
    number -> "d" + its literal text as written in manifest.json + ";"
    string -> S(s) = "s" + len(utf8(s)) in decimal + ":" + utf8(s)
    array  -> "a" + count + "[" + C(item)... + "]"
    object -> "o" + count + "{" + (S(key) + C(value)) for keys sorted by their UTF-8 bytes + "}"

(a duplicated key counts once, with its last value, as both JSON readers keep it). Numbers are taken by
their literal text, so no float formatting has to agree between Python and C++; ``json.dumps`` of a value
``json.loads`` read writes the same text back, so re-serializing a manifest keeps its checksum.
Fields outside LAYOUT_KEYS (xrec_version, created, source, tolerances, compression, ...) are informative
and not covered.

The functions here return a message (or None) rather than raise, so that ``xrec.artifact`` turns it into
its ``ArtifactError`` without an import cycle.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any

LAYOUT_KEY = "layout_sha256"
LAYOUT_TAG = b"xrec-layout-v1\n"
LAYOUT_KEYS = ("format_version", "target", "model", "signature", "in_spec", "out_spec", "weights", "ir",
               "files", "target_info")
FIX = "the artifact is corrupt or was edited: recompile the model"

_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_DTYPE = re.compile(r"[<>|=]?[biufcV][0-9]{1,4}\Z")   # what numpy's dtype.str gives for fixed-size numbers


class _Num:
    """A JSON number as its literal text (parse hook)."""
    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


def _s(text: str) -> bytes:
    b = text.encode("utf-8", "surrogatepass")
    return b"s" + str(len(b)).encode() + b":" + b


def _canon(v: Any, out: list[bytes]) -> None:
    if v is None:
        out.append(b"n")
    elif v is True:
        out.append(b"t")
    elif v is False:
        out.append(b"f")
    elif isinstance(v, _Num):
        out.append(b"d" + v.text.encode() + b";")
    elif isinstance(v, str):
        out.append(_s(v))
    elif isinstance(v, list):
        out.append(b"a" + str(len(v)).encode() + b"[")
        for x in v:
            _canon(x, out)
        out.append(b"]")
    elif isinstance(v, dict):
        out.append(b"o" + str(len(v)).encode() + b"{")
        for k in sorted(v, key=lambda k: k.encode("utf-8", "surrogatepass")):
            out.append(_s(k))
            _canon(v[k], out)
        out.append(b"}")
    else:  # pragma: no cover - json.loads with the hooks yields nothing else
        raise TypeError(f"not a JSON value: {type(v).__name__}")


def layout_sha256(text: str) -> str:
    """The layout checksum of manifest.json's text (see the module docstring)."""
    doc = json.loads(text, parse_int=_Num, parse_float=_Num, parse_constant=_Num)
    if not isinstance(doc, dict):
        raise ValueError("manifest.json is not a JSON object")
    out = [LAYOUT_TAG]
    for k in LAYOUT_KEYS:
        out.append(_s(k))
        if k in doc:
            _canon(doc[k], out)
        else:
            out.append(b"-")
    return hashlib.sha256(b"".join(out)).hexdigest()


def seal(manifest: dict) -> str:
    """manifest.json's text for ``manifest`` with its ``layout_sha256`` (the compiler's writer calls this;
    tests re-seal an edited manifest with it to reach the checks behind the checksum)."""
    body = {k: v for k, v in manifest.items() if k != LAYOUT_KEY}
    body[LAYOUT_KEY] = layout_sha256(json.dumps(body))
    return json.dumps(body, indent=1)


# ------------------------------------------------------------------------------------ field checks
def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def _show(v: Any) -> str:
    t = json.dumps(v)
    return t if len(t) <= 60 else t[:57] + "..."


class _Bad(Exception):
    pass


def _bad(field: str, v: Any, want: str, missing: bool = False) -> _Bad:
    what = ("is missing" if missing else f"is {_kind(v)}" if isinstance(v, (dict, list))
            else f"is {_show(v)} ({_kind(v)})")
    return _Bad(f"manifest.json field '{field}' {what}; it must be {want}; {FIX}")


def _get(obj: dict, key: str, field: str, want: str) -> Any:
    if key not in obj:
        raise _bad(field, None, want, missing=True)
    return obj[key]


def _obj(parent: dict, key: str, field: str) -> dict:
    v = _get(parent, key, field, "an object")
    if not isinstance(v, dict):
        raise _bad(field, v, "an object")
    return v


def _arr(parent: dict, key: str, field: str) -> list:
    v = _get(parent, key, field, "an array")
    if not isinstance(v, list):
        raise _bad(field, v, "an array")
    return v


def _str(parent: dict, key: str, field: str, nonempty: bool = False) -> str:
    want = "a non-empty string" if nonempty else "a string"
    v = _get(parent, key, field, want)
    if not isinstance(v, str) or (nonempty and not v):
        raise _bad(field, v, want)
    return v


def _int(parent: dict, key: str, field: str, minimum: int = 0, nullable: bool = False) -> int | None:
    want = f"an integer >= {minimum}" + (" or null" if nullable else "")
    v = _get(parent, key, field, want)
    if v is None and nullable:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum or v >= 10 ** 18:
        raise _bad(field, v, want)
    return v


def _sha(parent: dict, key: str, field: str) -> str:
    want = "a sha256 (64 lowercase hex digits)"
    v = _get(parent, key, field, want)
    if not isinstance(v, str) or not _HEX64.match(v):
        raise _bad(field, v, want)
    return v


def _relpath(parent: dict, key: str, field: str) -> str:
    v = _str(parent, key, field, nonempty=True)
    if v.startswith("/") or "\\" in v or any(p in ("", ".", "..") for p in v.split("/")):
        raise _bad(field, v, "a plain path inside the artifact directory")
    return v


def _check_fields(m: dict) -> None:
    _str(m, "target", "target", nonempty=True)
    _str(m, "model", "model")
    if "target_info" in m:
        _obj(m, "target_info", "target_info")
    sig = _obj(m, "signature", "signature")
    for k, e in enumerate(_arr(sig, "inputs", "signature.inputs")):
        f = f"signature.inputs[{k}]"
        if not isinstance(e, dict):
            raise _bad(f, e, "an object")
        for key in ("name", "value", "kind", "dtype"):
            _str(e, key, f"{f}.{key}")
        for j, d in enumerate(_arr(e, "shape", f"{f}.shape")):
            if not isinstance(d, str):
                raise _bad(f"{f}.shape[{j}]", d, "a string (a dimension)")
    for k, e in enumerate(_arr(sig, "outputs", "signature.outputs")):
        f = f"signature.outputs[{k}]"
        if not isinstance(e, dict):
            raise _bad(f, e, "an object")
        for key in ("value", "dtype"):
            _str(e, key, f"{f}.{key}")
        _arr(e, "shape", f"{f}.shape")
    for k, e in enumerate(_arr(sig, "features", "signature.features")):
        f = f"signature.features[{k}]"
        if not isinstance(e, dict):
            raise _bad(f, e, "an object")
        _str(e, "feature", f"{f}.feature")
        _int(e, "indices", f"{f}.indices", nullable=True)
        _int(e, "offsets", f"{f}.offsets", nullable=True)
        if not isinstance(_get(e, "include_last_offset", f"{f}.include_last_offset", "a boolean"), bool):
            raise _bad(f"{f}.include_last_offset", e["include_last_offset"], "a boolean")
        _int(e, "num_rows", f"{f}.num_rows", nullable=True)

    w = _obj(m, "weights", "weights")
    _relpath(w, "file", "weights.file")
    align = _int(w, "alignment", "weights.alignment", minimum=1)
    size = _int(w, "bytes", "weights.bytes")
    _sha(w, "sha256", "weights.sha256")
    entries = _obj(w, "entries", "weights.entries")
    import numpy as np
    for name, e in entries.items():
        f = f'weights.entries["{name}"]'
        if not isinstance(e, dict):
            raise _bad(f, e, "an object")
        off = _int(e, "offset", f"{f}.offset")
        nb = _int(e, "nbytes", f"{f}.nbytes")
        dts = _str(e, "dtype", f"{f}.dtype", nonempty=True)
        try:
            dt = np.dtype(dts) if _DTYPE.match(dts) else None
        except (TypeError, ValueError):
            dt = None
        if dt is None or dt.hasobject or dt.itemsize == 0:
            raise _bad(f"{f}.dtype", dts, "a numpy dtype of fixed size (e.g. \"<f4\")")
        n = 1
        for j, d in enumerate(_arr(e, "shape", f"{f}.shape")):
            if isinstance(d, bool) or not isinstance(d, int) or d < 0:
                raise _bad(f"{f}.shape[{j}]", d, "an integer >= 0")
            n *= d
        if nb != n * dt.itemsize:
            raise _Bad(f"manifest.json field '{f}.nbytes' is {nb} but its shape {e['shape']} of {dts} holds "
                       f"{n * dt.itemsize} bytes; {FIX}")
        if off % align:
            raise _Bad(f"manifest.json field '{f}.offset' is {off}, not a multiple of weights.alignment "
                       f"({align}); {FIX}")
        if off + nb > size:
            raise _Bad(f"manifest.json field '{f}.offset' is {off}: with its {nb} bytes it ends past the end "
                       f"of the weights file (weights.bytes {size}); {FIX}")
    ir = _obj(m, "ir", "ir")
    _relpath(ir, "file", "ir.file")
    _sha(ir, "sha256", "ir.sha256")
    files = _obj(m, "files", "files")
    for rel in files:
        if rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in rel.split("/")):
            raise _Bad(f"manifest.json field 'files' lists {json.dumps(rel)}, not a plain path inside the artifact "
                       f"directory; {FIX}")
        _sha(files, rel, f'files["{rel}"]')


def check_manifest(manifest: Any, text: str) -> str | None:
    """What is wrong with a manifest (already checked to be format FORMAT_VERSION), or None: the fields the
    loaders read, by name, then the layout checksum. ``text`` is manifest.json's text."""
    if not isinstance(manifest, dict):
        return f"manifest.json is {_kind(manifest)}, not an object; {FIX}"
    try:
        _check_fields(manifest)
        want = _sha(manifest, LAYOUT_KEY, LAYOUT_KEY)
    except _Bad as e:
        msg = str(e)
        if f"'{LAYOUT_KEY}' is missing" in msg:
            msg = (f"manifest.json has no '{LAYOUT_KEY}' (the checksum of its layout fields): it was written by "
                   f"an older xrec or edited; recompile the model")
        return msg
    got = layout_sha256(text)
    if got != want:
        return (f"manifest.json's layout fields do not match its '{LAYOUT_KEY}' (recorded {want[:12]}..., "
                f"computed {got[:12]}...): weights/ir/files/signature/target_info were edited or corrupted; "
                f"{FIX}")
    return None
