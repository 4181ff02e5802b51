"""CSM / Marvis: how each graph is made in the fp16 / q8 / q4 / q4f16 variants (measured; docs/design.md).

A graph not named here (`frame`: its 31 codebook heads are MatMuls, so 4-bit) gets GraphPrecision(): every MatMul
with a constant weight quantized, Gathers left fp32, nothing held in fp32 inside fp16.
"""

from voxport.exporter.precision import GraphPrecision

ENCODER_REASON = ("its output is discrete codes (an argmin over codebook distances): on the tiny preset "
                  "q8 flips 42% of the codes at one check case, fp16 12%, q4 9%; it runs once per voice prompt, not per frame")

CSM_PRECISION = {
    # the text and audio embedding tables are most of this graph (marvis: 75 M + 100 M parameters)
    "embed": GraphPrecision(quantize_embeddings=True),
    # its codebook embedding table and the 31 codebook heads (one [31, Hd, V] table read with a
    # Gather) are 8-bit in q8 and q4; the `frame` graph has the heads as 31 MatMuls (4-bit in q4)
    # q8's dynamic per-tensor activation quantization hurts its first call, where the projected backbone
    # state and a code embedding share one tensor at different scales (marvis-250m: 8.1 dB, worse than
    # q4's weight-only 9.5): its q8 gate is 6 dB
    "depth": GraphPrecision(quantize_embeddings=True, snr_min_db={"q8": 6.0}),
    # Mimi's decoder transformer has a large residual stream (public reports: |x| ~ 27 in fp16);
    # kept fp32 inside the fp16 codec
    "mimi_decoder": GraphPrecision(fp16_keep_fp32=("decoder_transformer",)),
    # the fused frame graph: its 31 codebook heads are plain MatMuls (4-bit in q4), and it holds the
    # backbone's audio embedding and the depth decoder's code embedding tables (2-D Gathers)
    # sampling stays fp32 inside fp16: Gumbel noise and logits/T in fp16 would draw other codes than
    # the fp32 step loop and the page for the same noise
    "frame": GraphPrecision(quantize_embeddings=True, sampled_outputs=("codes", "next_embeds"), batched=True,
                            fp16_keep_fp32=("sampling", "sample")),
    # its SEANet transposed convs run as MatMuls (voxport/exporter/streaming.py); they make the audio itself,
    # so their weights stay fp32 and only the transformer's are quantized, as in the batch decoder
    # (4-bit with int8 activations there: page vs Python audio fell from > 40 dB SNR to 32 dB on tiny)
    "mimi_decoder_stream": GraphPrecision(fp16_keep_fp32=("decoder_transformer",),
                                          quantize_only_in=("decoder_transformer",)),
    "mimi_encoder": GraphPrecision(unsupported={d: ENCODER_REASON for d in ("fp16", "q8", "q4", "q4f16")}),
}
