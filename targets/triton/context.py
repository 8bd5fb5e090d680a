"""The state one lowering shares between its planning steps (targets/triton/lower.py runs them in order).

Each step reads what the earlier ones decided and adds its own fields:

    inputs / params    buffers and views of the user's inputs and of weights.bin, the batch symbols
    fusion             ``fused_inter``: concatenations that absorb a dot interaction
    clusters           ``cluster_of`` / ``clusters``: fused elementwise kernels
    schedule           ``schedule``: units (node names, cluster ids) in dependency order
    placement          ``hint`` / ``copies``: values written straight into their slot of a concatenation
    emit               ``steps`` / ``sources`` / ``errors``: launches, torch steps, generated kernels

``loc``, ``rows`` and ``materialize`` are the storage helpers the emission rules share.
"""
from __future__ import annotations

from xrec.ir import Graph, Op
from xrec.ir.types import DType, canon_dim

from .program import TEMP, Buffer, ErrorSlot, TorchStep, View, contiguous_strides

WEIGHTS = "weights"                               # the buffer holding weights.bin
ERR = "err"                                       # the error-flag buffer of the bounds checks
KERNEL_INPUT_DTYPES = (DType.F32, DType.F16)      # element types the dense kernels read


class LowerContext:
    def __init__(self, g: Graph, layout: dict, options, lowering=None):
        self.g = g
        self.layout = layout                        # parameter name -> offset/nbytes/dtype/shape in weights.bin
        self.opts = options
        self.lowering = lowering                    # xrec.lowering.TargetLowering of this compile
        self.index = {n.name: k for k, n in enumerate(g.nodes)}
        self.outputs = set(g.outputs)
        # inputs / params
        self.buffers: dict[str, Buffer] = {}
        self.views: dict[str, View] = {}
        self.inputs: list = []                      # [(input name, buffer name)]
        self.symbols: dict[str, tuple] = {}
        self.blob_bytes = 0
        # fusion, clusters, schedule, placement
        self.fused_inter: dict[str, str] = {}       # outer cat -> DOT_INTERACTION it absorbs
        self.cluster_of: dict[str, int] = {}
        self.clusters: dict = {}                    # cluster id -> elementwise.Cluster
        self.schedule: list = []
        self.hint: dict[str, tuple] = {}            # value -> (cat value, first column)
        self.copies: dict[str, list] = {}           # cat value -> [(value, first column)]
        # emission
        self.steps: list = []
        self.jag: dict[str, tuple] = {}             # JAGGED value -> (indices view, offsets view, include_last)
        self.sources: dict[str, str] = {}           # generated kernel name -> source
        self.errors: list[ErrorSlot] = []

    def option(self, name: str, default=None):
        return self.opts.get(name, default)

    def is_cat_rows(self, n) -> bool:
        """``n`` concatenates 2-D values along their columns."""
        t = n.type
        return (n.op is Op.CAT and t.rank == 2 and n.attr("dim") % 2 == 1
                and all(self.g.type_of(i).rank == 2 for i in n.inputs))

    def slot_view(self, cat: str, shape, col) -> View:
        """The window of the concatenation ``cat`` starting at column ``col``."""
        base = self.loc(cat)
        return View(base.buf, base.dtype, shape, base.strides, canon_dim(base.offset + col * base.strides[1]))

    def loc(self, name: str) -> View:
        """Where the value ``name`` is stored (allocating a temp unless it goes into a concat slot)."""
        v = self.views.get(name)
        if v is not None:
            return v
        t = self.g.type_of(name)
        if name in self.hint:
            cat, col = self.hint[name]
            v = self.slot_view(cat, t.shape, col)
        else:
            buf = f"t_{name}"
            self.buffers[buf] = Buffer(buf, TEMP, t.dtype.value, t.shape)
            v = View(buf, t.dtype.value, t.shape, contiguous_strides(t.shape))
        self.views[name] = v
        return v

    def rows(self, name: str) -> View:
        """A 2-D unit-column-stride view of ``name`` (copied by a torch step if it is not one)."""
        v = self.views[name]
        if v.is_rows():
            return v
        return self.materialize(name)

    def materialize(self, name: str) -> View:
        """A contiguous copy of ``name`` (a torch step), which becomes its view from here on."""
        t = self.g.type_of(name)
        buf = f"c_{name}"
        self.buffers[buf] = Buffer(buf, TEMP, t.dtype.value, t.shape)
        out = View(buf, t.dtype.value, t.shape, contiguous_strides(t.shape))
        self.steps.append(TorchStep(node="", inputs=[self.views[name]], jagged=[None], out=out,
                                    note=f"contiguous copy of %{name}"))
        self.views[name] = out
        return out
