"""The lowered model: buffers, views of them, and an ordered list of steps.

``lower.py`` builds a ``Program`` from the optimized IR; ``runtime.py`` runs
it on torch tensors (GPU or Triton's CPU interpreter); ``launcher.py`` turns
the same program into C that launches the AOT-compiled cubins. It is stored
in the artifact as ``src/program.json``.

Shapes and scalar arguments are symbolic dims (sympy, over ``B`` and
``N_<input>``), evaluated once per call from the input shapes.
"""
from __future__ import annotations

import json

import sympy
from dataclasses import asdict, dataclass, field
from typing import Any

from xrec.ir.types import DType, canon_dim, dim_str, eval_dim

from ..views import View, contiguous_strides  # noqa: F401  (the shared strided view; re-exported)

# buffer kinds
INPUT, BLOB, TEMP, CONST, PTRTABLE, ERRFLAG = "input", "blob", "temp", "const", "ptrtable", "errflag"
# bytes per element of the dtypes views and buffers use ("i16": bf16 rows read as bit patterns)
ITEMSIZE = {"f32": 4, "f16": 2, "bf16": 2, "f64": 8, "i64": 8, "i32": 4, "i16": 2, "i8": 1, "u8": 1, "bool": 1}


@dataclass
class Buffer:
    """A region of device memory.

    input: the user's tensor ``index`` (flat input order); blob: weights.bin, every
    parameter lives in it (64-byte aligned); temp: allocated per call; const: small
    arrays fixed at compile time (``data``, flat); ptrtable: int64 [rows, 4] built per
    call from ``rows`` (views whose addresses it holds, and an nnz dim); errflag:
    int32 filled with INT32_MAX before each call, min-reduced by kernels that check ids.
    """

    name: str
    kind: str
    dtype: str                      # DType value: f32, f16, i64, i32, u8, ...
    shape: tuple = ()
    index: int | None = None
    data: list | None = None
    rows: list | None = None        # ptrtable: [[idx View, off View, psw View | None, nnz dim], ...]

    @property
    def dt(self) -> DType:
        return DType(self.dtype)


@dataclass
class Variant:
    """One tile configuration of a launch, used while the batch is at most ``max_batch``."""

    max_batch: int | None
    grid: tuple
    constexprs: dict
    num_warps: int = 4
    num_stages: int = 3


@dataclass
class Arg:
    """A kernel argument: a pointer to a view, or a 32-bit integer dim."""

    kind: str                  # "ptr" | "i32"
    view: View | None = None
    expr: Any = None
    name: str = ""


@dataclass
class Launch:
    kernel: str                # function name in the kernels file
    args: list
    variants: list
    batch: Any                 # the dim that picks the variant
    note: str = ""
    kind: str = "launch"
    interp: list | None = None      # variants used instead in Triton's CPU interpreter (fewer, larger programs)


@dataclass
class TorchStep:
    """An IR node run as torch ops (ops without a Triton kernel here); not in the C entry point."""

    node: str
    inputs: list               # View per input (None for jagged inputs, which carry (idx, off) views)
    jagged: list               # per input: [idx View, off View] for jagged inputs, else None
    out: View
    note: str = ""
    kind: str = "torch"


@dataclass
class ErrorSlot:
    """Which feature an ERR slot (2 int32: first bad id position, first bad bag) belongs to."""

    slot: int
    feature: str
    indices: View
    num_rows: int


@dataclass
class Program:
    name: str
    buffers: dict
    steps: list
    outputs: list              # View per graph output (contiguous temps)
    inputs: list               # [(input name, buffer name)] in flat input order
    symbols: dict              # symbol -> [input index, axis, delta]: value = shape[axis] - delta
    errors: list = field(default_factory=list)
    err_buffer: str | None = None
    kernels_file: str = "xrec_triton_kernels.py"
    options: dict = field(default_factory=dict)

    def launches(self) -> list[Launch]:
        return [s for s in self.steps if isinstance(s, Launch)]

    def torch_steps(self) -> list[TorchStep]:
        return [s for s in self.steps if isinstance(s, TorchStep)]

    def bind(self, shapes: list[tuple]) -> dict[str, int]:
        return {s: int(shapes[i][axis]) - int(delta) for s, (i, axis, delta) in self.symbols.items()}

    # ---- JSON
    def to_json(self) -> str:
        return json.dumps(_enc(asdict(self)), indent=1)

    @staticmethod
    def from_json(text: str) -> "Program":
        d = json.loads(text)
        bufs = {k: Buffer(**_dec_buffer(v)) for k, v in d["buffers"].items()}
        steps = [_dec_step(s) for s in d["steps"]]
        errors = [ErrorSlot(slot=e["slot"], feature=e["feature"], indices=_dec_view(e["indices"]),
                            num_rows=e["num_rows"]) for e in d["errors"]]
        return Program(name=d["name"], buffers=bufs, steps=steps, outputs=[_dec_view(v) for v in d["outputs"]],
                       inputs=[tuple(x) for x in d["inputs"]], symbols={k: tuple(v) for k, v in d["symbols"].items()},
                       errors=errors, err_buffer=d["err_buffer"], kernels_file=d["kernels_file"],
                       options=d["options"])


_COMPILED: dict = {}


def ev(d, binds: dict[str, int]) -> int:
    """Value of dim ``d`` under ``binds`` (polynomial dims are compiled to Python once: this runs per call)."""
    if isinstance(d, int):
        return d
    fn = _COMPILED.get(d)
    if fn is None:
        if all(isinstance(a, (sympy.Add, sympy.Mul, sympy.Symbol, sympy.Integer)) for a in sympy.preorder_traversal(d)):
            code = compile(str(d), "<dim>", "eval")
            fn = lambda b, code=code: eval(code, {"__builtins__": {}}, b)  # noqa: E731
        else:
            fn = lambda b, d=d: eval_dim(d, b)  # noqa: E731
        _COMPILED[d] = fn
    return int(fn(binds))


# ---- JSON helpers: dims are written as strings ("B", "27*B", "B + 1"), read back with canon_dim
def _enc(x):
    if isinstance(x, dict):
        return {k: _enc(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_enc(v) for v in x]
    if isinstance(x, (bool, str, float)) or x is None:
        return x
    if isinstance(x, int):
        return x
    return {"dim": dim_str(x)}


def _d(x):
    if isinstance(x, dict) and set(x) == {"dim"}:
        return canon_dim(x["dim"])
    return x


def _dec_view(v):
    if v is None:
        return None
    return View(buf=v["buf"], dtype=v["dtype"], shape=tuple(_d(s) for s in v["shape"]),
                strides=tuple(_d(s) for s in v["strides"]), offset=_d(v["offset"]))


def _dec_buffer(b):
    b = dict(b)
    b["shape"] = tuple(_d(s) for s in b["shape"])
    if b.get("rows") is not None:
        b["rows"] = [[_dec_view(r[0]), _dec_view(r[1]), _dec_view(r[2]), _d(r[3])] for r in b["rows"]]
    return b


def _dec_variant(v):
    return Variant(max_batch=v["max_batch"], grid=tuple((_d(e), b) for e, b in v["grid"]),
                   constexprs=v["constexprs"], num_warps=v["num_warps"], num_stages=v["num_stages"])


def _dec_step(s):
    if s["kind"] == "launch":
        args = [Arg(kind=a["kind"], view=_dec_view(a["view"]), expr=_d(a["expr"]), name=a["name"])
                for a in s["args"]]
        variants = [_dec_variant(v) for v in s["variants"]]
        interp = None if s.get("interp") is None else [_dec_variant(v) for v in s["interp"]]
        return Launch(kernel=s["kernel"], args=args, variants=variants, batch=_d(s["batch"]), note=s["note"],
                      interp=interp)
    return TorchStep(node=s["node"], inputs=[_dec_view(v) for v in s["inputs"]],
                     jagged=[None if j is None else [_dec_view(j[0]), _dec_view(j[1])] for j in s["jagged"]],
                     out=_dec_view(s["out"]), note=s["note"])
