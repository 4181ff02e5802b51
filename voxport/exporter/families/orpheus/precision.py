"""Orpheus: how each graph is made in the fp16 / q8 / q4 / q4f16 variants. A graph not named here gets
GraphPrecision(): every MatMul with a constant weight quantized, Gathers left fp32."""

from voxport.exporter.precision import GraphPrecision

# SNAC's decoder is convolutions (depthwise, weight-normed) and Snake activations: it has no MatMul for
# the quantizers and its output is the audio itself; fp16 runs the convs in half precision.
SNAC = GraphPrecision()

ORPHEUS_PRECISION = {
    # the text embedding table is nearly all of this graph (156,940 x 3,072 released)
    "embed": GraphPrecision(quantize_embeddings=True),
    # the LM layers and the seven head slices are MatMuls (4-bit in q4); the audio rows of the input
    # table are a 2-D Gather. Sampling stays fp32 inside fp16: Gumbel noise and logits / T in fp16 would
    # draw other codes than the fp32 graph for the same noise. Codes are gated by agreement, not SNR.
    "frame": GraphPrecision(quantize_embeddings=True, sampled_outputs=("codes", "next_embeds"),
                            fp16_keep_fp32=("sampling", "audio_sampling", "sample", "repetition_penalty")),
    "snac_decoder": SNAC,
    "snac_window": SNAC,
    "snac_stream": SNAC,
}
