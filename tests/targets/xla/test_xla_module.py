"""The emitted StableHLO: what it contains, the layouts it uses, and a second oracle (the StableHLO
reference interpreter) on the very arguments the CPU executable receives."""
import re

import numpy as np
import torch

from xrec import zoo
from xrec.targets.xla import runtime
from xrec.testing import _leaves, edge_case_inputs

from conftest import flat


def module_text(cm) -> str:
    return (cm.path / "src" / "model.mlir").read_text()


def test_module_is_static_and_plain_stablehlo(compile_zoo):
    _, cm = compile_zoo("dlrm-small", batch=16)
    text = module_text(cm)
    assert "?x" not in text and "tensor<?" not in text                   # no dynamic dims
    code = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("//"))
    ops = re.findall(r"= \"?(\w+)\.(\w+)", code)
    assert ops and {d for d, _ in ops} == {"stablehlo"}                  # no chlo/mhlo: portable
    assert "stablehlo.gather" in text and "stablehlo.dot_general" in text
    assert text.count("// %") >= len([n for n in cm.graph.nodes if n.op.value not in ("input", "param", "jagged")])


def test_f32_dots_ask_for_highest_precision_and_bf16_dots_accumulate_in_f32(compile_zoo):
    _, cm = compile_zoo("dlrm-small", batch=16)
    dots = [ln for ln in module_text(cm).splitlines() if "= stablehlo.dot_general" in ln]
    assert dots and all("precision = [HIGHEST, HIGHEST]" in ln for ln in dots)
    _, cm = compile_zoo("dlrm-small", batch=64, dtype="bf16")
    dots = [ln for ln in module_text(cm).splitlines() if "= stablehlo.dot_general" in ln]
    pat = re.compile(r": \(tensor<[0-9x]+xbf16>, tensor<[0-9x]+xbf16>\) -> tensor<[0-9x]+xf32>")
    assert dots and all(pat.search(ln) for ln in dots)
    params = {a["param"]: a for a in cm.manifest["target_info"]["module"]["args"] if a["role"] == "param"}
    assert params["top_mlp.0.weight"]["dtype"] == "bf16"
    assert params["embeddings.bags.0.weight"]["dtype"] == "bf16"
    assert params["top_mlp.0.bias"]["dtype"] == "f32"                   # biases add in f32


def test_dense_dims_are_padded_to_lanes_and_results_are_the_same_unpadded(compile_zoo):
    model, padded = compile_zoo("dcn-v2", batch=16)
    _, plain = compile_zoo("dcn-v2", batch=16, pad=False)
    arg = {a["param"]: a for a in padded.manifest["target_info"]["module"]["args"] if a["role"] == "param"}
    # cross weights [429, 429] stored transposed and padded to 512 lanes; MLP [K=429 -> 512, N]
    assert arg["cross.layers.0.weight"]["shape"] == [512, 512]
    assert arg["cross.layers.0.weight"]["transform"] == {"transpose": True, "pad_to": [512, 512]}
    assert arg["deep.0.weight"]["shape"][0] == 512
    assert all(a["shape"][-1] % 128 == 0 for a in arg.values() if not a["param"].startswith("embeddings"))
    arg_plain = {a["param"]: a for a in plain.manifest["target_info"]["module"]["args"] if a["role"] == "param"}
    assert arg_plain["cross.layers.0.weight"]["shape"] == [429, 429]
    for args in edge_case_inputs(model, batches=(7,)):
        for a, b in zip(_leaves(padded(*args)), _leaves(plain(*args))):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_weights_baked_as_constants_give_the_same_results(compile_zoo):
    model, args_cm = compile_zoo("deepfm", batch=8)
    _, const_cm = compile_zoo("deepfm", batch=8, weights="constants")
    roles = {a["role"] for a in const_cm.manifest["target_info"]["module"]["args"]}
    assert "param" not in roles and "param" in {a["role"] for a in args_cm.manifest["target_info"]["module"]["args"]}
    assert 'dense<"0x' in module_text(const_cm)
    for args in edge_case_inputs(model, batches=(1, 8)):
        np.testing.assert_allclose(const_cm(*args).numpy(), args_cm(*args).numpy(), rtol=1e-6, atol=1e-7)


def test_reference_interpreter_agrees_with_cpu_executable_and_pytorch(compile_zoo):
    """Second oracle: stablehlo.eval_module on the exact arguments of one executable call."""
    model, cm = compile_zoo("deepfm", batch=8)
    text = module_text(cm)
    info = cm.manifest["target_info"]["module"]
    run = runtime.Runner(text, info, cm.graph.params)
    args = zoo.make_inputs(model, 6, seed=5, empty_bag_prob=0.25)
    margs = run.module_args(flat(args), cm.graph.params)
    ref = runtime.eval_reference(text, margs)[0][:6]
    exe, _ = runtime.compile_cpu(text)
    import jax
    _, dev = runtime.cpu_device()
    cpu = runtime.execute(exe, [jax.device_put(a, dev) for a in margs])[0][:6]
    with torch.no_grad():
        want = model(*args).numpy()
    np.testing.assert_allclose(ref, cpu, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ref, want, rtol=1e-4, atol=1e-6)
