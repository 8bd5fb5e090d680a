"""`xrec compile --target xla` and `xrec check` of the artifact, through the target registry."""
import json


from xrec.cli import main


def test_cli_compiles_and_checks_an_xla_artifact(compile_zoo, tmp_path, capsys):
    out = tmp_path / "tt.xrec"
    assert main(["compile", "two-tower", "--target", "xla", "--max-rows", "300", "-o", str(out)]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["target"] == "xla" and (out / "src" / "model.mlir").is_file()
    assert m["target_info"]["module"]["batch"] == 64 and "tpu" in m["target_info"]
    capsys.readouterr()
    assert main(["check", str(out), "--json", "--batches", "1,7,70"]) == 0     # 70: split in two calls
    rep = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rep["ok"] and rep["target"] == "xla" and rep["max_rel_err"] < 1e-4
