"""Qwen3-TTS: how each graph is made in the fp16 / q8 / q4 / q4f16 variants. A graph not named here gets
GraphPrecision(): every MatMul with a constant weight quantized, Gathers left fp32."""

from voxport.exporter.precision import GraphPrecision

# Measured with the released dimensions (random weights, 8.9 M parameters) and the tiny preset, x-vector
# cosine vs fp32 on 0.3 - 5 s voice-like signals: fp16 (everything, the DFT Conv and mel MatMul
# included) >= 0.999999; the default q8 / q4 touch one MatMul, the mel filterbank (the ECAPA-TDNN is all
# Conv), and drop it to 0.990 / 0.955.
SPEAKER_REASON = ("its only MatMul is the log-mel filterbank (the ECAPA-TDNN is Conv): quantizing it gives an "
                  "x-vector cosine of 0.990 (8-bit) / 0.955 (4-bit) vs fp32 and saves nothing; it runs once per "
                  "voice prompt")

QWEN_PRECISION: dict[str, GraphPrecision] = {
    "speaker_encoder": GraphPrecision(unsupported={d: SPEAKER_REASON for d in ("q8", "q4", "q4f16")}),
}
