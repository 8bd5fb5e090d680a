"""torch.export -> xrec IR.

``import_model(model, example_inputs)`` traces the model with the batch dim
and every jagged length dynamic, lowers each aten op through the rules table
(aten_rules.py), and returns a verified ``Graph`` whose symbols are ``B`` (the
batch) and ``N_<input>`` (the ids of each sparse feature). The graph's metadata
records the pooling statistics of each sparse feature measured on the example
inputs (``xrec.ir.stats``, key ``"pooling"``).
"""
from __future__ import annotations

import inspect
import operator
import warnings
from typing import Any, Sequence

import numpy as np
import sympy
import torch
from torch.utils import _pytree as pytree

from ..ir import BATCH, Graph, GraphBuilder, Op, TensorType, sym, verify
from ..ir.stats import record_pooling
from ..ir.types import DType, canon_dim, dims_equal
from .aten_rules import PY_RULES, RULES
from .context import Ctx
from .errors import FrontendError, user_source_line

# embedding-bag ops: positions of (indices, offsets, per_sample_weights, include_last_offset) in their arguments
# (None: not an argument; xrec::rowwise_embedding_bag, TorchRec's quantized tables, always includes the last offset)
_EB_ARGS = {"aten::embedding_bag": (1, 2, 6, 7), "aten::_embedding_bag": (1, 2, 6, 7),
            "aten::_embedding_bag_forward_only": (1, 2, 6, 7), "xrec::rowwise_embedding_bag": (1, 2, 3, None)}


def _packet_name(target) -> str:
    """'aten::linear', or the op's own namespace ('xrec::rowwise_embedding_bag')."""
    p = getattr(target, "_overloadpacket", None)
    if p is None:
        return str(target)
    qualified = getattr(p, "_qualified_op_name", "")
    return qualified if "::" in qualified else f"aten::{p.__name__}"


def _bag_args(n):
    """(indices, offsets, per_sample_weights, include_last_offset) of an embedding-bag fx node, else None."""
    pos = _EB_ARGS.get(_packet_name(n.target)) if n.op == "call_function" else None
    if pos is None:
        return None
    at = lambda i: n.args[i] if i is not None and len(n.args) > i else None  # noqa: E731
    last = True if pos[3] is None else bool(at(pos[3]))
    return at(pos[0]), at(pos[1]), at(pos[2]), last


def _flat_input_names(model: torch.nn.Module, args: tuple, kwargs: dict) -> list[str]:
    """User-facing names of the flattened inputs: 'dense', 'indices[3]', ..."""
    try:
        bound = inspect.signature(model.forward).bind(*args, **kwargs)
        tree = dict(bound.arguments)
    except (TypeError, ValueError):
        tree = {f"arg{i}": a for i, a in enumerate(args)} | dict(kwargs)
    names = []
    for path, leaf in pytree.tree_flatten_with_path(tree)[0]:
        if isinstance(leaf, torch.Tensor):
            k = pytree.keystr(path)
            # "['indices'][3]" -> "indices[3]"
            head, _, rest = k.partition("]")
            names.append(head.strip("['") + rest)
    return names


def _export(model, args, kwargs, shown=None):
    """``shown``: the model errors name (the user's, where xrec traces a wrapper around it)."""
    def dyn(x):
        return {0: torch.export.Dim.AUTO} if isinstance(x, torch.Tensor) and x.dim() >= 1 else None
    is_leaf = lambda x: isinstance(x, torch.Tensor)  # noqa: E731
    try:
        bound = inspect.signature(model.forward).bind(*args, **kwargs)
        dynamic = {k: pytree.tree_map(dyn, v, is_leaf=is_leaf) for k, v in bound.arguments.items()}
    except (TypeError, ValueError):
        dynamic = pytree.tree_map(dyn, args, is_leaf=is_leaf) if not kwargs else None
    try:
        return _quiet_export(model, args, kwargs, dynamic)
    except Exception as e:  # torch's own message is long; keep it chained, say what xrec tried
        raise FrontendError(_export_failure(shown if shown is not None else model, e)) from e


def _quiet_export(model, args, kwargs, dynamic):
    """torch.export.export, without the partial FX graph torch prints to stderr when it fails (and
    its symbolic-shapes warnings); under XREC_VERBOSE everything torch prints is shown."""
    import contextlib
    import io
    import logging
    import sys
    from ..config import knobs
    if knobs.verbose:
        return torch.export.export(model, args, kwargs, dynamic_shapes=dynamic, strict=False)
    shapes_log = logging.getLogger("torch.fx.experimental.symbolic_shapes")
    level = shapes_log.level
    shapes_log.setLevel(logging.ERROR)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return torch.export.export(model, args, kwargs, dynamic_shapes=dynamic, strict=False)
    except Exception as e:
        graph = getattr(e, "partial_fx_graph", None)
        text = err.getvalue()
        if graph is not None:
            text = text.replace(f"{graph}\n", "").replace(str(graph), "")
        err = io.StringIO(text)
        raise
    finally:
        shapes_log.setLevel(level)
        if err.getvalue().strip():
            sys.stderr.write(err.getvalue())   # torch's warnings on success, anything else it printed


def _failing_user_line(e: Exception) -> str | None:
    """'file:line (`code`)' of the user's call torch names in its error ("The following call raised this error")."""
    lines = str(e).splitlines()
    for k, line in enumerate(lines):
        if line.strip().startswith("The following call raised this error"):
            for j in range(k + 1, len(lines)):
                s = lines[j].strip()
                if s.startswith('File "'):
                    try:
                        path = s.split('"')[1]
                        lineno = int(s.split(", line ")[1].split(",")[0])
                    except (IndexError, ValueError):
                        return None
                    code = lines[j + 1].strip() if j + 1 < len(lines) else ""
                    return f"{path}:{lineno} (`{code}`)"
    return None


def _export_failure(model, e: Exception) -> str:
    first = str(e).splitlines()[0] if str(e) else ""
    where = _failing_user_line(e)
    at = f" at {where}" if where else ""
    if "GuardOnDataDependentSymNode" in type(e).__name__ or "data-dependent" in first:
        return (f"torch.export failed on {type(model).__name__}{at}: Python control flow on a tensor's values "
                f"(an if/while on a tensor, bool(), .item()) ({type(e).__name__}: {first})\n"
                "xrec compiles one graph for every input, so a branch cannot depend on the data: compute both "
                "sides and pick with torch.where(cond, a, b) (or use torch.cond). XREC_VERBOSE=1 shows torch's "
                "partial graph and traceback.")
    return (f"torch.export failed on {type(model).__name__}{at}: {type(e).__name__}: {first}\n"
            "xrec traces with torch.export (batch dim and jagged lengths dynamic); "
            "make the model export-friendly (no data-dependent Python control flow, "
            "no .item()).")


def _decompose_unknown(ep):
    """Decompose composite ops no rule covers into ones that rules do cover."""
    from torch._decomp import core_aten_decompositions
    unknown = set()
    for n in ep.graph.nodes:
        if n.op == "call_function" and hasattr(n.target, "_overloadpacket"):
            if _packet_name(n.target) not in RULES:
                unknown.add(n.target)
    if not unknown:
        return ep
    table = core_aten_decompositions()
    decomp = {op: table[op] for op in unknown if op in table}
    if not decomp:
        return ep
    return _run_decompositions(ep, decomp)


def _symbol_names(ep, user_inputs: list[str], flat_names: list[str]) -> dict[str, sympy.Symbol]:
    """Map export's symbols (s37, ...) onto B and N_<input>."""
    by_node = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    roles: dict[str, str] = {}
    last_offset: dict[str, bool] = {}
    for n in ep.graph.nodes:
        bag = _bag_args(n)
        if bag is not None:
            idx, off, _, last = bag
            roles[idx.name] = "indices"
            if off is not None:
                roles[off.name] = "offsets"
                last_offset[off.name] = last
    out: dict[str, sympy.Expr] = {}

    def shape_of(name):
        v = by_node[name].meta.get("val")
        return tuple(v.shape) if isinstance(v, torch.Tensor) else ()

    def expr(d):
        return d.node.expr if isinstance(d, torch.SymInt) else None

    # batch: from offsets (B+1 entries with include_last_offset, else B), else the first dynamic
    # dim 0 of an input. export writes offsets as s+1 when it has tied them to another input's batch
    # s, and as a fresh s when nothing else carries the batch (a model with no dense input).
    for name in user_inputs:
        if roles.get(name) == "offsets":
            e = expr(shape_of(name)[0])
            if e is None or not e.free_symbols:
                continue
            s = sorted(e.free_symbols, key=lambda x: x.name)[0]
            if s.name in out:
                continue
            plain = isinstance(e, sympy.Symbol)
            out[s.name] = BATCH + 1 if (plain and last_offset.get(name, True)) else BATCH
    if not any(BATCH in v.free_symbols for v in out.values()):
        for name in user_inputs:
            sh = shape_of(name)
            if sh and expr(sh[0]) is not None and isinstance(expr(sh[0]), sympy.Symbol):
                out[expr(sh[0]).name] = BATCH
                break
    for name, pretty in zip(user_inputs, flat_names):
        sh = shape_of(name)
        if sh and expr(sh[0]) is not None:
            for s in expr(sh[0]).free_symbols:
                if s.name not in out:
                    out[s.name] = sym("N_" + name) if roles.get(name) == "indices" else sym("S_" + name)
    return out


def _run_decompositions(ep, table: dict):
    with warnings.catch_warnings():
        # torch 2.13's run_decompositions deep-copies its own LeafSpec and warns about it: not the user's to fix
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                category=FutureWarning)
        return ep.run_decompositions(table)


def import_model(model: torch.nn.Module, example_inputs: Sequence[Any] | tuple,
                 example_kwargs: dict | None = None, name: str | None = None) -> Graph:
    """Trace ``model`` on ``example_inputs`` and return verified xrec IR."""
    args = tuple(example_inputs)
    kwargs = dict(example_kwargs or {})
    model = model.eval()
    name = name or getattr(model, "xrec_name", None) or type(model).__name__
    from . import torchrec_models
    if torchrec_models.uses_torchrec(model, args, kwargs):
        return _import_torchrec(model, args, kwargs, name)
    ep = _export(model, args, kwargs)
    ep = _run_decompositions(ep, {})
    ep = _decompose_unknown(ep)
    g = import_exported(ep, name, _flat_input_names(model, args, kwargs), traced_by_xrec=True)
    return _record_example_pooling(g, (args, kwargs))


def _import_torchrec(model, args: tuple, kwargs: dict, name: str) -> Graph:
    """A TorchRec model: KeyedJaggedTensor inputs become per-feature (values, offsets) inputs
    (``torchrec_models``); the graph's in_spec is the call with KJTs as those lists."""
    from . import torchrec_models
    with torchrec_models.quiet_logs():
        boundary, flat, names, feature_of, in_spec, meta = torchrec_models.prepare(model, args, kwargs)
        ep = _export(boundary, flat, {}, shown=model)
    ep = _run_decompositions(ep, {})
    ep = _decompose_unknown(ep)
    g = import_exported(ep, name, names, traced_by_xrec=True, feature_of=feature_of)
    g = g.with_(in_spec=pytree.treespec_dumps(in_spec),
                meta=tuple((k, v) for k, v in g.meta if k != torchrec_models.META_KEY)
                + ((torchrec_models.META_KEY, tuple(meta)),))
    return _record_example_pooling(g, (flat, {}))


def _record_example_pooling(g: Graph, example) -> Graph:
    """``g`` with the pooling statistics of its sparse features measured on ``example`` (args, kwargs)."""
    flat = [t.detach().cpu().numpy() for t in pytree.tree_leaves(example) if isinstance(t, torch.Tensor)]
    if not flat or len(flat) != len(g.input_nodes):
        return g
    return record_pooling(g, [flat])


def import_exported(ep, name: str, flat_names: list[str] | None = None, *, traced_by_xrec: bool = False,
                    feature_of: dict[str, str] | None = None) -> Graph:
    """Verified xrec IR of an ExportedProgram: one xrec traced itself (``traced_by_xrec``), or one the user
    exported (a ``.pt2`` or an ``ExportedProgram`` given to ``xrec.compile``), whose sizes must be dynamic."""
    sig = ep.graph_signature
    user_inputs = list(sig.user_inputs)
    flat_names = flat_names or user_inputs
    if len(flat_names) != len(user_inputs):
        flat_names = user_inputs
    pretty = dict(zip(user_inputs, flat_names))
    symbols = _symbol_names(ep, user_inputs, flat_names)

    state = dict(ep.state_dict)
    consts = dict(getattr(ep, "constants", {}) or {})
    kind_of: dict[str, tuple[str, str]] = {}
    for spec in sig.input_specs:
        kind_of[spec.arg.name] = (spec.kind.name, spec.target or spec.arg.name)

    b = GraphBuilder(Graph(name=name, nodes=(), outputs=()))
    ctx = Ctx(b, {k: v for k, v in symbols.items()})
    ctx.feature_names = {}

    roles: dict[str, str] = {}
    for n in ep.graph.nodes:
        bag = _bag_args(n)
        if bag is not None:
            idx, off, psw, _ = bag
            roles[idx.name] = "indices"
            if off is not None:
                roles[off.name] = "offsets"
            if psw is not None:
                roles[psw.name] = "weights"

    for n in ep.graph.nodes:
        if n.op != "placeholder":
            continue
        kind, target = kind_of[n.name]
        val = n.meta.get("val")
        if kind == "USER_INPUT":
            if not isinstance(val, torch.Tensor):
                raise FrontendError(f"input {pretty[n.name]!r} is not a tensor ({type(val).__name__}); "
                                    "xrec models take tensors (and lists/tuples/dicts of tensors)")
            shape = tuple(ctx.dim(d) for d in val.shape)
            t = TensorType(shape, DType.from_torch(val.dtype))
            role = roles.get(n.name, "dense" if t.dtype.is_float else "other")
            vname = b.emit(Op.INPUT, (), t, {"name": pretty[n.name], "kind": role}, hint=n.name)
            ctx.env[n] = vname
            if role == "indices":
                ctx.feature_names[vname] = (feature_of or {}).get(pretty[n.name], pretty[n.name])
        else:
            if target in state:
                tensor = state[target]
            elif target in consts:
                tensor = consts[target]
            else:
                raise FrontendError(f"cannot find the value of {kind.lower()} {target!r}")
            if not isinstance(tensor, torch.Tensor):
                raise FrontendError(f"the model's {kind.lower()} {target!r} is a {type(tensor).__name__}, not a "
                                    "tensor (a random generator or an object made inside forward?); xrec "
                                    "compiles models whose constants are tensors")
            arr = tensor.detach().cpu()
            if arr.dtype == torch.bfloat16:
                raise FrontendError(f"parameter {target!r} is bfloat16; compile an fp32 model and use "
                                    "xrec's compression options instead")
            ctx.env[n] = b.add_param(target, arr.contiguous().numpy())

    output_node = None
    for n in ep.graph.nodes:
        if n.op == "placeholder":
            continue
        if n.op == "output":
            output_node = n
            break
        ctx.fx_node = n
        ctx.loc = user_source_line(n)
        ctx.env[n] = _lower_node(ctx, n)

    outs = []
    # the user's outputs only: export also returns the new values of parameters, buffers and inputs that
    # the model mutates in place (F.embedding's max_norm renormalises its weight), which an inference
    # artifact does not write back
    returned = list(pytree.tree_leaves(output_node.args[0]))
    specs = list(sig.output_specs)
    if len(specs) == len(returned):
        returned = [o for o, spec in zip(returned, specs) if spec.kind.name == "USER_OUTPUT"]
    for o in returned:
        v = ctx.env.get(o) if isinstance(o, torch.fx.Node) else None
        if not isinstance(v, str):
            raise FrontendError(f"model output {o} is not a tensor computed by the model")
        outs.append(v)

    g = b.finish(outputs=outs, dce=True,
                 in_spec=pytree.treespec_dumps(ep.call_spec.in_spec) if ep.call_spec.in_spec else "",
                 out_spec=pytree.treespec_dumps(ep.call_spec.out_spec) if ep.call_spec.out_spec else "")
    g = verify(g, "import")
    _check_dynamic(g, traced_by_xrec)
    example = getattr(ep, "example_inputs", None)      # a saved .pt2 keeps the inputs it was exported with
    return _record_example_pooling(g, example) if example is not None else g


def _map_arg(ctx: Ctx, v):
    if isinstance(v, torch.fx.Node):
        if v not in ctx.env:
            raise FrontendError(f"{ctx.loc}: value {v.name} used before it was computed")
        return ctx.env[v]
    if isinstance(v, (list, tuple)):
        return type(v)(_map_arg(ctx, x) for x in v)
    if isinstance(v, torch.SymInt):
        return ctx.dim(v)
    return v


def _lower_node(ctx: Ctx, n):
    if n.op != "call_function":
        raise FrontendError(f"{ctx.loc}: unsupported graph node kind {n.op!r}")
    target = n.target
    if target is operator.getitem:
        seq, i = _map_arg(ctx, n.args[0]), n.args[1]
        v = seq[i]
        if v is None and n.users:
            raise FrontendError(f"{ctx.loc}: uses output {i} of {n.args[0].name}, which xrec does not "
                                "compute (only the pooled embeddings of embedding_bag are supported)")
        return v
    if target in PY_RULES:
        return PY_RULES[target](*[_map_arg(ctx, a) for a in n.args])
    packet = _packet_name(target)
    if packet.startswith("aten::sym_constrain_range") or packet in ("aten::_assert_scalar",
                                                                   "aten::_assert_async"):
        return None
    if "sym_size" in str(target) or packet == "aten::sym_size":
        x = _map_arg(ctx, n.args[0])
        shape = ctx.type_of(x).shape
        return shape[n.args[1] % len(shape)]
    empty = _empty_result(ctx, n)
    if empty is not None:
        return empty
    fn = RULES.get(packet)
    if fn is None:
        raise FrontendError(
            f"unsupported op {packet} at {ctx.loc}\n"
            f"xrec supports: {', '.join(sorted(RULES))}.\n"
            "Rewrite that line with supported ops, or file an issue with the model.")
    schema = target._schema
    a: dict[str, Any] = {}
    for i, arg in enumerate(schema.arguments):
        if i < len(n.args):
            a[arg.name] = _map_arg(ctx, n.args[i])
        elif arg.name in n.kwargs:
            a[arg.name] = _map_arg(ctx, n.kwargs[arg.name])
        elif arg.has_default_value():
            a[arg.name] = arg.default_value
    for k, v in n.kwargs.items():
        a.setdefault(k, _map_arg(ctx, v))
    out = fn(ctx, a)
    _check_against_export(ctx, n, out)
    return out


def _empty_result(ctx: Ctx, n):
    """A node whose one tensor result has a zero-sized static dim: nothing to compute, a FULL of that
    shape (torch ops on empty tensors give empty tensors; the IR's ops need not special-case them)."""
    val = n.meta.get("val")
    if not isinstance(val, torch.Tensor) or not any(isinstance(d, int) and d == 0 for d in val.shape):
        return None
    try:
        t = TensorType(tuple(ctx.dim(d) for d in val.shape), DType.from_torch(val.dtype))
    except Exception:  # noqa: BLE001: a dtype xrec does not have: the op's rule says what it refuses
        return None
    v = 0.0 if t.dtype.is_float else False if t.dtype is DType.BOOL else 0
    return ctx.emit(Op.FULL, (), {"value": v}, hint="empty", type=t)


def _check_against_export(ctx: Ctx, n, out):
    val = n.meta.get("val")
    if isinstance(out, tuple):
        out, val = out[0], (val[0] if isinstance(val, (tuple, list)) else None)
    if not isinstance(out, str) or not isinstance(val, torch.Tensor):
        return
    t = ctx.type_of(out)
    want = tuple(ctx.dim(d) for d in val.shape)
    if len(want) != t.rank or not all(dims_equal(a, b) for a, b in zip(t.shape, want)):
        if any(isinstance(d, sympy.Expr) and any(f.func.__name__ in ("FloorDiv", "floor")
                                                  for f in d.atoms(sympy.Function)) for d in want):
            raise FrontendError(f"{ctx.loc}: {_packet_name(n.target)} gives {tuple(str(d) for d in want)}: it "
                                "divides a dynamic dim (torch rounds it down); xrec keeps the batch and id-count "
                                "dims whole")
        raise FrontendError(f"internal: {_packet_name(n.target)} at {ctx.loc} gives {t} in xrec "
                            f"but {tuple(str(d) for d in want)} in torch; please report")


def _check_dynamic(g: Graph, traced_by_xrec: bool = True):
    for n in g.nodes_of(Op.JAGGED):
        jt = n.type
        if not (isinstance(jt.batch, int) or isinstance(jt.nnz, int)):
            continue
        what = " and ".join(w for w, v in (("batch", jt.batch), ("id count", jt.nnz)) if isinstance(v, int))
        if traced_by_xrec:
            raise FrontendError(
                f"feature {n.attr('feature')!r}: torch.export specialised its {what} to a "
                "constant. Trace with an example batch of at least 2 and at least 2 ids per feature "
                "(xrec.zoo.example_inputs makes such inputs).")
        raise FrontendError(
            f"feature {n.attr('feature')!r}: the exported program was exported with a static {what} "
            f"(batch {jt.batch}, {jt.nnz} ids); xrec compiles one artifact for every batch and id count. "
            "Re-export with dynamic sizes: torch.export.export(model, args, dynamic_shapes=...) with "
            "torch.export.Dim('batch') on dense dim 0 and offsets dim 0 (batch + 1 with include_last_offset), "
            "and one Dim per feature on indices dim 0, or Dim.AUTO everywhere; README.md 'A .pt2 xrec "
            "accepts' has the snippet.")
