"""Zoo models sized for MovieLens-100K, trained with plain PyTorch, cached outside the repo.

The model classes are the zoo's (``xrec.zoo``: DLRM, DCNv2, DeepFM, WideDeep, TwoTower) with this
data's table sizes and the embedding dim of each zoo model; only two-tower gets a thin subclass,
because the zoo's tower split is fixed at 8 + 8 features (here 6 user + 3 item features).

Training (``train``): Adam, binary cross-entropy on the train split, batch 256, shuffled by a seeded
generator, one thread (bit-reproducible for a seed); after each epoch the validation AUC is taken
and the best epoch's weights are kept. Checkpoints go to ``<XREC_CACHE_DIR>/data/`` named by
model, seed and a hash of every training setting, so a changed setting retrains.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import knobs
from ..zoo import DCNv2, DeepFM, FeatureSpec, WideDeep, ZooSpec, example_inputs as zoo_example_inputs
from ..zoo.common import EmbeddingBagList, mlp, new_generator
from ..zoo.dlrm import DLRM
from ..zoo.two_tower import TwoTower
from .movielens import USER_FEATURES, MovieLens100K, load

__all__ = ["MODELS", "TrainConfig", "LabelledData", "spec_for", "build", "train", "trained", "evaluate",
           "example_inputs", "checkpoint_path"]

# model -> embedding dim, as in the zoo (DLRM's dot interaction needs 64, its bottom MLP's output)
DIMS = {"dlrm": 64, "dcn-v2": 16, "deepfm": 10, "wide-deep": 32, "two-tower": 64}
MODELS = tuple(DIMS)
VERSION = 1     # bump when the data or the training changes in a way the config does not show


class MovieLensTwoTower(TwoTower):
    """The zoo's TwoTower (same forward and init) with a 6-feature user tower and a 3-feature item tower;
    ``hist_items`` and ``genres`` pooled with mean, the rest with sum."""

    def __init__(self, spec: ZooSpec, temperature: float = 20.0) -> None:
        nn.Module.__init__(self)
        k = len(USER_FEATURES)
        self.xrec_spec = spec
        self.num_user_features = k
        self.temperature = float(temperature)
        user_specs, item_specs = spec.features[:k], spec.features[k:]
        mode = lambda f: "mean" if f.pooling != 1.0 else "sum"   # noqa: E731
        self.user_embeddings = EmbeddingBagList(user_specs, modes=[mode(f) for f in user_specs])
        self.item_embeddings = EmbeddingBagList(item_specs, modes=[mode(f) for f in item_specs])
        self.user_tower = mlp([spec.num_dense + sum(f.dim for f in user_specs), 256, 128, 64])
        self.item_tower = mlp([sum(f.dim for f in item_specs), 256, 128, 64])


_CLASSES = {"dlrm": DLRM, "dcn-v2": DCNv2, "deepfm": DeepFM, "wide-deep": WideDeep, "two-tower": MovieLensTwoTower}


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 4
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    max_train_rows: int | None = None     # a prefix (in time) of the train split, for quick runs

    def key(self) -> str:
        return hashlib.sha256(json.dumps({**asdict(self), "v": VERSION}, sort_keys=True).encode()).hexdigest()[:12]


class LabelledData:
    """What xrec's compression path reads from ``model.xrec_data``: a name and labelled splits."""

    def __init__(self, data: MovieLens100K, batch_size: int = 2048):
        self.data = data
        self.name = data.name
        self.batch_size = batch_size

    def evaluation(self, split: str) -> tuple[list[list[np.ndarray]], np.ndarray]:
        """Flat input batches (dense, indices..., offsets...) and labels of ``split``, in time order."""
        s = self.data.split(split)
        return s.flat_batches(self.batch_size), s.labels.astype(np.float64)

    def __repr__(self) -> str:
        return f"LabelledData({self.name!r})"


def spec_for(name: str, data: MovieLens100K | None = None) -> ZooSpec:
    data = data or load()
    if name not in DIMS:
        raise ValueError(f"unknown MovieLens model {name!r}; known: {', '.join(MODELS)}")
    feats = tuple(FeatureSpec(f.name, f.num_rows, DIMS[name], f.pooling) for f in data.features)
    return ZooSpec(f"ml100k-{name}", data.num_dense, feats,
                   f"zoo {name} sized for MovieLens-100K ({len(feats)} sparse, {data.num_dense} dense features)")


def build(name: str, data: MovieLens100K | None = None, seed: int = 0) -> nn.Module:
    """An untrained model (the zoo's init from ``seed``), marked with ``xrec_data``."""
    data = data or load()
    spec = spec_for(name, data)
    model = _CLASSES[name](spec)
    model.reset_parameters(new_generator(seed))
    model.xrec_name = spec.name
    model.xrec_data = LabelledData(data)
    return model.eval()


@contextlib.contextmanager
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@torch.no_grad()
def predict(model: nn.Module, split, batch_size: int = 4096) -> np.ndarray:
    model.eval()
    return np.concatenate([model(*args).numpy().ravel() for args, _ in split.batches(batch_size)])


def evaluate(model: nn.Module, split) -> dict:
    """AUC and log-loss of ``model`` on a split (the same numpy functions as xrec's reports)."""
    from ..compress.accuracy import auc, logloss
    p = predict(model, split)
    return {"auc": auc(p, split.labels), "logloss": logloss(p, split.labels), "rows": len(split)}


def train(name: str, *, seed: int = 0, config: TrainConfig = TrainConfig(), data: MovieLens100K | None = None,
          log=None) -> tuple[nn.Module, dict]:
    """Train ``name`` on the train split; returns (model in eval mode, history)."""
    data = data or load()
    model = build(name, data, seed)
    tr = data.train
    n = len(tr) if config.max_train_rows is None else min(len(tr), config.max_train_rows)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(seed + 1)
    bce = nn.BCELoss()
    history, best, best_state = [], -1.0, None
    with _one_thread():
        for epoch in range(config.epochs):
            model.train()
            order = torch.randperm(n, generator=gen).numpy()
            total = 0.0
            for args, y in tr.batches(config.batch_size, order=order):
                opt.zero_grad()
                p = model(*args).squeeze(1).clamp(1e-7, 1 - 1e-7)
                loss = bce(p, y)
                loss.backward()
                opt.step()
                total += loss.item() * len(y)
            val = evaluate(model, data.validation)
            history.append({"epoch": epoch + 1, "train_logloss": total / n, "val_auc": val["auc"],
                            "val_logloss": val["logloss"]})
            if log:
                log(f"{name} epoch {epoch + 1}: train log-loss {total / n:.4f}, validation AUC {val['auc']:.4f}")
            if val["auc"] > best:
                best = val["auc"]
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return model.eval(), {"history": history, "best_epoch": 1 + int(np.argmax([h["val_auc"] for h in history]))}


def checkpoint_path(name: str, seed: int = 0, config: TrainConfig = TrainConfig()) -> Path:
    return Path(knobs.cache_dir) / "data" / f"ml100k-{name}-s{seed}-{config.key()}.pt"


def trained(name: str, *, seed: int = 0, config: TrainConfig = TrainConfig(), retrain: bool = False,
            log=None) -> nn.Module:
    """A trained model: loaded from the cache, or trained now (seconds to a minute) and cached."""
    data = load()
    path = checkpoint_path(name, seed, config)
    if path.is_file() and not retrain:
        model = build(name, data, seed)
        ck = torch.load(path, weights_only=True)
        model.load_state_dict(ck["state"])
        model.xrec_train_info = json.loads(ck["info"])
        return model.eval()
    model, info = train(name, seed=seed, config=config, data=data, log=log)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"state": model.state_dict(), "info": json.dumps(info)}, tmp)
    tmp.replace(path)
    model.xrec_train_info = info
    return model


def example_inputs(model: nn.Module, batch: int = 8):
    """Tracing inputs for ``xrec.compile`` (synthetic, batch >= 2, >= 2 ids per feature)."""
    return zoo_example_inputs(model, batch)
