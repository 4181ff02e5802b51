"""Orpheus: how each graph is made in the fp16 / q8 / q4 / q4f16 variants. A graph not named here gets
GraphPrecision(): every MatMul with a constant weight quantized, Gathers left fp32."""

from dataclasses import replace

from voxport.exporter import kv_cache
from voxport.exporter.precision import GraphPrecision

# SNAC's decoder is convolutions (depthwise, weight-normed) and Snake activations: it has no MatMul for
# the quantizers and its output is the audio itself; fp16 runs the convs in half precision.
SNAC = GraphPrecision()

ORPHEUS_PRECISION = {
    # the text embedding table is nearly all of this graph (156,940 x 3,072 released)
    "embed": GraphPrecision(quantize_embeddings=True),
    # the LM layers and the seven head slices are MatMuls (4-bit in q4); the audio rows of the input
    # table are a 2-D Gather. Sampling stays fp32 inside fp16: Gumbel noise and logits / T in fp16 would
    # draw other codes than the fp32 graph for the same noise. Its KV holds the six tokens it drew, so
    # like the codes it follows a discrete choice: reported, not gated (tiny q4: codes agree 43%, KV
    # 2.9-4.1 dB); the LM itself is gated in `lm_step`, the same layers with deterministic outputs.
    # (frame_policy adds the KV names, which depend on the layer count)
    "frame": GraphPrecision(quantize_embeddings=True, sampled_outputs=("codes", "next_embeds"), batched=True,
                            fp16_keep_fp32=("sampling", "audio_sampling", "sample", "repetition_penalty")),
    "snac_decoder": SNAC,
    "snac_window": SNAC,
    "snac_stream": SNAC,
}


def frame_policy(layers: int) -> GraphPrecision:
    kv = tuple(kv_cache.names(kv_cache.OUTPUT, layers))
    base = ORPHEUS_PRECISION["frame"]
    return replace(base, sampled_outputs=base.sampled_outputs + kv)
