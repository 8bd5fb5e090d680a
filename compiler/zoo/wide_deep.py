"""Wide & Deep (Cheng et al., "Wide & Deep Learning for Recommender Systems",
DLRS 2016), on Criteo-shaped inputs.

Model ``wide-deep``:

* 13 dense features and 26 categorical features C1..C26: the Criteo Kaggle
  vocabularies capped at 150,000 rows (1,183,115 rows per table set). C4
  (mean 6 ids per bag) and C16 (mean 12) are multi-hot and pooled with
  ``mode="mean"`` in the deep part, to exercise mean pooling; every other
  table is one-hot with sum pooling.
* wide: a linear model over the sparse features, one 1-dim ``EmbeddingBag``
  per feature (sum), plus ``Linear(13, 1)`` on the dense features.
* deep: embeddings of dim 32 concatenated with the dense features
  (13 + 26 * 32 = 845), MLP 845-1024-512-256 (ReLU), then ``Linear(256, 1)``.
* output ``sigmoid(wide + deep)`` (the joint logistic output of the paper).

Initialisation like TensorFlow's ``DNNLinearCombinedClassifier``: deep
embeddings N(0, 1/sqrt(dim)) (TF truncates this normal), Glorot-uniform
kernels with zero bias in the deep MLP. TF starts the wide weights at zero;
here they are N(0, 0.01) so the wide path contributes to the output.
Parameters: 1,183,115 * 33 floats of tables plus the MLP, ~160 MB.
"""
from __future__ import annotations

import math

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
    normal_,
)

__all__ = ["WideDeep", "wide_deep_spec", "WIDE_DEEP_ROW_CAP", "WIDE_DEEP_MEAN_FEATURES"]

WIDE_DEEP_ROW_CAP = 150_000
WIDE_DEEP_EMBEDDING_DIM = 32
WIDE_DEEP_DEEP = (1024, 512, 256)
# feature position -> mean ids per bag; these are pooled with mode="mean".
WIDE_DEEP_MEAN_FEATURES = {3: 6.0, 15: 12.0}
WIDE_DEEP_DESCRIPTION = (
    "Wide & Deep (Cheng et al. 2016): wide linear over 26 sparse + 13 dense, deep 26 tables "
    "dim 32 (<=150k rows, 2 mean-pooled multi-hot) + dense -> 1024-512-256, sigmoid of the sum"
)


def wide_deep_spec(max_rows: int | None = None) -> ZooSpec:
    rows = cap_rows(cap_rows(CRITEO_KAGGLE_ROWS, WIDE_DEEP_ROW_CAP), max_rows)
    features = tuple(
        FeatureSpec(f"C{i + 1}", r, WIDE_DEEP_EMBEDDING_DIM, WIDE_DEEP_MEAN_FEATURES.get(i, 1.0))
        for i, r in enumerate(rows)
    )
    return ZooSpec("wide-deep", NUM_CRITEO_DENSE, features, WIDE_DEEP_DESCRIPTION)


class WideDeep(nn.Module):
    """Wide & Deep: ``sigmoid(wide_linear + deep_mlp)``."""

    def __init__(self, spec: ZooSpec) -> None:
        super().__init__()
        self.xrec_spec = spec
        modes = ["mean" if i in WIDE_DEEP_MEAN_FEATURES else "sum" for i in range(spec.num_features)]
        self.wide = EmbeddingBagList(spec.features, dim=1)
        self.wide_dense = nn.Linear(spec.num_dense, 1)
        self.embeddings = EmbeddingBagList(spec.features, modes=modes)
        deep_in = spec.num_dense + sum(f.dim for f in spec.features)
        self.deep = mlp([deep_in, *WIDE_DEEP_DEEP, 1])

    def forward(self, dense: torch.Tensor, indices: list[torch.Tensor], offsets: list[torch.Tensor]) -> torch.Tensor:
        wide = torch.cat(self.wide(indices, offsets), dim=1).sum(dim=1, keepdim=True)
        wide = wide + self.wide_dense(dense)
        deep = self.deep(torch.cat([dense] + self.embeddings(indices, offsets), dim=1))
        return torch.sigmoid(wide + deep)

    @torch.no_grad()
    def reset_parameters(self, g: torch.Generator) -> None:
        for bag in self.wide.bags:
            normal_(bag.weight, 0.01, g)
        normal_(self.wide_dense.weight, 0.01, g)
        self.wide_dense.bias.zero_()
        for bag in self.embeddings.bags:
            normal_(bag.weight, 1.0 / math.sqrt(bag.embedding_dim), g)
        for lin in linear_layers(self.deep):
            init_linear_xavier_(lin, g)
