"""KV cache names, tensor specs and the manifest's cache contract: one place for every graph and family.

Two layouts. The step graphs keep a growing cache (`past_key_values.{layer}.{kv}` [batch, kv_heads,
past, head_dim] in, `present.*` [batch, kv_heads, past + seq, head_dim] out). The frame graphs keep a
static one: preallocated buffers [slots, kv_heads, capacity, head_dim] with per-row lengths
(`cache_lengths` [slots]), each present output the same shape as its past input, so a runtime binds
one buffer as both and the graph writes the new positions in place (onnxruntime's
GroupQueryAttention with past and present sharing a buffer).
"""

from __future__ import annotations

from voxport.exporter.spec import TensorSpec

INPUT, OUTPUT = "past_key_values.{layer}.{kv}", "present.{layer}.{kv}"
KV = ("key", "value")
LENGTHS = "cache_lengths"  # [slots] int64: positions each row holds before the call


def names(template: str, layers: int) -> list[str]:
    return [template.format(layer=i, kv=kv) for i in range(layers) for kv in KV]


def kv_specs(template: str, layers: int, kv_heads: int, head_dim: int, seq_axis: str,
             batch: str | int = "batch") -> list[TensorSpec]:
    return [TensorSpec(n, "float32", (batch, kv_heads, seq_axis, head_dim)) for n in names(template, layers)]


def inplace(layers: int) -> dict[str, str]:
    """A static-cache graph's present outputs -> the past inputs they share a buffer with."""
    return dict(zip(names(OUTPUT, layers), names(INPUT, layers)))


def valid_positions(embeds: str):
    """A static-cache graph's written positions per row, from its feeds: lengths + the new positions
    (axis 1 of the `embeds` input)."""
    return lambda feeds: feeds[LENGTHS] + feeds[embeds].shape[1]


def contract(layers: int, kv_heads: int, head_dim: int, capacity: int | None = None) -> dict:
    """The manifest's cache entry. capacity given: the static layout (buffers of at most `capacity`
    positions, rows on axis 0, positions on axis 2, lengths in `lengths`); else the growing one."""
    c = {"layers": layers, "kv_heads": kv_heads, "head_dim": head_dim, "kv": list(KV), "input": INPUT, "output": OUTPUT}
    if capacity is not None:
        c.update(layout="static", capacity=capacity, slots_axis=0, positions_axis=2, lengths=LENGTHS, shared=True)
    return c
