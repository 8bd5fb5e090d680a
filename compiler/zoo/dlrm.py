"""DLRM family: ``dlrm-small`` and ``dlrm-v2``.

``dlrm-small`` follows facebookresearch/dlrm (``dlrm_s_pytorch.py``,
``DLRM_Net``) with ``--arch-interaction-op=dot`` and self-interaction off:

* 13 dense features -> bottom MLP 13-512-256-64, ReLU after every layer
  (``create_mlp`` with ``sigmoid_bot=-1``).
* 26 tables of dim 64, sum pooling. Sizes are the Criteo Kaggle vocabularies,
  floored at 10 rows, with the five largest hashed down to 1,000,000 /
  250,000 / 1,000,000 / 500,000 / 800,000 rows (C3, C4, C12, C16, C21):
  4,119,309 rows, 1,054,543,104 bytes of tables, ~0.98 GiB with the MLPs.
  Five features are multi-hot (mean ids per bag C3: 20, C4: 8, C12: 30,
  C16: 4, C24: 2), the rest one-hot.
* ``interact_features`` with ``interaction_op="dot"`` exactly as the
  reference: ``T = cat([x] + ly).view(B, -1, d)``, ``Z = bmm(T, T^T)``,
  ``Zflat = Z[:, li, lj]`` over the strict lower triangle (row-major, the
  reference's order), ``R = cat([x, Zflat])``: 64 + 27*26/2 = 415 features.
* top MLP 415-512-256-1, ReLU between, sigmoid at the end.
* init as ``create_mlp`` / ``create_emb``: W ~ N(0, sqrt(2/(m+n))),
  b ~ N(0, sqrt(1/m)), tables U(-sqrt(1/rows), sqrt(1/rows)).

``dlrm-v2`` follows the MLPerf Training/Inference DLRM-v2 reference, i.e.
TorchRec's ``DLRM_DCN`` (``torchrec/models/dlrm.py``) as configured by
``mlcommons/training/recommendation_v2/torchrec_dlrm``:

* bottom MLP 13-512-256-128, ReLU after every layer (TorchRec ``MLP``).
* 26 tables of dim 128 with MLPerf's sizes (Criteo 1TB, 40M-row hash cap)
  and multi-hot sizes as the mean pooling; sum pooling. MLPerf feeds a fixed
  number of ids per bag; the input generator here draws a Poisson number
  around it instead.
* ``InteractionDCNArch``: ``x0 = cat([bottom_out] + pooled)`` (27 * 128 =
  3456 features) through a 3-layer ``LowRankCrossNet`` of rank 512.
* over arch 3456-1024-1024-512-256-1, ReLU between, plus a sigmoid at the
  end (MLPerf applies it in the loss / at evaluation).
* init: tables U(-sqrt(1/rows), sqrt(1/rows)) and cross kernels
  Xavier-normal with zero bias, as TorchRec; the MLPs use facebookresearch/dlrm's
  init (as ``dlrm-small``) rather than PyTorch's default, which TorchRec
  uses: with PyTorch's default the five-layer over arch shrinks the logit so
  much that outputs vary by ~4e-4 across a batch (std), too little for
  numerical checks to see a wrong embedding; with this init the std is ~1e-2
  and zeroing one table moves outputs by ~2e-2.

The full MLPerf tables are ~97 GiB, so ``dlrm-v2`` caps every table at
``DLRM_V2_DEFAULT_MAX_ROWS`` = 360,000 rows unless ``max_rows`` says
otherwise: 8 tables hit the cap, 3,001,198 rows in all, 1,536,613,376 bytes
of tables plus 64,178,180 bytes of dense weights = 1,600,791,556 bytes
(1.49 GiB). Derivation: dense weights are 16,044,545 floats; the tables
below the cap hold 121,198 rows; 1.5 GiB leaves room for 8 * cap + 121,198
rows of 512 bytes, i.e. cap <= 362,397; rounded down to 360,000.
"""
from __future__ import annotations

import torch
from torch import nn

from .common import (
    CRITEO_KAGGLE_ROWS,
    NUM_CRITEO_DENSE,
    EmbeddingBagList,
    FeatureSpec,
    ZooSpec,
    cap_rows,
    init_embedding_uniform_sqrt_rows_,
    init_linear_dlrm_,
    linear_layers,
    mlp,
)
from .dcn import LowRankCrossNet

__all__ = [
    "DLRM",
    "DLRMv2",
    "dlrm_small_spec",
    "dlrm_v2_spec",
    "dot_interaction_indices",
    "DLRM_SMALL_ROWS",
    "DLRM_SMALL_POOLING",
    "MLPERF_DLRM_V2_ROWS",
    "MLPERF_DLRM_V2_POOLING",
    "DLRM_V2_DEFAULT_MAX_ROWS",
]

# ---------------------------------------------------------------- dlrm-small
_SMALL_HASHED = {2: 1_000_000, 3: 250_000, 11: 1_000_000, 15: 500_000, 20: 800_000}
DLRM_SMALL_ROWS: tuple[int, ...] = tuple(
    _SMALL_HASHED.get(i, max(10, r)) for i, r in enumerate(CRITEO_KAGGLE_ROWS)
)
_SMALL_MULTI_HOT = {2: 20.0, 3: 8.0, 11: 30.0, 15: 4.0, 23: 2.0}
DLRM_SMALL_POOLING: tuple[float, ...] = tuple(_SMALL_MULTI_HOT.get(i, 1.0) for i in range(26))
DLRM_SMALL_DIM = 64
DLRM_SMALL_BOTTOM = (NUM_CRITEO_DENSE, 512, 256, DLRM_SMALL_DIM)
DLRM_SMALL_TOP_HIDDEN = (512, 256)
DLRM_SMALL_DESCRIPTION = (
    "facebookresearch DLRM, dot interaction: 13 dense + 26 tables dim 64 (10..1M rows, ~0.98 GiB), "
    "bottom 13-512-256-64, top 415-512-256-1, sigmoid"
)

# ------------------------------------------------------------------- dlrm-v2
MLPERF_DLRM_V2_ROWS: tuple[int, ...] = (
    40000000, 39060, 17295, 7424, 20265, 3, 7122, 1543, 63, 40000000, 3067956,
    405282, 10, 2209, 11938, 155, 4, 976, 14, 40000000, 40000000, 40000000,
    590152, 12973, 108, 36,
)
MLPERF_DLRM_V2_POOLING: tuple[float, ...] = tuple(
    float(p) for p in (3, 2, 1, 2, 6, 1, 1, 1, 1, 7, 3, 8, 1, 6, 9, 5, 1, 1, 1, 12, 100, 27, 10, 3, 1, 1)
)
DLRM_V2_DEFAULT_MAX_ROWS = 360_000
DLRM_V2_DIM = 128
DLRM_V2_BOTTOM = (NUM_CRITEO_DENSE, 512, 256, DLRM_V2_DIM)
DLRM_V2_CROSS_LAYERS = 3
DLRM_V2_CROSS_RANK = 512
DLRM_V2_TOP = (1024, 1024, 512, 256, 1)
DLRM_V2_DESCRIPTION = (
    "MLPerf DLRM-v2 (TorchRec DLRM_DCN): 13 dense + 26 multi-hot tables dim 128 "
    "(MLPerf sizes capped at 360k rows, ~1.49 GiB), 3-layer rank-512 low-rank cross net, "
    "top 3456-1024-1024-512-256-1, sigmoid"
)


def dot_interaction_indices(num_vectors: int, self_interaction: bool = False) -> tuple[list[int], list[int]]:
    """``li``, ``lj`` exactly as facebookresearch/dlrm builds them ("approach 2").

    Row-major over the lower triangle: (1,0), (2,0), (2,1), (3,0), ...
    """
    offset = 1 if self_interaction else 0
    li = [i for i in range(num_vectors) for j in range(i + offset)]
    lj = [j for i in range(num_vectors) for j in range(i + offset)]
    return li, lj


def dlrm_small_spec(max_rows: int | None = None) -> ZooSpec:
    rows = cap_rows(DLRM_SMALL_ROWS, max_rows)
    features = tuple(
        FeatureSpec(f"C{i + 1}", r, DLRM_SMALL_DIM, p)
        for i, (r, p) in enumerate(zip(rows, DLRM_SMALL_POOLING))
    )
    return ZooSpec("dlrm-small", NUM_CRITEO_DENSE, features, DLRM_SMALL_DESCRIPTION)


def dlrm_v2_spec(max_rows: int | None = None) -> ZooSpec:
    cap = DLRM_V2_DEFAULT_MAX_ROWS if max_rows is None else max_rows
    rows = cap_rows(MLPERF_DLRM_V2_ROWS, cap)
    features = tuple(
        FeatureSpec(f"cat_{i}", r, DLRM_V2_DIM, p)
        for i, (r, p) in enumerate(zip(rows, MLPERF_DLRM_V2_POOLING))
    )
    return ZooSpec("dlrm-v2", NUM_CRITEO_DENSE, features, DLRM_V2_DESCRIPTION)


class DLRM(nn.Module):
    """facebookresearch/dlrm ``DLRM_Net`` (dot interaction, no self-interaction)."""

    def __init__(self, spec: ZooSpec) -> None:
        super().__init__()
        dim = DLRM_SMALL_BOTTOM[-1]
        if any(f.dim != dim for f in spec.features):
            raise ValueError("dot interaction needs every table dim equal to the bottom MLP output")
        self.xrec_spec = spec
        self.bottom_mlp = mlp([spec.num_dense, *DLRM_SMALL_BOTTOM[1:]], final="relu")
        self.embeddings = EmbeddingBagList(spec.features)
        li, lj = dot_interaction_indices(1 + spec.num_features)
        self.register_buffer("li", torch.tensor(li, dtype=torch.int64), persistent=False)
        self.register_buffer("lj", torch.tensor(lj, dtype=torch.int64), persistent=False)
        self.top_mlp = mlp([dim + len(li), *DLRM_SMALL_TOP_HIDDEN, 1], final="sigmoid")

    def interact_features(self, x: torch.Tensor, ly: list[torch.Tensor]) -> torch.Tensor:
        batch_size, d = x.shape
        T = torch.cat([x] + ly, dim=1).view((batch_size, -1, d))
        Z = torch.bmm(T, torch.transpose(T, 1, 2))
        Zflat = Z[:, self.li, self.lj]
        return torch.cat([x] + [Zflat], dim=1)

    def forward(self, dense: torch.Tensor, indices: list[torch.Tensor], offsets: list[torch.Tensor]) -> torch.Tensor:
        x = self.bottom_mlp(dense)
        ly = self.embeddings(indices, offsets)
        z = self.interact_features(x, ly)
        return self.top_mlp(z)

    @torch.no_grad()
    def reset_parameters(self, g: torch.Generator) -> None:
        for lin in linear_layers(self.bottom_mlp):
            init_linear_dlrm_(lin, g)
        for bag in self.embeddings.bags:
            init_embedding_uniform_sqrt_rows_(bag, g)
        for lin in linear_layers(self.top_mlp):
            init_linear_dlrm_(lin, g)


class DLRMv2(nn.Module):
    """MLPerf DLRM-v2: TorchRec ``DLRM_DCN`` with a low-rank DCN-v2 interaction."""

    def __init__(self, spec: ZooSpec) -> None:
        super().__init__()
        dim = DLRM_V2_BOTTOM[-1]
        if any(f.dim != dim for f in spec.features):
            raise ValueError("DLRM-v2 needs every table dim equal to the bottom MLP output")
        self.xrec_spec = spec
        self.bottom_mlp = mlp([spec.num_dense, *DLRM_V2_BOTTOM[1:]], final="relu")
        self.embeddings = EmbeddingBagList(spec.features)
        in_features = dim * (1 + spec.num_features)
        self.cross = LowRankCrossNet(in_features, DLRM_V2_CROSS_LAYERS, DLRM_V2_CROSS_RANK)
        self.top_mlp = mlp([in_features, *DLRM_V2_TOP], final="sigmoid")

    def forward(self, dense: torch.Tensor, indices: list[torch.Tensor], offsets: list[torch.Tensor]) -> torch.Tensor:
        x = self.bottom_mlp(dense)
        x0 = torch.cat([x] + self.embeddings(indices, offsets), dim=1)
        return self.top_mlp(self.cross(x0))

    @torch.no_grad()
    def reset_parameters(self, g: torch.Generator) -> None:
        for lin in linear_layers(self.bottom_mlp):
            init_linear_dlrm_(lin, g)
        for bag in self.embeddings.bags:
            init_embedding_uniform_sqrt_rows_(bag, g)
        self.cross.reset_parameters(g)
        for lin in linear_layers(self.top_mlp):
            init_linear_dlrm_(lin, g)
