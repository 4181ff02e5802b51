"""Precision variants as data: names, file suffixes, fidelity thresholds, and the per-graph policy.

Torch-free and onnx-free. Names and file suffixes live in voxport/dtypes.py (the runtime reads them).

A family declares, per graph, a `GraphPrecision` (`Family.precision_policy`); a graph that declares
nothing gets `GraphPrecision()`: every MatMul with a constant weight quantized, embeddings left as
they are, nothing kept in fp32 inside fp16. Quantization is a pass over the exported fp32 files, so a
graph a family adds later gets all variants without any change here.
"""

from __future__ import annotations

from dataclasses import dataclass, field



@dataclass(frozen=True)
class GraphPrecision:
    """How one graph is made in each variant.

    fp16_keep_fp32: module-path components (torch name scopes, e.g. "decoder_transformer"; for written
        graphs the node-name scope, e.g. "sample") whose
        nodes stay fp32 inside the fp16 and q4f16 files (casts are inserted at the borders).
    quantize_embeddings: also quantize Gather tables, 8-bit (Gather + DequantizeLinear) in q8 and q4
        alike (GatherBlockQuantized, 4-bit, has no kernel in onnxruntime-web's wasm).
    exclude_nodes_like: substrings of node names never quantized (keeps a sensitive MatMul fp32).
    quantize_only_in: when set, only MatMuls inside these module-path components are quantized
        (matched as fp16_keep_fp32 is); the rest keep fp32 weights in q8 and q4.
    unsupported: dtype -> why this graph cannot take it. That variant then reuses the graph's fp32
        file, and the manifest records the precision actually used and the reason.
    sampled_outputs: outputs that follow from a discrete choice inside the graph (codes, and the
        embedding of those codes): one flipped argmax changes them wholesale, so below fp32 their
        figure is reported, not gated (random weights give near-flat logits).
    snr_min_db: dtype -> this graph's SNR gate where it differs from SNR_MIN_DB (say why, measured).
    batched: the graph runs several streams' rows in one call (a frame graph under the scheduler). Its q8
        MatMuls then quantize their activations per row (exporter/quantize.py quantize_q8_rows): with the
        one scale per input of onnxruntime's dynamic quantization, a row's result depends on the other rows
        of the call, and a stream's codes in a batch would not be its codes alone.
    """

    fp16_keep_fp32: tuple[str, ...] = ()
    quantize_embeddings: bool = False
    exclude_nodes_like: tuple[str, ...] = ()
    quantize_only_in: tuple[str, ...] = ()
    unsupported: dict[str, str] = field(default_factory=dict)
    sampled_outputs: tuple[str, ...] = ()
    snr_min_db: dict[str, float] = field(default_factory=dict)
    batched: bool = False


# Fidelity gates, in one place. SNR (dB) of every float output of every graph against fp32 PyTorch,
# worst over the graph's check cases: 10*log10(sum ref^2 / sum (ref - got)^2). Random weights give flat
# logits, so top-1 agreement is reported but the gate is SNR. Set below the worst measured on the
# full-size marvis-250m and on tiny (docs/design.md): fp32 116 dB, fp16 48.5 (backbone logits),
# q8 21.9 (backbone; depth 8.1, below), q4 and q4f16 9.5 (depth logits; backbone 9.9).
SNR_MIN_DB = {"fp32": 90.0, "fp16": 40.0, "q8": 15.0, "q4": 7.0, "q4f16": 7.0}
# a graph's own gates, where a family sets them: GraphPrecision.snr_min_db
# integer outputs (the frame graph's codes): exact in fp32; in the other variants reported, not gated,
# since random weights give near-flat logits whose argmax flips say little (docs/design.md)
CODE_AGREEMENT_MIN = {"fp32": 1.0, "fp16": 0.0, "q8": 0.0, "q4": 0.0, "q4f16": 0.0}


def snr_threshold(policy: GraphPrecision, dtype: str) -> float:
    return policy.snr_min_db.get(dtype, SNR_MIN_DB[dtype])
