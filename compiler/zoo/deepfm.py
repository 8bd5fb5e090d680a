"""DeepFM (Guo et al., "DeepFM: A Factorization-Machine based Neural Network
for CTR Prediction", IJCAI 2017) on Criteo.

Model ``deepfm``:

* 13 dense features and 26 Criteo categorical fields (one-hot, sum pooling);
  tables are the Criteo Kaggle vocabularies capped at 500,000 rows
  (3,069,296 rows per table set).
* first order: one 1-dim ``EmbeddingBag`` per field (sum) plus
  ``Linear(13, 1)`` on the dense features (its bias is the global bias w0).
* second order: FM over the stacked field embeddings ``v`` ([B, 26, 10],
  dim 10 as in the paper): ``0.5 * (sum(v, 1) ** 2 - sum(v ** 2, 1)).sum(1)``.
  Dense features enter the first-order and deep parts only, not the FM (as
  in DeepCTR and most Criteo DeepFM setups, which bucketise dense features
  before using them as FM fields).
* deep: MLP over ``cat(dense, flatten(v))`` (13 + 260 = 273) with hidden
  layers 400-400-400 (ReLU, the paper's Criteo setting), then ``Linear(400, 1)``.
* output ``sigmoid(first + fm + deep)``: the FM and deep components share the
  same embeddings, as in the paper.

Initialisation as ChenglongChen/tensorflow-DeepFM's embeddings, N(0, 0.01)
for both the field embeddings and the first-order weights; the Linear layers
use PyTorch's default. Parameters: 3,069,296 * 11 floats of tables plus the
MLP, ~135 MB.
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
    init_linear_torch_default_,
    linear_layers,
    mlp,
    normal_,
)

__all__ = ["DeepFM", "deepfm_spec", "DEEPFM_ROW_CAP", "fm_second_order"]

DEEPFM_ROW_CAP = 500_000
DEEPFM_EMBEDDING_DIM = 10
DEEPFM_DEEP = (400, 400, 400)
DEEPFM_DESCRIPTION = (
    "DeepFM (Guo et al. 2017): 13 dense + 26 Criteo fields dim 10 (<=500k rows), "
    "first order + FM over field embeddings + deep 400-400-400, sigmoid of the sum"
)


def deepfm_spec(max_rows: int | None = None) -> ZooSpec:
    rows = cap_rows(cap_rows(CRITEO_KAGGLE_ROWS, DEEPFM_ROW_CAP), max_rows)
    features = tuple(
        FeatureSpec(f"C{i + 1}", r, DEEPFM_EMBEDDING_DIM, 1.0) for i, r in enumerate(rows)
    )
    return ZooSpec("deepfm", NUM_CRITEO_DENSE, features, DEEPFM_DESCRIPTION)


def fm_second_order(v: torch.Tensor) -> torch.Tensor:
    """FM pairwise term of [B, F, k] field embeddings, as [B, 1]."""
    square_of_sum = torch.sum(v, dim=1) ** 2
    sum_of_square = torch.sum(v**2, dim=1)
    return 0.5 * (square_of_sum - sum_of_square).sum(dim=1, keepdim=True)


class DeepFM(nn.Module):
    """DeepFM: ``sigmoid(first_order + FM + deep)`` over shared field embeddings."""

    def __init__(self, spec: ZooSpec) -> None:
        super().__init__()
        dims = {f.dim for f in spec.features}
        if len(dims) != 1:
            raise ValueError("the FM needs every field embedding to have the same dim")
        self.xrec_spec = spec
        self.embed_dim = dims.pop()
        self.num_fields = spec.num_features
        self.first_order = EmbeddingBagList(spec.features, dim=1)
        self.dense_linear = nn.Linear(spec.num_dense, 1)
        self.embeddings = EmbeddingBagList(spec.features)
        deep_in = spec.num_dense + self.num_fields * self.embed_dim
        self.deep = mlp([deep_in, *DEEPFM_DEEP, 1])

    def forward(self, dense: torch.Tensor, indices: list[torch.Tensor], offsets: list[torch.Tensor]) -> torch.Tensor:
        first = torch.cat(self.first_order(indices, offsets), dim=1).sum(dim=1, keepdim=True)
        first = first + self.dense_linear(dense)
        flat = torch.cat(self.embeddings(indices, offsets), dim=1)
        v = flat.view(dense.shape[0], self.num_fields, self.embed_dim)
        fm = fm_second_order(v)
        deep = self.deep(torch.cat([dense, flat], dim=1))
        return torch.sigmoid(first + fm + deep)

    @torch.no_grad()
    def reset_parameters(self, g: torch.Generator) -> None:
        for bag in self.first_order.bags:
            normal_(bag.weight, 0.01, g)
        init_linear_torch_default_(self.dense_linear, g)
        for bag in self.embeddings.bags:
            normal_(bag.weight, 0.01, g)
        for lin in linear_layers(self.deep):
            init_linear_torch_default_(lin, g)
