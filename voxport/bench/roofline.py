"""The floor a frame cannot beat on this machine: the bytes of weights one frame reads, divided by
the measured memory read bandwidth.

The bytes come from the fused `frame` graph itself. Every initializer is read once per node that
consumes it: the depth decoder's weights have one consumer per unrolled step (31), the backbone's
one, so the count follows the graph and not a formula about the architecture. Tables a node reads
a few rows of are left out: embeddings (inputs of Gather-type nodes) and the rotary cos/sin caches of
GroupQueryAttention (one row per position).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import onnx


def _nbytes(t: onnx.TensorProto) -> int:
    n = 1
    for d in t.dims:
        n *= d
    bits = 4 if t.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4) else \
        8 * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    return n * bits // 8


_ROW_READ = {"GroupQueryAttention": (7, 8)}  # cos_cache, sin_cache


def weight_bytes_per_frame(graph: Path) -> dict:
    """{'read': bytes read per frame, 'stored': bytes of all initializers, 'tables': embedding tables}."""
    g = onnx.load(str(graph), load_external_data=False).graph  # sizes come from dims; data stays on disk
    size = {t.name: _nbytes(t) for t in g.initializer}
    readers: dict[str, int] = defaultdict(int)
    tables = set()
    for node in g.node:
        for i, name in enumerate(node.input):
            if name not in size:
                continue
            if node.op_type.startswith("Gather") or i in _ROW_READ.get(node.op_type, ()):
                tables.add(name)
            else:
                readers[name] += 1
    return {"read": sum(size[n] * k for n, k in readers.items()), "stored": sum(size.values()),
            "tables": sum(size[n] for n in tables)}


def floor_ms(bytes_read: int, bandwidth_gbs: float) -> float:
    return bytes_read / (bandwidth_gbs * 1e9) * 1e3
