"""Two-tower retrieval model (dual encoder, as in Yi et al., "Sampling-Bias-
Corrected Neural Modeling for Large Corpus Item Recommendations", RecSys 2019,
and TorchRec's ``examples/retrieval/modules/two_tower.py``), scored per pair.

Model ``two-tower``:

* user tower: the 13 dense inputs (dense user features) and 8 user sparse
  features; item tower: 8 item sparse features. All tables have dim 64;
  ``user_hist_categories`` and ``item_tags`` are pooled with ``mode="max"``
  (max pooling), the rest with sum.
* each tower: ``cat(inputs)`` -> MLP 256-128-64 (ReLU between layers, none
  after the last) -> ``F.normalize(dim=1)``.
* score ``= (u * v).sum(1, keepdim=True) * temperature`` (cosine similarity
  scaled by 1/tau, ``temperature`` = 20.0), output ``sigmoid(score)``, [B, 1].
* ``indices`` / ``offsets`` hold the 16 features in spec order: the 8 user
  features first, then the 8 item features.

Tables: 731,510 rows in all (user_id 250k, item_id 200k, ...), ~187 MB.
Initialisation: tables N(0, 0.1), MLPs PyTorch's default.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import (
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

__all__ = ["TwoTower", "two_tower_spec", "USER_FEATURES", "ITEM_FEATURES", "TWO_TOWER_TEMPERATURE"]

TWO_TOWER_DIM = 64
TWO_TOWER_MLP = (256, 128, 64)
TWO_TOWER_TEMPERATURE = 20.0
# (name, rows, mean ids per bag, pooling mode)
USER_FEATURES: tuple[tuple[str, int, float, str], ...] = (
    ("user_id", 250_000, 1.0, "sum"),
    ("user_country", 200, 1.0, "sum"),
    ("user_age_bucket", 10, 1.0, "sum"),
    ("user_device", 50, 1.0, "sum"),
    ("user_language", 100, 1.0, "sum"),
    ("user_hist_items", 150_000, 20.0, "sum"),
    ("user_hist_categories", 5_000, 10.0, "max"),
    ("user_follows", 50_000, 5.0, "sum"),
)
ITEM_FEATURES: tuple[tuple[str, int, float, str], ...] = (
    ("item_id", 200_000, 1.0, "sum"),
    ("item_category", 5_000, 1.0, "sum"),
    ("item_creator", 50_000, 1.0, "sum"),
    ("item_tags", 20_000, 4.0, "max"),
    ("item_language", 100, 1.0, "sum"),
    ("item_age_bucket", 30, 1.0, "sum"),
    ("item_topics", 1_000, 3.0, "sum"),
    ("item_price_bucket", 20, 1.0, "sum"),
)
TWO_TOWER_DESCRIPTION = (
    "two-tower retrieval: user tower (13 dense + 8 sparse) and item tower (8 sparse), tables dim 64 "
    "(sum and max pooling), MLP 256-128-64, L2-normalised, sigmoid(20 * cosine)"
)


def two_tower_spec(max_rows: int | None = None) -> ZooSpec:
    table = USER_FEATURES + ITEM_FEATURES
    rows = cap_rows((r for _, r, _, _ in table), max_rows)
    features = tuple(
        FeatureSpec(name, r, TWO_TOWER_DIM, pooling)
        for (name, _, pooling, _), r in zip(table, rows)
    )
    return ZooSpec("two-tower", NUM_CRITEO_DENSE, features, TWO_TOWER_DESCRIPTION)


class TwoTower(nn.Module):
    """User and item towers, L2-normalised, scored by scaled cosine similarity."""

    def __init__(self, spec: ZooSpec, temperature: float = TWO_TOWER_TEMPERATURE) -> None:
        super().__init__()
        n_user, n_item = len(USER_FEATURES), len(ITEM_FEATURES)
        if spec.num_features != n_user + n_item:
            raise ValueError(f"two-tower expects {n_user} user + {n_item} item features")
        self.xrec_spec = spec
        self.num_user_features = n_user
        self.temperature = float(temperature)
        user_specs, item_specs = spec.features[:n_user], spec.features[n_user:]
        self.user_embeddings = EmbeddingBagList(user_specs, modes=[m for *_, m in USER_FEATURES])
        self.item_embeddings = EmbeddingBagList(item_specs, modes=[m for *_, m in ITEM_FEATURES])
        user_in = spec.num_dense + sum(f.dim for f in user_specs)
        item_in = sum(f.dim for f in item_specs)
        self.user_tower = mlp([user_in, *TWO_TOWER_MLP])
        self.item_tower = mlp([item_in, *TWO_TOWER_MLP])

    def forward(self, dense: torch.Tensor, indices: list[torch.Tensor], offsets: list[torch.Tensor]) -> torch.Tensor:
        k = self.num_user_features
        user = self.user_embeddings(indices[:k], offsets[:k])
        item = self.item_embeddings(indices[k:], offsets[k:])
        u = F.normalize(self.user_tower(torch.cat([dense] + user, dim=1)), dim=1)
        v = F.normalize(self.item_tower(torch.cat(item, dim=1)), dim=1)
        score = (u * v).sum(dim=1, keepdim=True) * self.temperature
        return torch.sigmoid(score)

    @torch.no_grad()
    def reset_parameters(self, g: torch.Generator) -> None:
        for bag in list(self.user_embeddings.bags) + list(self.item_embeddings.bags):
            normal_(bag.weight, 0.1, g)
        for lin in linear_layers(self.user_tower) + linear_layers(self.item_tower):
            init_linear_torch_default_(lin, g)
