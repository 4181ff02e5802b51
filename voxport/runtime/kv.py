"""The frame graph's static KV cache in the runtime: preallocated buffers bound in place.

The manifest's frame cache (layout "static") names a past input and a present output per layer and
kv, both [slots, kv_heads, capacity, head_dim], and a lengths input [slots]. One numpy buffer per name
is wrapped as an OrtValue (sharing its memory) and bound as both the past input and the present
output, so onnxruntime's GroupQueryAttention writes each call's new positions into it in place:
no cache is copied or grown from frame to frame. Rows are streams; rows [0, n) of a buffer are a
contiguous view, so a call over the first n slots binds views, not copies.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from voxport.errors import ArtifactError


def cache_names(spec: dict) -> tuple[list[str], list[str]]:
    """(past input names, present output names), in the same order, from a manifest cache entry."""
    pairs = [(i, kv) for i in range(spec["layers"]) for kv in spec["kv"]]
    return ([spec["input"].format(layer=i, kv=kv) for i, kv in pairs],
            [spec["output"].format(layer=i, kv=kv) for i, kv in pairs])


class StaticCache:
    """Buffers for `slots` streams of at most `capacity` positions each, and each row's length."""

    def __init__(self, spec: dict, slots: int, capacity: int):
        if spec.get("layout") != "static":
            raise ArtifactError("this artifact's frame graph grows its KV cache (exported before voxport kept it "
                                "in static buffers); re-export it")
        if not 1 <= capacity <= spec["capacity"]:
            raise ValueError(f"capacity {capacity} outside 1..{spec['capacity']}")
        self.inputs, self.outputs = cache_names(spec)
        self.lengths_input = spec["lengths"]
        self.capacity, self.slots = capacity, slots
        shape = (slots, spec["kv_heads"], capacity, spec["head_dim"])
        self.buffers = [np.zeros(shape, np.float32) for _ in self.inputs]
        self.lengths = np.zeros(slots, np.int64)

    def bound(self, start: int, stop: int) -> dict[str, tuple[str, np.ndarray]]:
        """present output -> (past input, rows start..stop-1 of its buffer): what run_bound shares."""
        return {o: (i, b[start:stop]) for i, o, b in zip(self.inputs, self.outputs, self.buffers)}

    def move(self, src: int, dst: int) -> None:
        """Row src's cache (its valid positions) into row dst: keeps the active rows first."""
        n = int(self.lengths[src])
        for b in self.buffers:
            b[dst, :, :n] = b[src, :, :n]
        self.lengths[dst] = n

    def load(self, dst: int, other: "StaticCache", src: int = 0) -> None:
        """Row src of another cache (its valid positions) into row dst of this one."""
        n = int(other.lengths[src])
        for mine, theirs in zip(self.buffers, other.buffers):
            mine[dst, :, :n] = theirs[src, :, :n]
        self.lengths[dst] = n

    def swap(self, a: int, b: int) -> None:
        """Rows a and b trade caches (their valid positions)."""
        na, nb = int(self.lengths[a]), int(self.lengths[b])
        for buf in self.buffers:
            keep = buf[a, :, :na].copy()
            buf[a, :, :nb] = buf[b, :, :nb]
            buf[b, :, :na] = keep
        self.lengths[[a, b]] = nb, na


def run_bound(session: ort.InferenceSession, feeds: dict[str, np.ndarray], outputs: list[str],
              shared: dict[str, tuple[str, np.ndarray]]) -> list[np.ndarray]:
    """One run with each shared output bound to the same memory as its input (written in place);
    returns the other `outputs` as numpy. Arrays in `shared` must be C-contiguous (a row range is)."""
    io = session.io_binding()
    for name, value in feeds.items():
        io.bind_cpu_input(name, np.ascontiguousarray(value))
    for name in outputs:  # bound first: IO binding returns outputs in the order they were bound
        io.bind_output(name, "cpu")
    for out, (inp, array) in shared.items():
        if not array.flags.c_contiguous:
            raise ValueError(f"{inp}: a shared buffer must be contiguous")
        value = ort.OrtValue.ortvalue_from_numpy(array)
        io.bind_ortvalue_input(inp, value)
        io.bind_ortvalue_output(out, value)
    session.run_with_iobinding(io)
    got = io.get_outputs()
    return [got[i].numpy() for i in range(len(outputs))]
