"""DCN-V2 (Wang et al., "DCN V2: Improved Deep & Cross Network and Practical
Lessons for Web-scale Learning to Rank Systems", WWW 2021) on Criteo, plus the
cross-network layers shared with DLRM-v2.

Model ``dcn-v2`` (stacked structure, section 3 / figure 2 of the paper):

* 13 dense features and 26 Criteo categorical features, each embedded with
  dim 16 (sum pooling, one-hot as in Criteo). Table sizes are the Criteo
  Kaggle vocabularies capped at 100,000 rows (840,543 rows, ~54 MB).
* ``x0 = cat(dense, e_1, ..., e_26)``: 13 + 26 * 16 = 429 features.
* 3 full-rank cross layers ``x_{l+1} = x0 * (W_l x_l + b_l) + x_l``.
* deep network 429-512-256 (ReLU) on the cross output, then ``Linear(256, 1)``
  and a sigmoid.

Initialisation follows the TensorFlow Recommenders code the paper ships
with: Keras defaults, i.e. embeddings U(-0.05, 0.05), Glorot-uniform kernels
and zero biases (cross and deep layers alike).
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
    init_linear_xavier_,
    linear_layers,
    mlp,
    uniform_,
    xavier_normal_,
)

__all__ = ["CrossNet", "LowRankCrossNet", "DCNv2", "dcn_v2_spec", "DCN_V2_ROW_CAP"]

DCN_V2_ROW_CAP = 100_000
DCN_V2_EMBEDDING_DIM = 16
DCN_V2_CROSS_LAYERS = 3
DCN_V2_DEEP = (512, 256)
DCN_V2_DESCRIPTION = (
    "DCN-V2 (Wang et al. 2021), stacked: 13 dense + 26 Criteo tables dim 16 (<=100k rows), "
    "3 full-rank cross layers on 429 features, deep 512-256, sigmoid"
)


class CrossNet(nn.Module):
    """Full-rank cross network (DCN-V2 eq. 1): ``x_{l+1} = x0 * (W_l x_l + b_l) + x_l``."""

    def __init__(self, in_features: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(in_features, in_features) for _ in range(num_layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class LowRankCrossNet(nn.Module):
    """TorchRec ``LowRankCrossNet``: ``x_{l+1} = x0 * (W_l (V_l x_l) + b_l) + x_l``.

    ``V_l`` is ``Linear(in, rank, bias=False)``, ``W_l`` is ``Linear(rank, in)``
    (its bias is TorchRec's separate ``bias[l]``). TorchRec initialises both
    kernels Xavier-normal and the bias to zero; :meth:`reset_parameters` does
    the same.
    """

    def __init__(self, in_features: int, num_layers: int, low_rank: int) -> None:
        super().__init__()
        self.V = nn.ModuleList(nn.Linear(in_features, low_rank, bias=False) for _ in range(num_layers))
        self.W = nn.ModuleList(nn.Linear(low_rank, in_features, bias=True) for _ in range(num_layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for v, w in zip(self.V, self.W):
            x = x0 * w(v(x)) + x
        return x

    @torch.no_grad()
    def reset_parameters(self, g: torch.Generator) -> None:
        for v, w in zip(self.V, self.W):
            xavier_normal_(v.weight, g)
            xavier_normal_(w.weight, g)
            w.bias.zero_()


def dcn_v2_spec(max_rows: int | None = None) -> ZooSpec:
    rows = cap_rows(cap_rows(CRITEO_KAGGLE_ROWS, DCN_V2_ROW_CAP), max_rows)
    features = tuple(
        FeatureSpec(f"C{i + 1}", r, DCN_V2_EMBEDDING_DIM, 1.0) for i, r in enumerate(rows)
    )
    return ZooSpec("dcn-v2", NUM_CRITEO_DENSE, features, DCN_V2_DESCRIPTION)


class DCNv2(nn.Module):
    """DCN-V2, stacked: embeddings -> cross network -> deep MLP -> sigmoid."""

    def __init__(self, spec: ZooSpec) -> None:
        super().__init__()
        self.xrec_spec = spec
        self.embeddings = EmbeddingBagList(spec.features)
        in_features = spec.num_dense + sum(f.dim for f in spec.features)
        self.cross = CrossNet(in_features, DCN_V2_CROSS_LAYERS)
        self.deep = mlp([in_features, *DCN_V2_DEEP, 1], final="sigmoid")

    def forward(self, dense: torch.Tensor, indices: list[torch.Tensor], offsets: list[torch.Tensor]) -> torch.Tensor:
        x0 = torch.cat([dense] + self.embeddings(indices, offsets), dim=1)
        return self.deep(self.cross(x0))

    @torch.no_grad()
    def reset_parameters(self, g: torch.Generator) -> None:
        for bag in self.embeddings.bags:
            uniform_(bag.weight, -0.05, 0.05, g)
        for lin in linear_layers(self.cross) + linear_layers(self.deep):
            init_linear_xavier_(lin, g)
