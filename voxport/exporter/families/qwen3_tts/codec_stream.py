"""Qwen3-TTS's 12 Hz codec decoder as a streaming module: codes for 1..n frames + state -> waveform +
new state.

Every layer of the decoder is causal (left-padded convs, right-trimmed transposed convs, a 72-frame
sliding-window transformer), so a stream with carried state equals the decode of the whole input.
This maps its modules onto the generic streaming modules (voxport/exporter/streaming.py), reusing
their weights; the transformer keeps a fixed window of past keys/values and an absolute step offset.
"""

from __future__ import annotations

import torch
from torch import nn

from voxport.errors import CheckpointError
from voxport.exporter.families.qwen3_tts.reference import reference
from voxport.exporter.streaming import (ChannelsLast, Stateless, StreamingConv1d, StreamingConvNeXt,
                                        StreamingConvTranspose1d, StreamingModule, StreamingResidual,
                                        StreamingSequential, StreamingWindowedTransformer)

_PREFIX = "Qwen3TTSTokenizerV2"


def to_streaming(module: nn.Module) -> StreamingModule:
    """A conv-side module of the codec decoder -> its streaming counterpart (same weights, no copies)."""
    kind = type(module).__name__.removeprefix(_PREFIX)
    if kind == "CausalConvNet":  # left padding = effective kernel - stride, as the batch forward pads
        return StreamingConv1d(module.conv, module.padding, as_2d=True)
    if kind == "CausalTransConvNet":
        if module.left_pad != 0:
            raise CheckpointError(f"streaming needs transposed convs trimmed on the right, got left_pad={module.left_pad}")
        return StreamingConvTranspose1d(module.conv)
    if kind == "ConvNeXtBlock":
        return StreamingConvNeXt(to_streaming(module.dwconv), module)
    if kind == "DecoderDecoderResidualUnit":
        block = StreamingSequential({n: to_streaming(getattr(module, n)) for n in ("act1", "conv1", "act2", "conv2")})
        return StreamingResidual(block, Stateless(nn.Identity()))
    if kind == "DecoderDecoderBlock":
        return to_streaming(module.block)
    if kind == "SnakeBeta":
        return Stateless(module)
    if isinstance(module, nn.ModuleList):
        return StreamingSequential({f"{i}": to_streaming(m) for i, m in enumerate(module)})
    raise CheckpointError(f"no streaming form for Qwen3-TTS codec module {type(module).__name__}")


def streaming_transformer(t: nn.Module, apply_rotary) -> StreamingModule:
    """The decoder's pre_transformer ([B, C, T] in and out): input_proj -> windowed layers -> norm ->
    output_proj."""
    cfg = t.config
    if any(kind != "sliding_attention" for kind in cfg.layer_types):
        raise CheckpointError(f"streaming Qwen3-TTS codec needs sliding-window layers, got {cfg.layer_types}")
    head_dim = getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads)
    layers = StreamingWindowedTransformer(t.layers, t.rotary_emb, apply_rotary, cfg.sliding_window,
                                          cfg.num_attention_heads, cfg.num_key_value_heads, head_dim)
    return ChannelsLast(StreamingSequential({"input_proj": Stateless(t.input_proj), "layers": layers,
                                             "norm": Stateless(t.norm), "output_proj": Stateless(t.output_proj)}))


class StreamingCodecDecoder(StreamingModule):
    """codes [B, 16, n] -> waveform [B, 1, n * 1920]: quantizer (per frame, no state) -> pre_conv ->
    transformer -> upsample -> decoder, all streaming; clamped to [-1, 1] like the batch forward."""

    def __init__(self, model: nn.Module):
        super().__init__()
        dec = model.decoder
        with reference() as qt:
            apply_rotary = qt.codec.apply_rotary_pos_emb
        self.quantizer = dec.quantizer
        self.max_code = dec.config.codebook_size - 1
        self.body = StreamingSequential({
            "pre_conv": to_streaming(dec.pre_conv),
            "pre_transformer": streaming_transformer(dec.pre_transformer, apply_rotary),
            "upsample": to_streaming(dec.upsample),
            "decoder": to_streaming(dec.decoder),
        })

    def state_specs(self):
        return self.body.state_specs()

    def forward(self, codes, state):
        latents = self.quantizer.decode(torch.clamp(codes, 0, self.max_code))
        wav, new = self.body(latents, state)
        return wav.clamp(min=-1, max=1), new


class CodecDecodeStream(nn.Module):
    """Export wrapper: (audio_codes, *state) -> (audio_values, *new_state), state flattened."""

    def __init__(self, model):
        super().__init__()
        self.stream = StreamingCodecDecoder(model)

    def forward(self, audio_codes, *state):
        audio, new = self.stream(audio_codes, list(state))
        return (audio, *new)
