"""The reference target: runs the optimized IR with xrec's numpy interpreter.

It is the ground truth every other target is compared with, and works on any
machine with numpy. Its lowering rules are the interpreter's (the "reference"
target of xrec.lowering); it lists no fallbacks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .. import Capabilities, Target, register_target
from ..options import TargetOptions


@dataclass(frozen=True)
class ReferenceOptions(TargetOptions):
    target: ClassVar[str] = "reference"


class ReferenceTarget(Target):
    name = "reference"
    description = "numpy interpreter of the optimized IR (ground truth, any machine)"
    tolerances = {"rtol": 1e-5, "atol": 1e-7}
    Options = ReferenceOptions

    def capabilities(self, options):
        return Capabilities(vector_width=1, supports_int4=True, supports_fp16=True, supports_pruning=True)

    def build(self, graph, options, writer) -> None:
        from xrec.ir.interpreter import Interpreter
        from xrec.ir.printer import print_graph
        options = self.parse_options(options)
        Interpreter(graph)          # every node has a rule (else a LoweringError naming it, at compile time)
        writer.target_info["options"] = options.as_dict()
        writer.write_text("src/model.xir", print_graph(graph, show_params=True) + "\n")

    def load(self, artifact, options):
        from xrec.ir.interpreter import Interpreter
        interp = Interpreter(artifact.graph)
        return interp.run

register_target(ReferenceTarget())
