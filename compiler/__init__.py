"""xrec: an ahead-of-time compiler for recommendation-model inference.

    import xrec
    cm = xrec.compile(model, example_inputs, target="cpu")
    out = cm(*inputs)
    cm.save("model.xrec"); cm2 = xrec.load("model.xrec")
"""
__version__ = "0.1.0"

from .api import CompiledModel, compile, load  # noqa: E402

__all__ = ["CompiledModel", "compile", "load", "__version__"]
