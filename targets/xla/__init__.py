"""The xla target: the whole optimized model as one StableHLO module with static shapes, for TPUs.

Built here and checked on JAX's CPU PJRT client; compiled for a TPU topology
with libtpu when it is installed (no TPU needed). The artifact holds

    src/model.mlir               the module text xrec wrote (readable, one comment per IR node)
    lib/model.stablehlo.bc       a portable StableHLO artifact (VHLO) to load on a TPU host
    lib/model.<topology>.tpu     the executable compiled for that TPU (when libtpu is installed)

and ``manifest.json`` ``target_info``: the static batch, the id budget of
each sparse feature, every module argument with its role and weight layout,
and the TPU cost and memory analysis.

Options (``xrec.compile(..., target="xla", options={...})``, ``-O key=value``): :class:`XlaOptions`
below, listed by ``xrec targets --options xla``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .. import Capabilities, Target, register_target
from ..options import TargetOptions, at_least, option, positive_finite

def _tpu_off(v):
    return None if v in (None, False, "off", "none", "None") else v


def _budgets_positive(v):
    vals = list(v.values()) if isinstance(v, dict) else ([] if v is None else [v])
    return None if all(x >= 1 for x in vals) else "needs ids per bag >= 1"


@dataclass(frozen=True)
class XlaOptions(TargetOptions):
    target: ClassVar[str] = "xla"

    batch: int = option(64, "static batch of the executable (rounded up to 8 with pad); smaller requests are "
                            "padded, larger ones split (or refused)", check=at_least(1))
    large_batch: str = option("split", "what a request over `batch` does", choices=("split", "error"))
    max_ids_per_bag: int | dict[str, int] | None = option(
        None, "id budget per bag: one int, or {feature: int} (xrec names 'indices[3]' or zoo names 'C4'); "
              "default from the pooling statistics the frontend recorded, else 32", check=_budgets_positive)
    ids_multiplier: float = option(2.0, "multi-hot budget = multiplier * mean pooling + 8, rounded up to 8",
                                   check=positive_finite)
    overflow: str = option("error", "a bag over its budget: fail, or keep its first ids and warn",
                           choices=("error", "truncate"))
    pad: bool = option(True, "pad the batch to 8 sublanes and dense dims to 128 lanes")
    dtype: str = option("f32", "weights and matmul operands (f32 accumulation)", choices=("f32", "bf16"))
    weights: str = option("args", "parameters as module arguments (one executable serves new weights) or "
                                  "baked-in constants", choices=("args", "constants"))
    tpu: str | None = option("auto", "TPU topology to compile for ('v5e:2x2', ...); 'auto': v5e:2x2 when libtpu "
                                     "is installed; None or 'off': skip", before=_tpu_off)


# bf16 weights and matmul operands (8 mantissa bits, unit roundoff 2^-9 = 2e-3) with fp32
# accumulation: measured against PyTorch fp32 on every zoo model (max_rows 300, edge-case inputs
# and 5 random batches of 64) the worst relative error was 7.2e-3 (two-tower, whose sigmoid(20 *
# cosine) amplifies), 0.3e-3..2.9e-3 elsewhere; the bound keeps ~3x margin
# (tests/targets/xla/test_xla_zoo.py checks it on every zoo model)
BF16_TOLERANCES = {"rtol": 2e-2, "atol": 1e-3}
# baking weights into the module text (hex) past this size makes a module no tool handles well
MAX_CONSTANT_BYTES = 256 << 20


class XlaTarget(Target):
    name = "xla"
    description = "StableHLO module for TPUs (static shapes, bf16 option); runs on JAX's CPU client here"
    tolerances = {"rtol": 1e-4, "atol": 1e-6}
    Options = XlaOptions

    def available(self):
        from .runtime import check_jax
        return check_jax()

    def capabilities(self, options):
        return Capabilities(vector_width=128, has_shared_memory=False, memory_channels=1, supports_int4=True,
                            supports_fp16=True, static_shapes=True, supports_pruning=True)

    def tolerances_for(self, options: dict) -> dict:
        """Tolerances an artifact built with ``options`` records (bf16 is looser than f32)."""
        return dict(BF16_TOLERANCES if options.get("dtype") == "bf16" else self.tolerances)

    def build(self, graph, options, writer) -> None:
        from xrec.ir import Op
        from xrec.progress import step
        from . import layout as L
        from .bucketing import choose_budgets
        from .emit import Plan, lower_graph
        from .runtime import compile_cpu, portable_artifact
        from . import tpu

        options = self.parse_options(options)
        lay = L.Layout(pad=options.pad, dtype=options.dtype)
        if options.weights == "constants" and graph.param_bytes() > MAX_CONSTANT_BYTES:
            raise ValueError(f"target 'xla': weights='constants' would bake {graph.param_bytes() / 2**20:.0f} MiB "
                             f"into the module text (limit {MAX_CONSTANT_BYTES >> 20} MiB); use weights='args'")
        features = [j.attr("feature") for j in graph.nodes_of(Op.JAGGED)]
        budgets = choose_budgets(graph, features, options.max_ids_per_bag, options.ids_multiplier)
        plan = Plan(batch=lay.batch(options.batch), layout=lay,
                    budgets={f: b.max_ids for f, b in budgets.items()}, weights=options.weights,
                    strict=options.strict)
        with step("emit StableHLO"):
            low = lower_graph(graph, plan)
        writer.write_text("src/model.mlir", low.text)
        with step("compile on the CPU client"):
            _, cpu_s = compile_cpu(low.text)
        bc, version = portable_artifact(low.text)
        (writer.path / "lib" / "model.stablehlo.bc").write_bytes(bc)
        info = {
            "batch": low.batch,
            "requested_batch": options.batch,
            "overflow": options.overflow,
            "large_batch": options.large_batch,
            "args": low.args,
            "features": [f.__dict__ for f in low.features],
            "outputs": low.outputs,
        }
        writer.target_info.update({
            "options": options.as_dict(),
            "fallbacks": low.fallbacks,
            "module": info,
            "budgets": {f: {"max_ids_per_bag": b.max_ids, "source": b.source} for f, b in budgets.items()},
            "layout": {"pad": lay.pad, "lanes": L.LANES, "sublanes": L.SUBLANES, "dtype": lay.dtype,
                       "precision": lay.precision, "weights": options.weights},
            "stablehlo": {"file": "src/model.mlir", "portable_artifact": "lib/model.stablehlo.bc",
                          "portable_version": version, "jax": _jax_version()},
            "cpu": {"compile_s": round(cpu_s, 4)},
        })
        topo = options.tpu
        if topo == "auto":
            ok, why = tpu.available()
            topo = tpu.DEFAULT_TOPOLOGY if ok else None
            if not ok:
                writer.target_info["tpu"] = {"skipped": why}
        if topo:
            with step(f"compile for TPU {topo}"):
                tb = tpu.compile_for_tpu(low.text, topo)
            rel = f"lib/model.{topo.replace(':', '-')}.tpu"
            (writer.path / rel).write_bytes(tb.executable)
            writer.target_info["tpu"] = tb.info(rel)

    def load(self, artifact, options):
        from .runtime import Runner, require_jax
        require_jax()
        info = artifact.manifest["target_info"]["module"]
        text = (artifact.path / "src" / "model.mlir").read_text()
        return Runner(text, info, artifact.graph.params)


def _jax_version() -> str:
    import jax
    return jax.__version__


register_target(XlaTarget())
