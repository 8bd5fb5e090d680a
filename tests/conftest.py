"""Shared fixtures: small zoo models and their imported IR, cached for the session."""
from __future__ import annotations

import functools
import os

import numpy as np
import pytest
import torch

# generated artifacts of the tests go to a throwaway cache
os.environ.setdefault("XREC_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", ".xrec-test-cache"))
os.environ.setdefault("XREC_QUIET", "1")

from xrec import zoo  # noqa: E402
from xrec.frontend import import_model  # noqa: E402
from xrec.testing import zoo_model  # noqa: E402

ZOO = zoo.list_models()


@functools.lru_cache(maxsize=None)
def imported_zoo(name: str):
    """(model, imported graph) for a zoo model with tables capped at 300 rows."""
    m = zoo_model(name)
    return m, import_model(m, zoo.example_inputs(m), name=name)


def flat(args) -> list[np.ndarray]:
    return [t.numpy() for t in torch.utils._pytree.tree_leaves(args)]


def torch_out(model, args) -> np.ndarray:
    with torch.no_grad():
        return model(*args).numpy()


@pytest.fixture(params=ZOO)
def zoo_name(request):
    return request.param


def pytest_collection_modifyitems(config, items):
    has_gpu = torch.cuda.is_available()
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
