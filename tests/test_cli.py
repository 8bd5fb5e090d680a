"""The xrec command line: models, targets, ir, compile, check (also on an artifact)."""
import json
import subprocess
import sys

import pytest

from xrec.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_models_lists_the_zoo_with_sizes(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0
    for name in ("dlrm-small", "dlrm-v2", "dcn-v2", "deepfm", "wide-deep", "two-tower"):
        assert name in out
    assert "MiB" in out


def test_targets_says_which_work_here(capsys):
    code, out, _ = run(capsys, "targets")
    assert code == 0 and "reference  available" in out


def test_targets_options_lists_each_option_with_type_default_choices_and_doc(capsys):
    code, out, _ = run(capsys, "targets", "--options", "xla")
    assert code == 0
    assert "  strict: bool = False  refuse" in out
    assert "  dtype: str = 'f32' (one of f32, bf16)  weights and matmul operands" in out
    code, out, _ = run(capsys, "targets", "--options", "reference")
    assert code == 0 and out.count("\n  ") == 1 and "strict: bool" in out
    code, _, err = run(capsys, "targets", "--options", "tpu9")
    assert code == 2 and "unknown target 'tpu9'; known targets: reference" in err


def test_ir_shows_the_group_and_the_interaction(capsys):
    code, out, _ = run(capsys, "ir", "dlrm-small", "--max-rows", "100")
    assert code == 0
    assert out.count("embedding_bag_group(") == 1 and "dot_interaction(" in out
    assert "embedding_bag(" not in out


def test_ir_after_import_is_the_raw_graph(capsys):
    code, out, _ = run(capsys, "ir", "dlrm-small", "--max-rows", "100", "--after", "import")
    assert code == 0 and out.count("embedding_bag(") == 26 and "matmul(" in out


def test_check_json_on_a_model_and_on_its_artifact(capsys, tmp_path):
    code, out, _ = run(capsys, "check", "wide-deep", "--target", "reference", "--max-rows", "200", "--json")
    rep = json.loads(out)
    assert code == 0 and rep["ok"] and rep["max_rel_err"] <= 1e-5
    assert {"max_abs_err", "max_rel_err", "rtol", "ok"} <= set(rep)
    assert [b["batch"] for b in rep["batches"]] == [1, 7, 64]
    art = tmp_path / "wd.xrec"
    code, out, _ = run(capsys, "compile", "wide-deep", "--target", "reference", "--max-rows", "200", "-o", str(art))
    assert code == 0 and (art / "manifest.json").is_file()
    code, out, _ = run(capsys, "check", str(art), "--json", "--batches", "2,3")
    assert code == 0 and json.loads(out)["ok"]


def test_user_model_file_factory(capsys, tmp_path):
    f = tmp_path / "mymodel.py"
    f.write_text(
        "import torch, torch.nn as nn\n"
        "class M(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.bag = nn.EmbeddingBag(10, 4, include_last_offset=True)\n"
        "        self.lin = nn.Linear(4, 1)\n"
        "    def forward(self, ids, offsets):\n"
        "        return torch.sigmoid(self.lin(self.bag(ids, offsets)))\n"
        "def make():\n"
        "    return M(), (torch.tensor([1, 2, 3, 4]), torch.tensor([0, 2, 4]))\n")
    code, out, err = run(capsys, "check", f"{f}:make", "--target", "reference", "--json")
    assert code == 0, err
    assert json.loads(out)["ok"]


def test_errors_are_one_clear_line_with_a_nonzero_exit(capsys):
    code, _, err = run(capsys, "ir", "no-such-model")
    assert code == 2 and "unknown MODEL 'no-such-model'" in err


def test_python_dash_m_xrec_works():
    r = subprocess.run([sys.executable, "-m", "xrec", "models"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "dlrm-small" in r.stdout


TWO_FACTORIES = (
    "import torch, torch.nn as nn\n"
    "from helper_layers import Head\n"            # a sibling module: no PYTHONPATH needed
    "class M(nn.Module):\n"
    "    def __init__(self, rows):\n"
    "        super().__init__(); self.bag = nn.EmbeddingBag(rows, 4, include_last_offset=True)\n"
    "        self.head = Head(4)\n"
    "    def forward(self, ids, offsets):\n"
    "        return self.head(self.bag(ids, offsets))\n"
    "EX = (torch.tensor([1, 2, 3, 4]), torch.tensor([0, 2, 4]))\n"
    "def ranker():\n"
    "    return M(10), EX\n"
    "def retriever():\n"
    "    return M(20), EX\n")
HELPER = ("import torch, torch.nn as nn\n"
          "class Head(nn.Module):\n"
          "    def __init__(self, d):\n"
          "        super().__init__(); self.lin = nn.Linear(d, 1)\n"
          "    def forward(self, x):\n"
          "        return torch.sigmoid(self.lin(x))\n")


@pytest.fixture
def two_factories(tmp_path):
    (tmp_path / "helper_layers.py").write_text(HELPER)
    f = tmp_path / "models_two.py"
    f.write_text(TWO_FACTORIES)
    return f


def test_artifacts_from_one_file_are_named_after_their_factories(capsys, tmp_path, two_factories, monkeypatch):
    import xrec
    monkeypatch.chdir(tmp_path)
    for factory in ("ranker", "retriever"):
        code, out, err = run(capsys, "compile", f"{two_factories}:{factory}", "--target", "reference")
        assert code == 0, err
        assert (tmp_path / f"{factory}.xrec" / "manifest.json").is_file()
        assert xrec.load(tmp_path / f"{factory}.xrec").graph.name == factory


def test_name_option_overrides_the_artifact_name_and_default_output(capsys, tmp_path, two_factories, monkeypatch):
    import xrec
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "compile", f"{two_factories}:ranker", "--target", "reference", "--name", "ctr-v3")
    assert code == 0, err
    assert xrec.load(tmp_path / "ctr-v3.xrec").graph.name == "ctr-v3"


def test_factory_file_imports_a_sibling_module_without_pythonpath(capsys, two_factories):
    import sys
    before = list(sys.path)
    code, out, err = run(capsys, "check", f"{two_factories}:ranker", "--target", "reference", "--json")
    assert code == 0, err
    assert json.loads(out)["ok"]
    assert sys.path == before                         # the file's folder is on the path only while importing


def test_factory_may_return_a_bare_module_following_the_zoo_convention(capsys, tmp_path):
    f = tmp_path / "zoo_like.py"
    f.write_text("from xrec import zoo\n"
                 "def wide():\n"
                 "    return zoo.build('wide-deep', max_rows=200)\n")
    code, out, err = run(capsys, "check", f"{f}:wide", "--target", "reference", "--json", "--batches", "1,3")
    assert code == 0, err
    assert json.loads(out)["ok"]


def test_bare_module_without_example_inputs_gets_an_error_saying_what_is_required(capsys, tmp_path):
    f = tmp_path / "bare.py"
    f.write_text("import torch.nn as nn\n"
                 "def make():\n"
                 "    return nn.Linear(3, 1)\n")
    code, _, err = run(capsys, "check", f"{f}:make", "--target", "reference")
    assert code == 2
    assert "make() returned a bare Linear without example inputs" in err
    assert "Return (module, example_inputs)" in err and "xrec_spec attribute (xrec.zoo.ZooSpec)" in err
