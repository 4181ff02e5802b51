"""A small ONNX graph writer with readable, scoped node names (`/depth/step3/layers.1/attn/qkv/MatMul`).

Used for graphs written directly from a checkpoint's weights (exporter/blocks.py) instead of traced:
onnx.helper builds the protos; this only keeps names unique and scoped, interns weights once (a weight
read by 31 unrolled steps is one initializer), and declares the contrib-op domain.
"""

from __future__ import annotations

import contextlib
import hashlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17  # onnxruntime-web 1.30 and onnxruntime 1.31 run it; Split takes equal parts without sizes
MS_DOMAIN = "com.microsoft"  # onnxruntime's contrib ops (GroupQueryAttention, SkipSimplifiedLayerNormalization)
IR_VERSION = 8  # onnx 1.23 writes IR 14 by default; onnxruntime 1.31 loads up to 13

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
        return name

    def output(self, value: str, name: str, dtype: str, shape) -> None:
        """Declare `value` a graph output called `name` (renaming the producer's output)."""
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
        return name

    def const(self, value, dtype=np.int64) -> str:
        """A small constant (shapes, axes, scalars), named by its value."""
        arr = np.asarray(value, dtype=dtype)
        values = "_".join(str(v) for v in arr.ravel()) if arr.size <= 8 else hashlib.sha1(arr.tobytes()).hexdigest()[:12]
        key = f"const_{arr.dtype}_{'x'.join(map(str, arr.shape)) or 's'}_{values}"
        return self.weight(key.replace("-", "m").replace(".", "p"), arr)

    # -- nodes ------------------------------------------------------------------------------------
    def op(self, op_type: str, inputs: list[str], n_out: int = 1, label: str | None = None,
           domain: str = "", **attrs) -> str | list[str]:
        """Add a node named /<scope>/<label>/<op_type>; returns its output name(s)."""
        name = self._node_name(f"{label}/{op_type}" if label else op_type)
        outs = [f"{name}_output_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, domain=domain or None, **attrs))
        return outs[0] if n_out == 1 else outs

    def ms(self, op_type: str, inputs: list[str], n_out: int = 1, label: str | None = None, **attrs):
        return self.op(op_type, inputs, n_out, label, domain=MS_DOMAIN, **attrs)

    def model(self) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs,
                                  initializer=list(self.initializers.values()))
        return helper.make_model(graph, ir_version=IR_VERSION, producer_name="voxport",
                                 opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)])
