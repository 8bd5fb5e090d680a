"""Every zoo model, lowered to one StableHLO module and run on JAX's CPU client, matches PyTorch eager."""
import pytest

from xrec import zoo
from xrec.check import errors
from xrec.targets.xla import BF16_TOLERANCES
from xrec.testing import _leaves, check_model, edge_case_inputs

ZOO = zoo.list_models()


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_matches_pytorch_fp32(compile_zoo, name):
    # static batch 16: batch 1, 5 and 7 are padded, 64 is split into 4 calls
    model, cm = compile_zoo(name, batch=16)
    assert cm.manifest["target_info"]["module"]["batch"] == 16
    check_model(cm, model, edge_case_inputs(model), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_bf16_within_recorded_bound(compile_zoo, name):
    model, cm = compile_zoo(name, batch=64, dtype="bf16")
    assert cm.manifest["tolerances"] == BF16_TOLERANCES
    cases = edge_case_inputs(model) + [zoo.make_inputs(model, 64, seed=s) for s in (11, 12)]
    check_model(cm, model, cases, **BF16_TOLERANCES)
    # and bf16 is really in effect: it differs from fp32 PyTorch by more than fp32 rounding
    import torch
    args = cases[-1]
    with torch.no_grad():
        want = _leaves(model(*args))
    max_abs, _ = errors(_leaves(cm(*args)), want)
    assert max_abs > 1e-6
