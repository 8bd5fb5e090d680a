"""Conversion state shared by the aten lowering rules."""
from __future__ import annotations

from typing import Any

import numpy as np
import sympy

from ..ir import Graph, GraphBuilder, Node, Op, TensorType, make_attrs
from ..ir.rules import TypeRuleError, infer_type
from ..ir.types import DType, canon_dim
from .errors import FrontendError


class Ctx:
    """Holds the builder, the fx-node -> IR-value map, and the symbol renaming."""

    def __init__(self, builder: GraphBuilder, symbols: dict[str, sympy.Symbol]):
        self.b = builder
        self.env: dict[Any, Any] = {}
        self.symbols = symbols          # export symbol name -> xrec symbol
        self.loc = ""
        self.fx_node = None
        self.row_tables: dict = {}      # (PARAM, row format, dim) -> that PARAM typed as a table of those rows

    # ---- values
    def dim(self, v) -> Any:
        """A python int / SymInt / sympy expr, renamed into xrec's symbols."""
        if isinstance(v, (int, np.integer)):
            return int(v)
        if hasattr(v, "node") and hasattr(v.node, "expr"):
            v = v.node.expr
        if isinstance(v, sympy.Expr):
            return canon_dim(v.xreplace({s: self.symbols.get(s.name, s) for s in v.free_symbols}))
        raise FrontendError(f"{self.loc}: expected a size, got {v!r}")

    def type_of(self, name: str):
        return self.b.types[name]

    def emit(self, op: Op, inputs, attrs: dict | None = None, hint: str = "", type=None) -> str:
        inputs = tuple(inputs)
        probe = Node(name="_probe", op=op, inputs=inputs, type=type, attrs=make_attrs(attrs))
        if type is None:
            try:
                type = infer_type(probe, [self.type_of(i) for i in inputs])
            except TypeRuleError as e:
                raise FrontendError(f"{self.loc}: {e}") from None
        return self.b.emit(op, inputs, type, attrs, hint=hint or op.value, loc=self.loc)

    def scalar(self, value, dtype: DType) -> str:
        """A 0-d constant of ``dtype`` (Python scalars in arithmetic become these)."""
        v = float(value) if dtype.is_float else bool(value) if dtype is DType.BOOL else int(value)
        return self.emit(Op.FULL, (), {"value": v}, hint="c", type=TensorType((), dtype))

    def param(self, hint: str, array: np.ndarray) -> str:
        return self.b.add_param(hint, array, loc=self.loc)
