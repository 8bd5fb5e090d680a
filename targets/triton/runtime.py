"""Run a lowered program: one callable on torch tensors.

On a machine with a CUDA device the kernels are JIT-compiled by Triton and
run on the GPU (inputs may be CUDA or CPU tensors; outputs are CUDA tensors).
Without one, the same kernels run on CPU tensors through Triton's
interpreter, which is slow (about a millisecond per program) and meant for
checking, not serving.
"""
from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from xrec.ir import Graph
from xrec.progress import say
from xrec.runtime.validate import InputError, check_feature, check_offset_ends

from .loader import has_cuda, load_kernels
from .program import CONST, ERRFLAG, INPUT, ITEMSIZE, PTRTABLE, TEMP, Launch, Program, View, ev
from .torch_ops import run_node, torch_dtype

INT32_MAX = 2 ** 31 - 1
_SAID_INTERPRETER = False


def resolve_mode(mode: str = "auto") -> bool:
    """True for Triton's CPU interpreter, False for the GPU."""
    if mode not in ("auto", "gpu", "interpret"):
        raise ValueError(f"triton target option mode must be auto, gpu or interpret, got {mode!r}")
    if mode == "interpret":
        return True
    cuda = has_cuda()
    if mode == "gpu" and not cuda:
        raise RuntimeError("triton target: mode='gpu' but torch sees no CUDA device here; use mode='auto' "
                           "to run the kernels in Triton's CPU interpreter")
    if not cuda:
        global _SAID_INTERPRETER
        if not _SAID_INTERPRETER:
            say("triton: no CUDA device here, so the Triton kernels run in Triton's CPU interpreter "
                "(TRITON_INTERPRET mode: correct but slow; for checking, not serving)")
            _SAID_INTERPRETER = True
    return not cuda


class TritonModel:
    """The compiled model as a callable on flat torch tensors (the model's flattened inputs)."""

    def __init__(self, program: Program, kernels_path: Path, weights: np.ndarray, graph: Graph,
                 mode: str = "auto", cuda_graphs: bool = True, features: list | None = None):
        self.program = program
        # the manifest's sparse features (flat input positions of ids and offsets): the offsets' ends are
        # checked on the host before any launch, the kernels check the rest, and any error is reported in
        # the words of xrec.runtime.validate, as on every other target
        self.features = [f for f in (features or []) if f["indices"] is not None and f["offsets"] is not None]
        self.graph = graph
        self.interpret = resolve_mode(mode)
        self.device = torch.device("cpu" if self.interpret else "cuda")
        self.kernels = load_kernels(kernels_path, self.interpret)
        blob = program.buffers.get("weights")
        size = int(blob.shape[0]) if blob is not None else 0
        w = np.zeros(size, np.uint8)
        w[:len(weights)] = weights[:size]
        self.static: dict[str, torch.Tensor] = {}
        if blob is not None:
            self.static[blob.name] = torch.from_numpy(w).to(self.device)
        for b in program.buffers.values():
            if b.kind == CONST:
                self.static[b.name] = torch.tensor(b.data, dtype=torch_dtype(b.dtype),
                                                   device=self.device).reshape(b.shape)
        self.fns = {s.kernel: getattr(self.kernels, s.kernel) for s in program.launches()}
        # in the interpreter, launches use their interpreter tiles; False runs the GPU tiles there (tests)
        self.interp_tiles = True
        self.check = program.err_buffer is not None
        # CUDA graphs (GPU only): the whole program replayed as one graph per value of the symbols
        # its launches bake in (the batch, for every zoo model); see _replay
        self.cuda_graphs = bool(cuda_graphs) and not self.interpret
        self.max_graphs = 16
        self._graphs: OrderedDict = OrderedDict()
        self._graph_lock = threading.Lock()
        self._baked_syms, self._baked_inputs = _baked(program)
        # per input: (name, buffer, torch dtype, rank); the dims not read off an input to bind a symbol
        self._input_bufs = frozenset(b for _, b in program.inputs)
        self._in_specs = [(name, b, torch_dtype(program.buffers[b].dtype), len(program.buffers[b].shape))
                          for name, b in program.inputs]
        defining = {(i, axis) for i, axis, _ in program.symbols.values()}
        self._shape_checks = [(k, axis, d) for k, (_, b) in enumerate(program.inputs)
                              for axis, d in enumerate(program.buffers[b].shape)
                              if (k, axis) not in defining or not _is_symbol(d)]
        self.graph_error: str | None = None      # why graphs were turned off for this model, if they were

    # ------------------------------------------------------------------ helpers
    def _tensor(self, env: dict, binds: dict, v: View) -> torch.Tensor:
        base = env.get(v.buf)
        if base is None:
            b = self.program.buffers[v.buf]
            if b.kind != TEMP:
                raise RuntimeError(f"buffer {v.buf} ({b.kind}) is not available")
            base = torch.empty(tuple(ev(d, binds) for d in b.shape), dtype=torch_dtype(b.dtype), device=self.device)
            env[v.buf] = base
        dt = torch_dtype(v.dtype)
        if base.dtype != dt:
            base = base.view(dt)
        return torch.as_strided(base, tuple(ev(d, binds) for d in v.shape), tuple(ev(s, binds) for s in v.strides),
                                base.storage_offset() + ev(v.offset, binds))

    def _inputs(self, flat) -> tuple[dict, dict]:
        prog = self.program
        if len(flat) != len(prog.inputs):
            raise InputError(f"{prog.name}: expected {len(prog.inputs)} input tensors, got {len(flat)}")
        env = dict(self.static)
        shapes = []
        tensors = []
        dev = self.device.type
        for (name, bname, want, rank), t in zip(self._in_specs, flat):
            if not isinstance(t, torch.Tensor):
                t = torch.as_tensor(np.asarray(t))
            if t.dtype != want:
                if t.dtype in (torch.int32, torch.int64) and want in (torch.int32, torch.int64):
                    t = t.to(want)
                else:
                    raise InputError(f"input {name!r}: dtype {t.dtype}, expected {want}")
            if t.dim() != rank:
                raise InputError(f"input {name!r}: rank {t.dim()}, expected {rank}")
            if t.device.type != dev:
                t = t.to(self.device)
            if not t.is_contiguous():
                t = t.contiguous()
            env[bname] = t
            shapes.append(t.shape)
            tensors.append(t)
        binds = prog.bind(shapes)
        for k, axis, d in self._shape_checks:
            if shapes[k][axis] != ev(d, binds):   # e.g. offsets of another batch: kernels would read past the end
                name, bname = prog.inputs[k]
                shape = tuple(shapes[k])
                want = tuple(ev(x, binds) for x in prog.buffers[bname].shape)
                dims = ", ".join(str(x) for x in prog.buffers[bname].shape)
                raise InputError(f"input {name!r}: shape {shape}, expected [{dims}] = {want}")
        if self.check:
            self._check_offset_ends(tensors)
        return env, binds

    def _check_offset_ends(self, tensors: list) -> None:
        """offsets[0] == 0 and (with include_last_offset) offsets[-1] == len(indices): the kernels see each
        bag's own bounds only, so an offsets list ending early would silently drop the last ids."""
        for f in self.features:
            idx, off = tensors[f["indices"]], tensors[f["offsets"]]
            if off.dim() != 1 or idx.dim() != 1:
                continue                      # the rank checks of _inputs name the input
            n = off.shape[0]
            ends = off[[0, -1]].tolist() if n else [None, None]
            check_offset_ends(f["feature"], bool(f["include_last_offset"]), n, ends[0], ends[1], idx.shape[0])

    def _ptrtable_rows(self, b, env: dict, binds: dict, out: np.ndarray | None = None) -> torch.Tensor:
        """A pointer table's rows on the host: (ids, offsets, per-sample weights) addresses and id count."""
        rows = out if out is not None else np.empty((len(b.rows), 4), np.int64)
        for r, (idx, off, psw, nnz) in enumerate(b.rows):
            rows[r, 0] = self._address(env, binds, idx)
            rows[r, 1] = self._address(env, binds, off)
            rows[r, 2] = self._address(env, binds, psw) if psw is not None else 0
            rows[r, 3] = ev(nnz, binds)
        return torch.from_numpy(rows)

    def _address(self, env: dict, binds: dict, v: View) -> int:
        base = env.get(v.buf)
        if base is None or self.program.buffers[v.buf].kind != INPUT:
            return self._tensor(env, binds, v).data_ptr()
        return base.data_ptr() + ev(v.offset, binds) * ITEMSIZE[v.dtype]

    def _ptrtables(self, env: dict, binds: dict) -> None:
        for b in self.program.buffers.values():
            if b.kind == PTRTABLE:
                env[b.name] = self._ptrtable_rows(b, env, binds).to(self.device)
            elif b.kind == ERRFLAG:
                env[b.name] = torch.full(tuple(b.shape), INT32_MAX, dtype=torch.int32, device=self.device)

    def _launch(self, s: Launch, env: dict, binds: dict) -> None:
        b = ev(s.batch, binds)
        variants = s.interp if (self.interpret and self.interp_tiles and s.interp) else s.variants
        var = next(v for v in variants if v.max_batch is None or b <= v.max_batch)
        grid = tuple(-(-ev(e, binds) // blk) for e, blk in var.grid)
        if min(grid) <= 0:
            return
        args = [self._tensor(env, binds, a.view) if a.kind == "ptr" else int(ev(a.expr, binds)) for a in s.args]
        self.fns[s.kernel][grid](*args, **var.constexprs, num_warps=var.num_warps, num_stages=var.num_stages)

    def _torch(self, s, env: dict, binds: dict) -> None:
        ins = [self._tensor(env, binds, v) if v is not None else None for v in s.inputs]
        jag = [[self._tensor(env, binds, j[0]), self._tensor(env, binds, j[1])] if j else None for j in s.jagged]
        if s.node:
            res = run_node(self.graph.node(s.node), ins, jag, binds, self.device, self.graph)
        else:
            res = ins[0]
        self._tensor(env, binds, s.out).copy_(res)

    def _raise_errors(self, env: dict, binds: dict) -> None:
        err = env[self.program.err_buffer].cpu()
        if int(err.min()) == INT32_MAX:
            return
        for e in self.program.errors:
            pos, bag = int(err[2 * e.slot]), int(err[2 * e.slot + 1])
            if bag == INT32_MAX and pos == INT32_MAX:
                continue
            # the kernels flag a slot; the host names the first problem exactly as xrec.runtime.validate does
            flat = [env[b].cpu().numpy() for _, b in self.program.inputs]
            for f in self.features:
                check_feature(f, flat)
            if bag != INT32_MAX:
                raise InputError(f"feature {e.feature!r}: the offsets of bag {bag} are invalid (they must start "
                                 f"at 0, never decrease, and end at len(indices))")
            v = int(self._tensor(env, binds, e.indices)[pos])
            raise InputError(f"feature {e.feature!r}: index {v} at position {pos} is out of range for its "
                             f"table of {e.num_rows} rows")

    # ------------------------------------------------------------------ call
    def __call__(self, *flat) -> list[torch.Tensor]:
        env, binds = self._inputs(flat)
        if self.cuda_graphs:
            with self._graph_lock:
                outs = self._replay(env, binds)
            if outs is not None:
                return outs
        self._ptrtables(env, binds)
        guard = np.errstate(all="ignore") if self.interpret else contextlib.nullcontext()
        with guard, torch.no_grad():
            for s in self.program.steps:
                if isinstance(s, Launch):
                    self._launch(s, env, binds)
                else:
                    self._torch(s, env, binds)
        if self.check:
            self._raise_errors(env, binds)
        return [self._tensor(env, binds, v).contiguous() for v in self.program.outputs]


    # ------------------------------------------------------------------ CUDA graphs
    def _replay(self, env: dict, binds: dict) -> list[torch.Tensor] | None:
        """Run the program by replaying a captured CUDA graph; None when graphs cannot serve this call.

        A graph bakes in kernel arguments, grids, tile variants and buffer addresses, so it is keyed
        by the values of the symbols those depend on (``_baked``: the batch for the zoo models; an id
        count only when some launch's arguments depend on it). Ids, offsets and per-sample weights
        reach the embedding kernels through pointer tables, which are device data: each call writes
        its tensors' addresses and id counts there, so one graph serves every id count of its batch.
        Inputs whose addresses are baked (dense features) are copied into the graph's own buffers.
        """
        key = tuple(binds[s] for s in self._baked_syms)
        rep = self._graphs.get(key)
        if rep is None:
            try:
                rep = self._capture(env, binds)
            except Exception as e:      # e.g. a torch step that synchronizes: run without graphs from now on
                self.cuda_graphs = False
                self.graph_error = f"{type(e).__name__}: {e}"
                say(f"triton: CUDA graph capture failed ({self.graph_error}); running launch by launch")
                return None
            self._graphs[key] = rep
            while len(self._graphs) > self.max_graphs:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(key)
        call_env = dict(rep["env"])
        for name in self._baked_inputs:
            call_env[name].copy_(env[name], non_blocking=True)
        for name, t in env.items():
            if name not in self._baked_inputs and name in self._input_bufs:
                call_env[name] = t
        rep["copied"].synchronize()          # the pinned tables of the last call have reached the device
        for name, (dev, host) in rep["ptrtables"].items():
            self._ptrtable_rows(self.program.buffers[name], call_env, binds, out=host.numpy())
            dev.copy_(host, non_blocking=True)
        rep["copied"].record()
        rep["graph"].replay()
        if self.check:
            torch.cuda.current_stream().synchronize()
            if int(rep["err_host"].min()) != INT32_MAX:
                self._raise_errors(call_env, binds)
        return [o.clone(memory_format=torch.contiguous_format) for o in rep["outputs"]]

    def _capture(self, env: dict, binds: dict) -> dict:
        prog = self.program
        # warm up outside the graph (Triton JIT-compiles on a kernel's first launch)
        warm = dict(env)
        self._ptrtables(warm, binds)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.no_grad():
            for s in prog.steps:
                self._launch(s, warm, binds) if isinstance(s, Launch) else self._torch(s, warm, binds)
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        cenv = dict(self.static)
        for name, t in env.items():
            if name in self._input_bufs:
                cenv[name] = t.clone() if name in self._baked_inputs else t
        ptrtables = {}
        for b in prog.buffers.values():
            if b.kind == PTRTABLE:
                host = self._ptrtable_rows(b, cenv, binds).pin_memory()
                ptrtables[b.name] = (host.to(self.device), host)
                cenv[b.name] = ptrtables[b.name][0]
            elif b.kind == ERRFLAG:
                cenv[b.name] = torch.empty(tuple(b.shape), dtype=torch.int32, device=self.device)
        err_host = None
        if prog.err_buffer:
            err_host = torch.empty(tuple(prog.buffers[prog.err_buffer].shape), dtype=torch.int32).pin_memory()
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.no_grad():
            if prog.err_buffer:
                cenv[prog.err_buffer].fill_(INT32_MAX)
            for s in prog.steps:
                self._launch(s, cenv, binds) if isinstance(s, Launch) else self._torch(s, cenv, binds)
            if err_host is not None:                  # the error flags come back inside the graph
                err_host.copy_(cenv[prog.err_buffer], non_blocking=True)
            outputs = [self._tensor(cenv, binds, v) for v in prog.outputs]
        copied = torch.cuda.Event()
        copied.record()
        return {"graph": graph, "env": cenv, "ptrtables": ptrtables, "outputs": outputs, "err_host": err_host,
                "copied": copied}


def _is_symbol(d) -> bool:
    return getattr(d, "is_Symbol", False)


def _baked(program: Program) -> tuple[tuple[str, ...], frozenset]:
    """The symbols a captured graph depends on, and the input buffers whose addresses it holds.

    Everything a launch or torch step receives directly is baked into a graph: its kernel's tile
    variant (by ``batch``), grid, integer arguments and the views it reads and writes (their
    buffers' sizes, offsets and strides). Pointer tables are not: they are device data, rewritten
    before each replay.
    """
    syms: set = set()
    inputs: set = set()

    def dims(*ds):
        for d in ds:
            if not isinstance(d, int):
                syms.update(str(x) for x in getattr(d, "free_symbols", ()))

    def view(v: View | None):
        if v is None:
            return
        dims(*v.shape, *v.strides, v.offset)
        b = program.buffers[v.buf]
        dims(*b.shape)
        if b.kind == INPUT:
            inputs.add(b.name)

    for s in program.steps:
        if isinstance(s, Launch):
            dims(s.batch)
            for a in s.args:
                view(a.view) if a.kind == "ptr" else dims(a.expr)
            for var in s.variants:
                dims(*(e for e, _ in var.grid))
        else:
            for v in s.inputs:
                view(v)
            for j in s.jagged:
                if j:
                    view(j[0])
                    view(j[1])
            view(s.out)
    for v in program.outputs:
        view(v)
    for b in program.buffers.values():
        if b.kind in (TEMP, ERRFLAG):
            dims(*b.shape)
    return tuple(sorted(syms)), frozenset(inputs)


def load_model(artifact, mode: str = "auto", cuda_graphs: bool = True) -> TritonModel:
    """The model of a triton artifact (path or ``xrec.artifact.Artifact``) as a callable on torch tensors."""
    from xrec.artifact import open_artifact
    if not hasattr(artifact, "manifest"):
        artifact = open_artifact(artifact)
    if artifact.target != "triton":
        raise ValueError(f"{artifact.path} was compiled for target {artifact.target!r}, not 'triton'")
    path = Path(artifact.path)
    prog = Program.from_json((path / "src" / "program.json").read_text())
    weights = np.fromfile(path / artifact.manifest["weights"]["file"], dtype=np.uint8)
    return TritonModel(prog, path / "src" / prog.kernels_file, weights, artifact.graph, mode=mode,
                       cuda_graphs=cuda_graphs, features=artifact.manifest["signature"]["features"])
