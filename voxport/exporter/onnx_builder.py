"""A small ONNX graph writer with readable, scoped node names (`/depth/step3/layers.1/attn/qkv/MatMul`).

Used for graphs written directly from a checkpoint's weights (voxport/exporter/blocks.py) instead of traced:
onnx.helper builds the protos; this only keeps names unique and scoped, interns weights once (a weight
read by 31 unrolled steps is one initializer), and declares the contrib-op domain.

Inside `ExternalData(over).graph(path)` a builder keeps its initializers inline until they pass `over`
bytes, then writes every one of them of 1 KiB or more to `path` and each later one as it is made (a
TensorProto that points at its offset; the array is released): a 3B LM's fp32 weights (12 GB) never sit
in memory twice, as numpy arrays and again as protobuf bytes. A graph under `over` comes out byte for
byte as without it.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# as the traced graphs (torch.onnx): opset 20, IR 10. DequantizeLinear takes fp16 scales from opset 19
# (q4f16's int8 tables); onnx 1.23 would write IR 14, and onnxruntime 1.31 loads up to 13.
OPSET, IR_VERSION = 20, 10
MS_DOMAIN = "com.microsoft"  # onnxruntime's contrib ops (GroupQueryAttention, SkipSimplifiedLayerNormalization)

# Output element types where they are not the first input's. The graph carries them as value_info:
# the fp16 converter needs them to put casts around the nodes it keeps in fp32 (TopK, Max, and the
# policy's blocks), and ONNX shape inference cannot type contrib-op outputs.
_OUT_TYPE = {"Shape": TensorProto.INT64, "ArgMax": TensorProto.INT64, "TopK": (None, TensorProto.INT64),
             **dict.fromkeys(("Greater", "GreaterOrEqual", "Less", "Or"), TensorProto.BOOL)}
_TYPE_FROM_INPUT = {"Where": 1}

_ONNX_DTYPE = {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64, "int32": TensorProto.INT32}

_EXTERNAL: contextvars.ContextVar = contextvars.ContextVar("external_data", default=None)
SMALL_BYTES = 1024  # initializers under this stay inline (onnx.save_model's size_threshold default)
ALIGN = 4096  # each external tensor starts on a page: onnxruntime maps an aligned offset instead of copying


class ExternalData:
    """Where the builders of one export spill initializers once a graph holds more than `over` bytes:
    each graph its own data file (`graph(path)`), except that a weight an earlier graph already wrote
    (same name, type, shape and bytes) is pointed at there, not written again: orpheus-3b's `lm_step`
    reads the frame's 12 GB of LM weights from the frame's file."""

    def __init__(self, over: int):
        self.over = over
        self._written: dict[tuple, tuple[Path, int, int]] = {}
        self._path: Path | None = None
        self._file = None
        self.used: list[Path] = []  # the data files the current graph's tensors point at, in first-use order

    @contextlib.contextmanager
    def graph(self, path: Path):
        """Builders made inside spill to `path` (created only when something new is written there)."""
        self._path, self._file, self.used = Path(path), None, []
        token = _EXTERNAL.set(self)
        try:
            yield self
        finally:
            _EXTERNAL.reset(token)
            if self._file is not None:
                self._file.close()
            self._file = None

    def write(self, t: onnx.TensorProto, data) -> None:
        """Point `t` at its bytes `data` (little-endian), written page-aligned unless already written."""
        key = (t.name, t.data_type, tuple(t.dims), hashlib.sha1(data).digest())
        if key not in self._written:
            if self._file is None:
                self._file = open(self._path, "wb")
            offset = -self._file.tell() % ALIGN + self._file.tell()
            self._file.seek(offset)
            self._file.write(data)
            self._written[key] = (self._path, offset, self._file.tell() - offset)
        path, offset, length = self._written[key]
        if path not in self.used:
            self.used.append(path)
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        del t.external_data[:]
        for k, value in (("location", path.name), ("offset", offset), ("length", length)):
            entry = t.external_data.add()
            entry.key, entry.value = k, str(value)


class GraphBuilder:
    def __init__(self, name: str):
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: dict[str, onnx.TensorProto] = {}
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._scope: list[str] = []
        self._used: dict[str, int] = {}
        self._types: dict[str, int] = {}  # tensor -> ONNX element type
        self._external: ExternalData | None = _EXTERNAL.get()
        self._spilled = False
        self._inline_bytes = 0

    # -- names ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def scope(self, *parts: str):
        self._scope.extend(parts)
        try:
            yield
        finally:
            del self._scope[len(self._scope) - len(parts):]

    def _node_name(self, label: str) -> str:
        base = "/" + "/".join([*self._scope, label])
        n = self._used.get(base, 0)
        self._used[base] = n + 1
        return base if n == 0 else f"{base}_{n}"

    # -- graph I/O and weights --------------------------------------------------------------------
    def input(self, name: str, dtype: str, shape) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, _ONNX_DTYPE[dtype], list(shape)))
        self._types[name] = _ONNX_DTYPE[dtype]
        return name

    def output(self, value: str, name: str, dtype: str, shape) -> None:
        """Declare `value` a graph output called `name` (renaming the producer's output)."""
        self._types[name] = self._types.get(value)
        for node in self.nodes:
            for i, o in enumerate(node.output):
                if o == value:
                    node.output[i] = name
            for i, x in enumerate(node.input):
                if x == value:
                    node.input[i] = name
        self.outputs.append(helper.make_tensor_value_info(name, _ONNX_DTYPE[dtype], list(shape)))

    def weight(self, name: str, array) -> str:
        """A named initializer, stored once however many nodes read it."""
        if name in self.initializers:
            return name
        arr = np.ascontiguousarray(array)
        if not self._spilled and self._external and self._inline_bytes + arr.nbytes > self._external.over:
            self._spilled = True
            for t in self.initializers.values():
                if len(t.raw_data) >= SMALL_BYTES:
                    self._external.write(t, t.raw_data)
        if self._spilled and arr.nbytes >= SMALL_BYTES and arr.dtype.kind in "fiub":
            t = onnx.TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(arr.dtype), dims=arr.shape)
            self._external.write(t, memoryview(arr.astype(arr.dtype.newbyteorder("<"), copy=False)).cast("B"))
        else:
            t = numpy_helper.from_array(arr, name)
            self._inline_bytes += arr.nbytes
        self.initializers[name] = t
        self._types[name] = t.data_type
        return name

    def const(self, value, dtype=np.int64) -> str:
        """A small constant (shapes, axes, scalars), named by its value."""
        arr = np.asarray(value, dtype=dtype)
        values = "_".join(str(v) for v in arr.ravel()) if arr.size <= 8 else hashlib.sha1(arr.tobytes()).hexdigest()[:12]
        key = f"const_{arr.dtype}_{'x'.join(map(str, arr.shape)) or 's'}_{values}"
        return self.weight(key.replace("-", "m").replace(".", "p"), arr)

    # -- nodes ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def branch(self):
        """Nodes added inside go to a list of their own (a subgraph's body; see `subgraph`)."""
        saved, self.nodes = self.nodes, []
        body = self.nodes
        try:
            yield body
        finally:
            self.nodes = saved

    def subgraph(self, name: str, nodes: list, outputs: list[str]) -> onnx.GraphProto:
        """A control-flow body: `nodes` (from `branch`), reading outer-scope values by name."""
        return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(o, self._types[o], None) for o in outputs],
                                 value_info=self._typed(nodes, set(outputs)))

    def _typed(self, nodes, declared) -> list:
        return [helper.make_tensor_value_info(o, self._types[o], None) for n in nodes for o in n.output
                if o and o not in declared and self._types.get(o) is not None]

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, label: str | None = None,
           domain: str = "", unused: tuple[int, ...] = (), out_types: tuple | None = None,
           **attrs) -> str | list[str]:
        """Add a node named /<scope>/<label>/<op_type>; returns its output name(s). Optional outputs
        listed in `unused` are left out (named ""); `out_types` gives the output element types where
        they follow from no input (If)."""
        name = self._node_name(f"{label}/{op_type}" if label else op_type)
        outs = ["" if i in unused else f"{name}_output_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, domain=domain or None, **attrs))
        same = self._types.get(inputs[_TYPE_FROM_INPUT.get(op_type, 0)]) if inputs else None
        types = out_types or (attrs["to"] if op_type == "Cast" else _OUT_TYPE.get(op_type, same))
        for i, o in enumerate(outs):
            if not o:
                continue
            t = types[i] if isinstance(types, tuple) else types
            self._types[o] = t if t is not None else same
        return outs[0] if n_out == 1 else outs

    def ms(self, op_type: str, inputs: list[str], n_out: int = 1, label: str | None = None,
           unused: tuple[int, ...] = (), **attrs):
        return self.op(op_type, inputs, n_out, label, domain=MS_DOMAIN, unused=unused, **attrs)

    def model(self) -> onnx.ModelProto:
        """The finished model; spilled initializers point at their data files by name (ExternalData:
        save the model beside them, once the `graph` block has closed them)."""
        typed = self._typed(self.nodes, {v.name for v in self.inputs + self.outputs})
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs,
                                  initializer=list(self.initializers.values()), value_info=typed)
        return helper.make_model(graph, ir_version=IR_VERSION, producer_name="voxport",
                                 opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)])
