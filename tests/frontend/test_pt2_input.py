"""A torch.export .pt2 as MODEL: the README's export recipe is accepted and checks at batch 1; a static export
and a Dim.AUTO export get xrec's own explanation or run, never torch's bare guard failure (issue 22 item 4)."""
from __future__ import annotations

import json

import pytest
import torch
from torch.export import Dim

from xrec import zoo
from xrec.cli import main
from xrec.frontend import FrontendError
from xrec.model_arg import resolve


@pytest.fixture(scope="module")
def model_and_inputs():
    m = zoo.build("dlrm-small", max_rows=200).eval()
    return m, zoo.example_inputs(m)


def _save(tmp_path, name, model, example, dynamic):
    path = tmp_path / f"{name}.pt2"
    torch.export.save(torch.export.export(model, example, dynamic_shapes=dynamic, strict=False), str(path))
    return str(path)


def _readme_dims(example):
    """The README's recipe ('A .pt2 xrec accepts'), written out the same way."""
    dense, indices, offsets = example
    batch = Dim("batch")
    return ({0: batch}, [{0: Dim(f"ids_{k}")} for k in range(len(indices))], [{0: batch + 1} for _ in offsets])


def _auto(example):
    dense, indices, offsets = example
    return ({0: Dim.AUTO}, [{0: Dim.AUTO} for _ in indices], [{0: Dim.AUTO} for _ in offsets])


@pytest.mark.parametrize("recipe", ["readme-dims", "dim-auto"])
def test_dynamic_pt2_checks_against_its_own_graph_at_batch_1_7_64(tmp_path, capsys, model_and_inputs, recipe):
    m, ex = model_and_inputs
    path = _save(tmp_path, recipe, m, ex, _readme_dims(ex) if recipe == "readme-dims" else _auto(ex))
    assert main(["check", path, "-t", "reference", "--json", "--batches", "1,7,64"]) == 0
    rep = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rep["ok"] and [r["batch"] for r in rep["batches"]] == [1, 7, 64]


def test_pt2_reference_runs_batch_1_like_the_eager_model(tmp_path, model_and_inputs):
    """The reference xrec compares with is the exported graph, run without torch's 0/1-specialisation guards."""
    m, ex = model_and_inputs
    src = resolve(_save(tmp_path, "auto", m, ex, _auto(ex)))
    one = zoo.make_inputs(m, 1, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(src.module(*one), m(*one))


def test_static_pt2_is_refused_with_the_reexport_recipe_not_the_batch_advice(tmp_path, model_and_inputs):
    m, ex = model_and_inputs
    path = _save(tmp_path, "static", m, ex, None)
    src = resolve(path)
    with pytest.raises(FrontendError) as e:
        import xrec
        xrec.compile(src.exported, target="reference", name="static")
    msg = str(e.value)
    assert "exported with a static batch" in msg and "batch 8" in msg
    assert "dynamic_shapes" in msg and "Dim('batch')" in msg and "README" in msg
    assert "Trace with an example batch" not in msg
