"""A small ONNX graph writer with readable, scoped node names (`/depth/step3/layers.1/attn/qkv/MatMul`).

Used for graphs written directly from a checkpoint's weights (voxport/exporter/blocks.py) instead of traced:
onnx.helper builds the protos; this only keeps names unique and scoped, interns weights once (a weight
read by 31 unrolled steps is one initializer), and declares the contrib-op domain.
"""

from __future__ import annotations

import contextlib
import hashlib

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
        if name not in self.initializers:
            arr = np.ascontiguousarray(array)
            self.initializers[name] = numpy_helper.from_array(arr, name)
            self._types[name] = self.initializers[name].data_type
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
        typed = self._typed(self.nodes, {v.name for v in self.inputs + self.outputs})
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs,
                                  initializer=list(self.initializers.values()), value_info=typed)
        return helper.make_model(graph, ir_version=IR_VERSION, producer_name="voxport",
                                 opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)])
