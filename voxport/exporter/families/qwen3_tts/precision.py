"""Qwen3-TTS: how each graph is made in the fp16 / q8 / q4 / q4f16 variants. A graph not named here gets
GraphPrecision(): every MatMul with a constant weight quantized, Gathers left fp32. CSM's reasons carry
over; the fidelity gates of `voxport parity --dtypes all` measure each on the tiny preset."""

from voxport.exporter.precision import GraphPrecision

ENCODER_REASON = ("its output is discrete codes (an argmin over codebook distances): a quantized encoder "
                  "flips codes; it runs once per voice prompt, not per frame")
# Measured with the released dimensions (random weights, 8.9 M parameters) and the tiny preset, x-vector
# cosine vs fp32 on 0.3 - 5 s voice-like signals: fp16 (everything, the DFT Conv and mel MatMul
# included) >= 0.999999; the default q8 / q4 touch one MatMul, the mel filterbank (the ECAPA-TDNN is all
# Conv), and drop it to 0.990 / 0.955.
SPEAKER_REASON = ("its only MatMul is the log-mel filterbank (the ECAPA-TDNN is Conv): quantizing it gives an "
                  "x-vector cosine of 0.990 (8-bit) / 0.955 (4-bit) vs fp32 and saves nothing; it runs once per "
                  "voice prompt")

QWEN_PRECISION: dict[str, GraphPrecision] = {
    # the text embedding table is most of this graph (151,936 x 2,048 in the released models)
    "prompt_embed": GraphPrecision(quantize_embeddings=True),
    # as CSM's depth decoder: the first call holds the talker's hidden state and a code embedding in one
    # tensor at different scales, which q8's per-tensor activation quantization hurts (tiny: 9.5 dB on
    # present.0.key, q4's weight-only 15.7): its q8 gate is 6 dB
    "code_predictor": GraphPrecision(quantize_embeddings=True, snr_min_db={"q8": 6.0}),
    # the frame graph holds the codec tables (2-D Gathers) and 16 heads (MatMuls); its sampled outputs
    # are gated by code agreement, not SNR
    # (the talker's and the code predictor's settings, both fp32 inside fp16 as CSM's)
    "frame": GraphPrecision(quantize_embeddings=True, sampled_outputs=("codes", "next_embeds"), batched=True,
                            fp16_keep_fp32=("sampling", "predictor_sampling", "sample")),
    "codec_encoder": GraphPrecision(unsupported={d: ENCODER_REASON for d in ("fp16", "q8", "q4", "q4f16")}),
    "speaker_encoder": GraphPrecision(unsupported={d: SPEAKER_REASON for d in ("q8", "q4", "q4f16")}),
}
