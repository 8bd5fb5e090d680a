"""xrec IR: typed immutable graphs, a verifier, a printer and a numpy interpreter."""
from .graph import FeatureInputs, Graph, GraphBuilder, GroupFeature, MlpLayer, Node, feature_inputs, make_attrs, mlp_layers
from .interpreter import run_graph
from .ops import Op
from .printer import print_graph
from .types import BATCH, DType, JaggedType, TensorType, sym
from .verifier import VerifyError, verify

__all__ = ["FeatureInputs", "feature_inputs", "MlpLayer", "mlp_layers", "Graph", "GraphBuilder", "GroupFeature", "Node", "make_attrs", "run_graph", "Op",
           "print_graph", "BATCH", "DType", "JaggedType", "TensorType", "sym", "VerifyError", "verify"]
