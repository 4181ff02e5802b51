"""Mimi's decoder as a streaming module: codes for 1..n frames + state -> waveform + new state.

transformers' Mimi decoder has no streaming state (decoding frame by frame without it differs from
the batch decode by ~12 on a random model, measured). This maps its modules onto the
generic streaming modules in voxport/exporter/streaming.py, reusing their weights, and adds the one
Mimi-specific piece: the decoder transformer with a fixed window of past keys/values and an absolute
step offset (for RoPE and the sliding-window mask). Streaming output equals the batch decode
because every layer is causal; validation proves it across the window wrap.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.mimi.modeling_mimi import apply_rotary_pos_emb

from voxport.exporter.streaming import (StateSpec, Stateless, StreamingConv1d, StreamingConvTranspose1d,
                                StreamingModule, StreamingResidual, StreamingSequential)
from voxport.errors import CheckpointError


def to_streaming(module: nn.Module) -> StreamingModule:
    """A SEANet module of Mimi -> its streaming counterpart (same weights, no copies)."""
    kind = type(module).__name__
    if kind == "MimiConv1d":
        if not module.causal or module.pad_mode not in ("constant", "zeros"):
            raise CheckpointError(f"streaming Mimi needs causal zero-padded convs, got causal={module.causal} "
                                  f"pad_mode={module.pad_mode!r}")
        c = module.conv
        return StreamingConv1d(c, (c.kernel_size[0] - 1) * c.dilation[0] + 1 - c.stride[0])
    if kind == "MimiConvTranspose1d":
        if not module.causal or module.padding_left != 0:
            raise CheckpointError("streaming Mimi needs causal transposed convs trimmed on the right")
        return StreamingConvTranspose1d(module.conv)
    if kind == "MimiResnetBlock":
        block = StreamingSequential({f"{i}": to_streaming(m) for i, m in enumerate(module.block)})
        return StreamingResidual(block, to_streaming(module.shortcut))
    if kind == "MimiDecoder":
        return StreamingSequential({f"layers.{i}": to_streaming(m) for i, m in enumerate(module.layers)})
    if isinstance(module, (nn.ELU, nn.Identity)):
        return Stateless(module)
    raise CheckpointError(f"no streaming form for Mimi module {kind}")


class StreamingMimiTransformer(StreamingModule):
    """Mimi's decoder transformer over a stream, input [B, T, C]. State per layer: the last `window`
    keys and values (slot j holds step offset - window + j; slots before step 0 are masked), plus the
    absolute step offset. Fixed-size state keeps the graph's shapes static across calls."""

    def __init__(self, transformer: nn.Module):
        super().__init__()
        self.t = transformer
        cfg = transformer.config
        self.window = int(cfg.sliding_window)
        self.kv_heads, self.head_dim = cfg.num_key_value_heads, cfg.head_dim
        self.groups = cfg.num_attention_heads // cfg.num_key_value_heads

    def state_specs(self):
        kv = [StateSpec(f"layers.{i}.{n}", (self.kv_heads, self.window, self.head_dim))
              for i in range(len(self.t.layers)) for n in ("key", "value")]
        return [*kv, StateSpec("offset", (), "int64")]

    def forward(self, x, state):
        b, n = x.shape[0], x.shape[1]
        offset = state[-1]  # [B]
        steps = torch.arange(n, device=x.device)
        pos = offset[:, None] + steps  # [B, n] absolute steps of the new inputs
        key_pos = torch.cat([offset[:, None] - self.window + torch.arange(self.window, device=x.device), pos], 1)
        q_pos, k_pos = pos[:, :, None], key_pos[:, None, :]
        # transformers' sliding window: a query at step p sees steps p - window < s <= p
        allowed = (k_pos >= 0) & (k_pos <= q_pos) & (k_pos > q_pos - self.window)
        mask = torch.where(allowed, 0.0, float("-inf")).to(x.dtype)[:, None]  # [B, 1, n, window + n]
        cos, sin = self.t.rotary_emb(x, pos)
        new = []
        for i, layer in enumerate(self.t.layers):
            x, k, v = self._layer(layer, x, state[2 * i], state[2 * i + 1], cos, sin, mask)
            new += [k[:, :, n:], v[:, :, n:]]
        return x, [*new, offset + n]

    def _layer(self, layer, x, past_k, past_v, cos, sin, mask):
        attn = layer.self_attn
        b, n = x.shape[0], x.shape[1]
        h = layer.input_layernorm(x)
        q = attn.q_proj(h).view(b, n, -1, self.head_dim).transpose(1, 2)
        k = attn.k_proj(h).view(b, n, -1, self.head_dim).transpose(1, 2)
        v = attn.v_proj(h).view(b, n, -1, self.head_dim).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        k, v = torch.cat([past_k, k], 2), torch.cat([past_v, v], 2)
        kr = k.repeat_interleave(self.groups, 1) if self.groups > 1 else k
        vr = v.repeat_interleave(self.groups, 1) if self.groups > 1 else v
        w = torch.softmax(q @ kr.transpose(2, 3) * attn.scaling + mask, dim=-1)
        o = attn.o_proj((w @ vr).transpose(1, 2).reshape(b, n, -1))
        x = x + layer.self_attn_layer_scale(o)
        x = x + layer.mlp_layer_scale(layer.mlp(layer.post_attention_layernorm(x)))
        return x, k, v


class _ChannelsLast(StreamingModule):
    """[B, C, T] <-> [B, T, C] around a module that works on the last axis."""

    def __init__(self, inner: StreamingModule):
        super().__init__()
        self.inner = inner

    def state_specs(self):
        return self.inner.state_specs()

    def forward(self, x, state):
        y, s = self.inner(x.transpose(1, 2), state)
        return y.transpose(1, 2), s


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
        parts["decoder_transformer"] = _ChannelsLast(StreamingMimiTransformer(dec.decoder_transformer))
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
