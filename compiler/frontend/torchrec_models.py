"""TorchRec models: ``KeyedJaggedTensor`` inputs flattened at the boundary into per-feature jagged inputs.

xrec's IR, C ABI and server take one ``values`` (ids) and one ``offsets`` (B+1, include_last_offset) tensor per
sparse feature. A TorchRec model takes a ``KeyedJaggedTensor`` (KJT): all features' ids in one tensor. At
compile time xrec traces a wrapper (``Boundary``) whose inputs are the flat per-feature tensors, in the KJT's
key order, and which builds, inside the trace, a real KJT over them whose per-key view (``to_dict()``, what
``EmbeddingBagCollection`` reads) is those same tensors: the traced graph holds one
``embedding_bag(values_k, offsets_k)`` per feature, as a model written with ``nn.EmbeddingBag`` would.

A KJT in the example inputs becomes, in the compiled signature, ``(values, offsets)`` (or ``(values, offsets,
weights)`` for a weighted KJT): lists of one tensor per key, named ``<arg>.values[<key>]``,
``<arg>.offsets[<key>]``, ``<arg>.weights[<key>]``. The compiled model accepts the same KJT
(``flatten_call``) or those flat tensors. Outputs keep their structure (a ``KeyedTensor``, a dict, a tensor).

This module imports torchrec only when a model or input comes from it (``sys.modules``): plain models never
pay for it.
"""
from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any

import torch
from torch.utils import _pytree as pytree

from .errors import FrontendError

# graph metadata: per KJT input, in tree order: (keys, weighted, path): path locates it in (args, kwargs)
META_KEY = "torchrec_kjt"
INSTALL = ("bash scripts/setup.sh (or: pip install fbgemm-gpu-cpu==1.8.0 && pip install --no-deps torchrec==1.8.0 "
           "&& pip install tensordict pyre-extensions tqdm torchmetrics==1.0.3)")


def _torchrec():
    """The torchrec module when the process already imported it (a TorchRec model or KJT exists), else None."""
    return sys.modules.get("torchrec")


def _kjt_type():
    tr = _torchrec()
    if tr is None:
        return None
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor
    return KeyedJaggedTensor


def is_kjt(x) -> bool:
    t = _kjt_type()
    return t is not None and isinstance(x, t)


def uses_torchrec(model: torch.nn.Module, args: tuple, kwargs: dict) -> bool:
    if _torchrec() is None:
        return False
    if any(is_kjt(x) for x in pytree.tree_leaves((args, kwargs), is_leaf=is_kjt)):
        return True
    return any(type(m).__module__.startswith("torchrec.") for m in model.modules())


# ---------------------------------------------------------------- what xrec does not take yet
def check_supported(model: torch.nn.Module) -> None:
    """FrontendError naming the first TorchRec module xrec cannot compile yet, and what to do instead."""
    for path, m in model.named_modules():
        where = f"{type(m).__module__}.{type(m).__name__} at {path or '<the model itself>'!r}"
        mod = type(m).__module__
        name = type(m).__name__
        if mod.startswith("torchrec.distributed"):
            raise FrontendError(
                f"{where} is a sharded TorchRec module (torchrec.distributed); xrec compiles the unsharded "
                "model for inference on one machine. Compile the model before DistributedModelParallel / "
                "sharding it (plain torchrec.EmbeddingBagCollection), or copy the sharded state into an "
                "unsharded model (model.load_state_dict of the gathered state dict).")
        if mod.startswith("torchrec.quant") or mod.startswith("torchrec.inference"):
            raise FrontendError(
                f"{where} is a TorchRec quantized inference module that xrec does not take yet (it takes "
                "TorchRec's quantized EmbeddingBagCollection). Compile the fp32 model (before "
                "quantize_inference_model) and let xrec quantize the tables: xrec.compile(model, inputs, "
                "quantize='int8') (or 'int4', 'fp16', a feature -> precision map).")
        if mod.startswith("torchrec.modules.feature_processor") or "FeatureProcess" in name \
                or name in ("PositionWeightedModule", "PositionWeightedModuleCollection"):
            raise FrontendError(
                f"{where} is a TorchRec feature processor, which xrec does not take yet. Compute the per-id "
                "weights outside the model and pass a weighted KeyedJaggedTensor "
                "(KeyedJaggedTensor(..., weights=w)) to an EmbeddingBagCollection(is_weighted=True).")
        if mod.startswith("torchrec.modules.embedding_modules") and name == "EmbeddingCollection":
            raise FrontendError(
                f"{where} is a TorchRec EmbeddingCollection (unpooled, per-id embeddings), which xrec does not "
                "take yet. Pooled features compile: use EmbeddingBagCollection (sum or mean pooling).")
        if mod.startswith("torchrec.") and name == "EmbeddingBagCollection":
            for table, bag in m.embedding_bags.items():
                if bag.weight.dtype != torch.float32:
                    raise FrontendError(
                        f"{where}: table {table!r} is {bag.weight.dtype} (EmbeddingBagConfig.data_type); xrec "
                        "takes fp32 TorchRec tables. Build it with DataType.FP32 and pass quantize='fp16' (or "
                        "'int8', 'int4') to xrec.compile.")


def _check_kjt(kjt, where: str, error=FrontendError) -> None:
    if kjt.variable_stride_per_key():
        raise error(f"{where}: a variable-batch KeyedJaggedTensor (VBE: stride_per_key_per_rank) is not "
                    "supported yet; pass every key with the same batch size (one length per sample, 0 for a "
                    "sample without ids)")
    if kjt.inverse_indices_or_none() is not None:
        raise error(f"{where}: a KeyedJaggedTensor with inverse_indices (deduplicated VBE batches) is not "
                    "supported yet; pass the full batch for every key")


# ---------------------------------------------------------------- KJT <-> per-feature tensors
def kjt_flat(kjt) -> tuple[list[torch.Tensor], ...]:
    """``(values, offsets)`` or ``(values, offsets, weights)``: lists of one tensor per key, in key order;
    offsets have B+1 entries (include_last_offset)."""
    # views of the KJT's own tensors (no split: KeyedJaggedTensor.to_dict() costs ~60 us a call)
    keys, batch = kjt.keys(), kjt.stride()
    ids, offs, w = kjt.values(), kjt.offsets(), kjt.weights_or_none()
    at = kjt.offset_per_key()
    values = [ids[at[i]:at[i + 1]] for i in range(len(keys))]
    offsets = [offs[i * batch:(i + 1) * batch + 1] - offs[i * batch] for i in range(len(keys))]
    if w is None:
        return values, offsets
    return values, offsets, [w[at[i]:at[i + 1]] for i in range(len(keys))]


def rebuild_kjt(keys: list[str], values, offsets, weights=None):
    """A real KeyedJaggedTensor over per-feature tensors, whose ``to_dict()`` gives those very tensors (so a
    traced EmbeddingBagCollection reads one (values, offsets) input pair per feature, with no split)."""
    from torchrec.sparse.jagged_tensor import JaggedTensor
    lengths = [o[1:] - o[:-1] for o in offsets]
    kjt = _traced_kjt_type()(
        keys=list(keys), values=torch.cat(list(values)), lengths=torch.cat(lengths),
        weights=torch.cat(list(weights)) if weights is not None else None,
        length_per_key=[v.shape[0] for v in values], stride=offsets[0].shape[0] - 1)
    kjt._jt_dict = {k: JaggedTensor(values=v, lengths=n, offsets=o, weights=None if weights is None else w)
                    for k, v, n, o, w in zip(keys, values, lengths, offsets,
                                             weights if weights is not None else offsets)}
    return kjt


_TRACED_KJT = []


def _traced_kjt_type():
    """A KeyedJaggedTensor whose ``kjt[key]`` is its per-key view (TorchRec computes it from the
    concatenated values, with ops that the per-feature inputs make unnecessary)."""
    if not _TRACED_KJT:
        from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

        class TracedKJT(KeyedJaggedTensor):
            def __getitem__(self, key: str):
                return self.to_dict()[key]

        _TRACED_KJT.append(TracedKJT)
    return _TRACED_KJT[0]


class Boundary(torch.nn.Module):
    """``model`` taking flat per-feature tensors where it takes KJTs (what xrec traces)."""

    def __init__(self, model: torch.nn.Module, spec, leaf_kinds: list, names: list[str] | None = None):
        super().__init__()
        self.model = model
        self._spec = spec              # (args, kwargs) with KJTs as leaves
        self._kinds = leaf_kinds       # per leaf: None (a tensor or other leaf) or (keys, weighted)
        if names:
            # forward(dense, features_values_user, ...): torch.export names its inputs, and xrec the id-count
            # symbols (N_features_values_user), after the parameters
            params = _identifiers(names)
            ns = {"_run": self._run}
            exec(f"def forward({', '.join(params)}):\n    return _run({', '.join(params)})\n", ns)  # noqa: S102
            self.forward = ns["forward"]

    def forward(self, *flat):
        return self._run(*flat)

    def _run(self, *flat):
        it = iter(flat)
        leaves = []
        for kind in self._kinds:
            if kind is None:
                leaves.append(next(it))
                continue
            keys, weighted = kind
            values = [next(it) for _ in keys]
            offsets = [next(it) for _ in keys]
            weights = [next(it) for _ in keys] if weighted else None
            leaves.append(rebuild_kjt(keys, values, offsets, weights))
        args, kwargs = pytree.tree_unflatten(leaves, self._spec)
        return self.model(*args, **kwargs)


def _arg_names(model, args, kwargs) -> dict:
    import inspect
    try:
        return dict(inspect.signature(model.forward).bind(*args, **kwargs).arguments)
    except (TypeError, ValueError):
        return {f"arg{i}": a for i, a in enumerate(args)} | dict(kwargs)


def prepare(model: torch.nn.Module, args: tuple, kwargs: dict):
    """What xrec traces for a TorchRec model: ``(boundary, flat_args, flat_names, feature_of, in_spec, meta)``.

    ``flat_args`` are the example inputs with every KJT replaced by its per-feature tensors; ``flat_names``
    their user-facing names; ``feature_of`` maps a values input's name to its feature (the KJT key);
    ``in_spec`` the structure the compiled model is called with (KJTs as ``(values, offsets[, weights])``);
    ``meta`` what the compiled model needs to take the KJT itself. TorchRec's quantized EBCs are traced as
    their tables converted to xrec's row formats (``torchrec_quant``)."""
    from .torchrec_quant import QuantizedBags, replace_quantized
    model = replace_quantized(model)
    check_supported(model)
    leaves, spec = pytree.tree_flatten((tuple(args), dict(kwargs)), is_leaf=is_kjt)
    # user-facing names: the model's parameter names, as the plain frontend names them
    named = _arg_names(model, args, kwargs)
    name_of_leaf: list[str] = []
    for path, _leaf in pytree.tree_flatten_with_path(named, is_leaf=is_kjt)[0]:
        k = pytree.keystr(path)
        head, _, rest = k.partition("]")
        name_of_leaf.append(head.strip("['") + rest)
    if len(name_of_leaf) != len(leaves):
        name_of_leaf = [f"input{i}" for i in range(len(leaves))]

    # per-id weights that no EmbeddingBagCollection reads (all unweighted) are not inputs of the compiled model
    ebcs = [m for m in model.modules()
            if isinstance(m, QuantizedBags)
            or (type(m).__name__ == "EmbeddingBagCollection" and type(m).__module__.startswith("torchrec."))]
    drop_weights = bool(ebcs) and not any(m.is_weighted() for m in ebcs)
    kinds, flat, names, feature_of, meta, shown = [], [], [], {}, [], []
    paths = [_path(kp) for kp, _ in pytree.tree_flatten_with_path((tuple(args), dict(kwargs)), is_leaf=is_kjt)[0]]
    for leaf, lname, path in zip(leaves, name_of_leaf, paths):
        if not is_kjt(leaf):
            kinds.append(None)
            flat.append(leaf)
            names.append(lname)
            shown.append(leaf)
            continue
        _check_kjt(leaf, f"input {lname!r}")
        keys = list(leaf.keys())
        parts = kjt_flat(leaf)
        if drop_weights:
            parts = parts[:2]
        weighted = len(parts) == 3
        kinds.append((keys, weighted))
        meta.append((tuple(keys), weighted, path))
        for part, field in zip(parts, ("values", "offsets", "weights")):
            for k, t in zip(keys, part):
                flat.append(t)
                names.append(f"{lname}.{field}[{k}]")
                if field == "values":
                    feature_of[names[-1]] = k
        shown.append(tuple(list(p) for p in parts))
        for k, v in zip(keys, parts[0]):
            if v.shape[0] < 2:
                raise FrontendError(
                    f"input {lname!r}: key {k!r} has {v.shape[0]} id(s) in the example KeyedJaggedTensor; trace "
                    "with at least 2 ids per key and a batch of at least 2 (torch.export fixes sizes 0 and 1 "
                    "to constants, and xrec compiles one artifact for every batch and id count)")
    in_spec = pytree.tree_structure(pytree.tree_unflatten(shown, spec))
    return Boundary(model, spec, kinds, names), tuple(flat), names, feature_of, in_spec, meta


def _identifiers(names: list[str]) -> list[str]:
    """Distinct Python identifiers for input names: 'features.values[user]' -> 'features_values_user'."""
    import keyword
    import re
    out, seen = [], set()
    for n in names:
        p = re.sub(r"\W+", "_", n).strip("_") or "input"
        if p[0].isdigit() or keyword.iskeyword(p) or p in ("self", "_run"):
            p = "in_" + p
        q, k = p, 1
        while q in seen:
            k += 1
            q = f"{p}_{k}"
        seen.add(q)
        out.append(q)
    return out


@contextlib.contextmanager
def quiet_logs():
    """Without the warnings TorchRec's own code logs while xrec traces it, which are not the user's to act on:
    "non-strict torch.export KJT to_dict ... slow" (on the root logger; xrec's KJT hands over its per-key
    view, nothing is split) and torch.fx's "is_fx_tracing will return true ..." (TorchRec calls it).
    XREC_VERBOSE=1 shows them."""
    from ..config import knobs
    if knobs.verbose:
        yield
        return
    loggers = [logging.getLogger(), logging.getLogger("torch.fx._symbolic_trace")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _path(keypath) -> tuple:
    """A pytree key path as plain ints (sequence positions) and strings (dict keys)."""
    out = []
    for e in keypath:
        if isinstance(e, pytree.SequenceKey):
            out.append(int(e.idx))
        elif isinstance(e, pytree.MappingKey):
            out.append(e.key)
        else:
            out.append(None)        # inside another container type: not rebuilt by rebuild_call
    return tuple(out)


# ---------------------------------------------------------------- calling a compiled TorchRec model
def flatten_call(args: tuple, kwargs: dict, meta: list, error):
    """``(args, kwargs)`` with every KJT replaced by its ``(values, offsets[, weights])`` lists, checked
    against the keys the model was compiled with (``error``: the exception type to raise)."""
    if _torchrec() is None:
        return args, kwargs
    seen = [0]

    def conv(x):
        if not is_kjt(x):
            return x
        k = seen[0]
        seen[0] += 1
        if k >= len(meta):
            raise error(f"called with more KeyedJaggedTensors than the {len(meta)} the model was compiled with")
        want_keys, want_weighted = list(meta[k][0]), bool(meta[k][1])
        _check_kjt(x, f"KeyedJaggedTensor input {k}", error)
        if list(x.keys()) != want_keys:
            raise error(f"KeyedJaggedTensor input {k} has keys {list(x.keys())}; the model was compiled with "
                        f"{want_keys} (same keys, same order)")
        parts = kjt_flat(x)
        if want_weighted and len(parts) == 2:
            raise error(f"KeyedJaggedTensor input {k} has no weights; the model was compiled with a weighted "
                        "KJT (per-id weights)")
        if not want_weighted and len(parts) == 3:
            parts = parts[:2]      # unweighted model: the weights are not read (as in TorchRec eager)
        return tuple(list(p) for p in parts)

    return pytree.tree_map(conv, (tuple(args), dict(kwargs)), is_leaf=is_kjt)


def ensure_pytree_types(spec_text: str) -> None:
    """Import torchrec when a saved output spec names its types (KeyedTensor), so that it loads."""
    if spec_text and "KeyedTensor" in spec_text and _torchrec() is None:
        try:
            import torchrec  # noqa: F401
        except ImportError as e:
            raise FrontendError(f"this artifact returns a TorchRec KeyedTensor; install torchrec: {INSTALL}") from e


def rebuild_call(args: tuple, kwargs: dict, meta: list) -> tuple[tuple, dict]:
    """The inverse of ``flatten_call``: ``(args, kwargs)`` of the compiled signature (per-feature lists where
    the model takes a KJT) with those lists made KeyedJaggedTensors again, to call the TorchRec model itself
    (``xrec check`` compares the two on random inputs drawn over the compiled signature)."""
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    def make(keys, weighted):
        def build(parts):
            values, offsets = list(parts[0]), list(parts[1])
            lengths = [o[1:] - o[:-1] for o in offsets]
            return KeyedJaggedTensor.from_lengths_sync(
                keys=list(keys), values=torch.cat(values), lengths=torch.cat(lengths),
                weights=torch.cat(list(parts[2])) if weighted else None)
        return build

    tree = (tuple(args), dict(kwargs))
    for keys, weighted, path in meta:
        if None in path:
            continue
        tree = _replace(tree, tuple(path), make(keys, weighted))
    return tree


def _replace(obj, path: tuple, fn):
    if not path:
        return fn(obj)
    head, rest = path[0], path[1:]
    if isinstance(obj, dict):
        return {k: (_replace(v, rest, fn) if k == head else v) for k, v in obj.items()}
    items = [(_replace(v, rest, fn) if i == head else v) for i, v in enumerate(obj)]
    return type(obj)(items) if isinstance(obj, list) else tuple(items)
