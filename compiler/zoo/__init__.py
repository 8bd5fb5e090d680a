"""xrec's model zoo: reference recommendation models with deterministic weights.

Every zoo model is called as ``model(dense, indices, offsets)``:

* ``dense``: float32 ``[B, num_dense]``;
* ``indices``: list with one 1-D int64 or int32 tensor per sparse feature;
* ``offsets``: list with one 1-D tensor per feature of length B+1, same dtype
  as its indices (TorchRec KeyedJaggedTensor meaning: bag b of feature f is
  ``indices[f][offsets[f][b]:offsets[f][b+1]]``);

and returns float32 ``[B, 1]`` probabilities. Each model carries
``model.xrec_spec`` (a :class:`ZooSpec`), from which :func:`make_inputs`
draws synthetic inputs. All models trace with ``torch.export`` with dynamic
batch and index lengths (see :func:`export_dynamic_shapes`).

>>> from xrec import zoo
>>> model = zoo.build("dlrm-small", max_rows=1000)
>>> out = model(*zoo.make_inputs(model, batch=4))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .common import FeatureSpec, ZooSpec, module_param_bytes, new_generator
from .dcn import DCNv2, dcn_v2_spec
from .deepfm import DeepFM, deepfm_spec
from .dlrm import DLRM, DLRMv2, dlrm_small_spec, dlrm_v2_spec
from .inputs import example_inputs, make_inputs, spec_of
from .two_tower import TwoTower, two_tower_spec
from .wide_deep import WideDeep, wide_deep_spec

__all__ = [
    "FeatureSpec",
    "ZooSpec",
    "list_models",
    "describe",
    "spec",
    "build",
    "param_bytes",
    "make_inputs",
    "example_inputs",
    "export_dynamic_shapes",
    "spec_of",
]


@dataclass(frozen=True)
class _Entry:
    name: str
    make_spec: Callable[[int | None], ZooSpec]
    make_model: Callable[[ZooSpec], nn.Module]


_REGISTRY: dict[str, _Entry] = {
    e.name: e
    for e in (
        _Entry("dcn-v2", dcn_v2_spec, DCNv2),
        _Entry("deepfm", deepfm_spec, DeepFM),
        _Entry("dlrm-small", dlrm_small_spec, DLRM),
        _Entry("dlrm-v2", dlrm_v2_spec, DLRMv2),
        _Entry("two-tower", two_tower_spec, TwoTower),
        _Entry("wide-deep", wide_deep_spec, WideDeep),
    )
}


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown zoo model {name!r}; known: {', '.join(list_models())}"
        ) from None


def list_models() -> list[str]:
    """Names of the built-in models, sorted."""
    return sorted(_REGISTRY)


def describe(name: str) -> str:
    """One-line description of a zoo model (paper, sizes, structure)."""
    return _entry(name).make_spec(None).description


def spec(name: str, *, max_rows: int | None = None) -> ZooSpec:
    """The model's :class:`ZooSpec`, without building it.

    ``max_rows`` caps every table; ``None`` means the model's default sizes
    (for ``dlrm-v2`` that is the documented 360,000-row cap).
    """
    return _entry(name).make_spec(max_rows)


def build(name: str, *, max_rows: int | None = None, seed: int = 0) -> nn.Module:
    """Build a zoo model in eval mode with weights drawn from ``torch.Generator(seed)``.

    Two builds with the same arguments are bit-identical. ``model.xrec_name``
    is set to ``name`` (the frontend names the imported graph after it).
    """
    entry = _entry(name)
    model = entry.make_model(entry.make_spec(max_rows))
    model.reset_parameters(new_generator(seed))
    model.xrec_name = name
    return model.eval()


def param_bytes(name: str, *, max_rows: int | None = None) -> int:
    """Bytes of the model's parameters and buffers, counted on the meta device.

    Nothing is allocated, so this is cheap even for full-size models.
    """
    entry = _entry(name)
    with torch.device("meta"):
        model = entry.make_model(entry.make_spec(max_rows))
    return module_param_bytes(model)


def export_dynamic_shapes(model_or_spec) -> dict:
    """``dynamic_shapes`` for ``torch.export.export(model, (dense, indices, offsets), ...)``.

    ``Dim.AUTO`` on the batch dim of ``dense`` and on the length of every
    ``indices[f]`` and ``offsets[f]``.
    """
    auto = torch.export.Dim.AUTO
    n = spec_of(model_or_spec).num_features
    return {
        "dense": {0: auto},
        "indices": [{0: auto} for _ in range(n)],
        "offsets": [{0: auto} for _ in range(n)],
    }
