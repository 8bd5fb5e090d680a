"""Shared building blocks of the model zoo.

Everything a zoo model is made of lives here, so the family files
(``dlrm.py``, ``dcn.py``, ...) read like the papers they follow:

* :class:`FeatureSpec` / :class:`ZooSpec`: the frozen description of a model's
  inputs. The synthetic input generator (:mod:`xrec.zoo.inputs`) reads only
  this, never the module.
* :func:`make_embedding_bag` / :class:`EmbeddingBagList`: one
  ``nn.EmbeddingBag(include_last_offset=True)`` per sparse feature, called as
  ``eb(indices[f], offsets[f])`` (TorchRec KeyedJaggedTensor meaning).
* :func:`mlp`: ``Linear``/``ReLU`` stacks with an optional final activation.
* Deterministic initialisers that draw from one seeded ``torch.Generator``,
  in module order, so two builds with the same seed are bit-identical.

Weights are created *uninitialised* by the constructors (no default init
of large tables, which is what makes a full-size build take seconds, not
minutes) and filled by the model's ``reset_parameters(generator)``. The same
constructors run under ``with torch.device("meta")`` to count parameters of
a full-size model without allocating it (see :func:`xrec.zoo.param_bytes`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import nn

__all__ = [
    "FeatureSpec",
    "ZooSpec",
    "cap_rows",
    "make_embedding_bag",
    "EmbeddingBagList",
    "mlp",
    "linear_layers",
    "new_generator",
    "uniform_",
    "normal_",
    "xavier_normal_",
    "xavier_uniform_",
    "init_linear_torch_default_",
    "init_linear_dlrm_",
    "init_linear_xavier_",
    "init_embedding_uniform_sqrt_rows_",
    "module_param_bytes",
    "CRITEO_KAGGLE_ROWS",
    "NUM_CRITEO_DENSE",
]

# Criteo Kaggle (Display Advertising Challenge) distinct values per categorical
# feature C1..C26, as counted by facebookresearch/dlrm's preprocessing
# (``day_fea_count``). Families that model Criteo cap these to a size of
# their own choosing.
CRITEO_KAGGLE_ROWS: tuple[int, ...] = (
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683,
    8351593, 3194, 27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15,
    286181, 105, 142572,
)
NUM_CRITEO_DENSE = 13


# --------------------------------------------------------------------------
# Specs
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureSpec:
    """One sparse feature: a table of ``num_rows`` x ``dim`` pooled per bag.

    ``pooling`` is the mean number of ids per bag (1.0 means one-hot). For
    models with extra per-feature tables (the 1-dim first-order / wide tables
    of DeepFM and Wide&Deep) ``dim`` is the dimension of the main table; the
    extra tables have the same ``num_rows``.
    """

    name: str
    num_rows: int
    dim: int
    pooling: float

    def __post_init__(self) -> None:
        if self.num_rows < 1:
            raise ValueError(f"feature {self.name!r}: num_rows must be >= 1, got {self.num_rows}")
        if self.dim < 1:
            raise ValueError(f"feature {self.name!r}: dim must be >= 1, got {self.dim}")
        if not self.pooling > 0:
            raise ValueError(f"feature {self.name!r}: pooling must be > 0, got {self.pooling}")


@dataclass(frozen=True)
class ZooSpec:
    """What a zoo model consumes: ``model(dense, indices, offsets)``.

    ``dense`` is float32 ``[B, num_dense]``; ``indices[f]`` / ``offsets[f]``
    belong to ``features[f]``, in this order.
    """

    name: str
    num_dense: int
    features: tuple[FeatureSpec, ...]
    description: str

    @property
    def num_features(self) -> int:
        return len(self.features)

    def embedding_rows(self) -> int:
        """Total rows over the main tables (not counting extra 1-dim tables)."""
        return sum(f.num_rows for f in self.features)


def cap_rows(rows: Iterable[int], max_rows: int | None) -> tuple[int, ...]:
    """``min(r, max_rows)`` for each table size (no cap when ``max_rows`` is None)."""
    rows = tuple(int(r) for r in rows)
    if max_rows is None:
        return rows
    if int(max_rows) < 1:
        raise ValueError(f"max_rows must be >= 1 or None, got {max_rows}")
    return tuple(min(r, int(max_rows)) for r in rows)


# --------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------
_MODES = ("sum", "mean", "max")


def make_embedding_bag(num_rows: int, dim: int, mode: str = "sum") -> nn.EmbeddingBag:
    """An ``nn.EmbeddingBag`` taking offsets of length B+1, weights uninitialised.

    Passing ``_weight`` skips PyTorch's default N(0, 1) init of the table;
    the owning model fills it in ``reset_parameters``.
    """
    if mode not in _MODES:
        raise ValueError(f"unknown pooling mode {mode!r}; known: {', '.join(_MODES)}")
    weight = torch.empty(num_rows, dim)
    return nn.EmbeddingBag(
        num_rows, dim, mode=mode, include_last_offset=True, _weight=weight
    )


class EmbeddingBagList(nn.Module):
    """One embedding bag per feature; ``forward`` returns the pooled list.

    ``dims`` overrides the per-feature dim (e.g. ``1`` for first-order tables),
    ``modes`` gives the pooling mode per feature (default all ``"sum"``).
    """

    def __init__(
        self,
        features: Sequence[FeatureSpec],
        *,
        dim: int | None = None,
        modes: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if modes is None:
            modes = ["sum"] * len(features)
        if len(modes) != len(features):
            raise ValueError(f"{len(modes)} modes for {len(features)} features")
        self.feature_names = tuple(f.name for f in features)
        self.bags = nn.ModuleList(
            make_embedding_bag(f.num_rows, f.dim if dim is None else dim, m)
            for f, m in zip(features, modes)
        )

    def __len__(self) -> int:
        return len(self.bags)

    def forward(self, indices: list[torch.Tensor], offsets: list[torch.Tensor]) -> list[torch.Tensor]:
        return [bag(indices[f], offsets[f]) for f, bag in enumerate(self.bags)]


def mlp(sizes: Sequence[int], *, final: str | None = None) -> nn.Sequential:
    """``Linear(sizes[0], sizes[1]) -> ReLU -> ... -> Linear(sizes[-2], sizes[-1])``.

    ReLU sits between layers; ``final`` is the activation after the last
    layer: ``None``, ``"relu"`` or ``"sigmoid"``.
    """
    if len(sizes) < 2:
        raise ValueError(f"an MLP needs at least 2 sizes, got {list(sizes)}")
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        last = i == len(sizes) - 2
        if not last:
            layers.append(nn.ReLU())
        elif final == "relu":
            layers.append(nn.ReLU())
        elif final == "sigmoid":
            layers.append(nn.Sigmoid())
        elif final is not None:
            raise ValueError(f"unknown final activation {final!r}; known: relu, sigmoid, None")
    return nn.Sequential(*layers)


def linear_layers(module: nn.Module) -> list[nn.Linear]:
    """All ``nn.Linear`` submodules, in registration order."""
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


# --------------------------------------------------------------------------
# Deterministic initialisation (all draws from one torch.Generator)
# --------------------------------------------------------------------------
def new_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``."""
    return torch.Generator(device="cpu").manual_seed(int(seed))


@torch.no_grad()
def uniform_(t: torch.Tensor, low: float, high: float, g: torch.Generator) -> torch.Tensor:
    return t.uniform_(low, high, generator=g)


@torch.no_grad()
def normal_(t: torch.Tensor, std: float, g: torch.Generator, mean: float = 0.0) -> torch.Tensor:
    return t.normal_(mean, std, generator=g)


def _fans(t: torch.Tensor) -> tuple[int, int]:
    fan_out, fan_in = t.shape[0], t.shape[1]  # nn.Linear weight is [out, in]
    return fan_in, fan_out


def xavier_normal_(t: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    fan_in, fan_out = _fans(t)
    return normal_(t, math.sqrt(2.0 / (fan_in + fan_out)), g)


def xavier_uniform_(t: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    fan_in, fan_out = _fans(t)
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -bound, bound, g)


def init_linear_torch_default_(lin: nn.Linear, g: torch.Generator) -> None:
    """PyTorch's ``nn.Linear.reset_parameters``: U(+-1/sqrt(fan_in)) for both."""
    bound = 1.0 / math.sqrt(lin.in_features)
    uniform_(lin.weight, -bound, bound, g)
    if lin.bias is not None:
        uniform_(lin.bias, -bound, bound, g)


def init_linear_dlrm_(lin: nn.Linear, g: torch.Generator) -> None:
    """facebookresearch/dlrm ``create_mlp``: W ~ N(0, sqrt(2/(m+n))), b ~ N(0, sqrt(1/m))."""
    m, n = lin.out_features, lin.in_features
    normal_(lin.weight, math.sqrt(2.0 / (m + n)), g)
    if lin.bias is not None:
        normal_(lin.bias, math.sqrt(1.0 / m), g)


def init_linear_xavier_(lin: nn.Linear, g: torch.Generator, *, normal: bool = False) -> None:
    """Glorot (Keras/TF default) kernel, zero bias."""
    (xavier_normal_ if normal else xavier_uniform_)(lin.weight, g)
    if lin.bias is not None:
        with torch.no_grad():
            lin.bias.zero_()


def init_embedding_uniform_sqrt_rows_(bag: nn.EmbeddingBag, g: torch.Generator) -> None:
    """U(-sqrt(1/rows), sqrt(1/rows)): facebookresearch/dlrm and TorchRec's default."""
    bound = math.sqrt(1.0 / bag.num_embeddings)
    uniform_(bag.weight, -bound, bound, g)


def module_param_bytes(module: nn.Module) -> int:
    """Bytes of all parameters and buffers (works on meta-device modules)."""
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)
