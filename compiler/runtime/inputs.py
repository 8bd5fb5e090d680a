"""Random inputs for any compiled signature (used where no zoo generator applies)."""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Op
from ..ir.types import eval_dim


def random_flat_inputs(g: Graph, features: list[dict], batch: int, seed: int = 0,
                       mean_ids: float = 3.0) -> list[np.ndarray]:
    """Flat inputs for ``g`` at ``batch``: normal dense values, jagged features with some empty bags."""
    rng = np.random.default_rng(seed)
    ins = g.input_nodes
    arrays: list[np.ndarray | None] = [None] * len(ins)
    binds = {"B": batch}
    for f in features:
        if f["offsets"] is None or f["indices"] is None:
            continue
        lengths = rng.poisson(mean_ids, size=batch)
        lengths[rng.random(batch) < 0.1] = 0
        off = np.concatenate([[0], np.cumsum(lengths)]) if f["include_last_offset"] \
            else np.concatenate([[0], np.cumsum(lengths)[:-1]])
        rows = f["num_rows"] or 1
        idx = rng.integers(0, rows, size=int(lengths.sum()))
        io, oo = ins[f["indices"]], ins[f["offsets"]]
        arrays[f["indices"]] = idx.astype(io.type.dtype.to_numpy())
        arrays[f["offsets"]] = off.astype(oo.type.dtype.to_numpy())
        for d, v in ((io.type.shape[0], len(idx)),):
            if not isinstance(d, int):
                for s in d.free_symbols:
                    binds.setdefault(s.name, v)
    for k, n in enumerate(ins):
        if arrays[k] is not None:
            continue
        shape = tuple(eval_dim(d, binds) for d in n.type.shape)
        if n.type.dtype.is_float:
            arrays[k] = rng.standard_normal(shape).astype(n.type.dtype.to_numpy())
        else:
            arrays[k] = rng.integers(0, 2, size=shape).astype(n.type.dtype.to_numpy())
    return arrays


def random_args(compiled):
    """``make(batch, seed) -> args`` drawing random inputs over a compiled model's signature, shaped
    like the model's own call (for models with no input generator of their own)."""
    import torch
    from torch.utils import _pytree as pytree
    spec = pytree.treespec_loads(compiled.graph.in_spec)
    feats = compiled.manifest["signature"]["features"]

    def make(batch: int, seed: int = 0) -> tuple:
        flat = [torch.from_numpy(a) for a in random_flat_inputs(compiled.graph, feats, batch, seed=seed)]
        args, kwargs = pytree.tree_unflatten(flat, spec)
        kjts = compiled.graph.meta_get("torchrec_kjt")
        if kjts:        # a TorchRec model takes KeyedJaggedTensors where the compiled signature has lists
            from ..frontend.torchrec_models import rebuild_call
            args, kwargs = rebuild_call(args, kwargs, kjts)
        return args
    return make
