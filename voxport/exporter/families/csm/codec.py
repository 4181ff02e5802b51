"""Mimi's decoder as a streaming module: codes for 1..n frames + state -> waveform + new state.

transformers' Mimi decoder has no streaming state (decoding frame by frame without it differs from
the batch decode by ~12 on a random model, measured). This maps its modules onto the
generic streaming modules in voxport/exporter/streaming.py, reusing their weights; the decoder
transformer keeps a fixed window of past keys/values and an absolute step offset (for RoPE and the
sliding-window mask). Streaming output equals the batch decode
because every layer is causal; validation proves it across the window wrap.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.mimi.modeling_mimi import apply_rotary_pos_emb

from voxport.exporter.streaming import (ChannelsLast, Stateless, StreamingConv1d, StreamingConvTranspose1d,
                                        StreamingModule, StreamingResidual, StreamingSequential,
                                        StreamingWindowedTransformer)
from voxport.errors import CheckpointError


def to_streaming(module: nn.Module, as_matmul: bool = False) -> StreamingModule:
    """A SEANet module of Mimi -> its streaming counterpart (same weights, no copies but a MatMul conv's
    weight). as_matmul: a conv (MimiConv1d) runs as one MatMul (StreamingConv1d); other modules ignore it."""
    kind = type(module).__name__
    if kind == "MimiConv1d":
        if not module.causal or module.pad_mode not in ("constant", "zeros"):
            raise CheckpointError(f"streaming Mimi needs causal zero-padded convs, got causal={module.causal} "
                                  f"pad_mode={module.pad_mode!r}")
        c = module.conv
        return StreamingConv1d(c, (c.kernel_size[0] - 1) * c.dilation[0] + 1 - c.stride[0], as_matmul=as_matmul)
    if kind == "MimiConvTranspose1d":
        if not module.causal or module.padding_left != 0:
            raise CheckpointError("streaming Mimi needs causal transposed convs trimmed on the right")
        return StreamingConvTranspose1d(module.conv)
    if kind == "MimiResnetBlock":
        block = StreamingSequential({f"{i}": to_streaming(m) for i, m in enumerate(module.block)})
        return StreamingResidual(block, to_streaming(module.shortcut))
    if kind == "MimiDecoder":
        # its first conv (512 -> 1,024 channels, kernel 7 at marvis-250m) sees the transformer's 2 steps a
        # frame: as a MatMul, 12-19 ms less per codec call in the page's wasm build and 0.3-0.4 ms natively
        # (StreamingConv1d); the later convs see 16-1,920 steps, where a Conv is as fast or faster
        return StreamingSequential({f"layers.{i}": to_streaming(m, as_matmul=i == 0) for i, m in enumerate(module.layers)})
    if isinstance(module, (nn.ELU, nn.Identity)):
        return Stateless(module)
    raise CheckpointError(f"no streaming form for Mimi module {kind}")


def streaming_mimi_transformer(transformer: nn.Module) -> StreamingWindowedTransformer:
    """Mimi's decoder transformer over a stream, input [B, T, C]: a fixed window of past keys/values
    per layer and the absolute step offset."""
    cfg = transformer.config
    return StreamingWindowedTransformer(transformer.layers, transformer.rotary_emb, apply_rotary_pos_emb,
                                        cfg.sliding_window, cfg.num_attention_heads, cfg.num_key_value_heads,
                                        cfg.head_dim)


class StreamingMimiDecoder(StreamingModule):
    """codes [B, K, n] -> waveform [B, 1, n * frame_size]: quantizer (stateless per frame) ->
    upsample -> decoder transformer -> SEANet decoder, all streaming."""

    def __init__(self, codec: nn.Module):
        super().__init__()
        dec = codec.decoder
        self.quantizer = codec.quantizer
        self.max_code = codec.config.codebook_size - 1
        parts = {}
        if dec.upsample is not None:
            parts["upsample"] = to_streaming(dec.upsample)
        parts["decoder_transformer"] = ChannelsLast(streaming_mimi_transformer(dec.decoder_transformer))
        parts["decoder_seanet"] = to_streaming(dec.decoder_seanet)
        self.body = StreamingSequential(parts)

    def state_specs(self):
        return self.body.state_specs()

    def forward(self, codes, state):
        latents = self.quantizer.decode(torch.clamp(codes, 0, self.max_code))
        return self.body(latents, state)


class MimiDecodeStream(nn.Module):
    """Export wrapper: (audio_codes, *state) -> (audio_values, *new_state), state flattened."""

    def __init__(self, model):
        super().__init__()
        self.stream = StreamingMimiDecoder(model.codec_model)

    def forward(self, audio_codes, *state):
        audio, new = self.stream(audio_codes, list(state))
        return (audio, *new)
