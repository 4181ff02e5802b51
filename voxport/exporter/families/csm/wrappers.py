"""Export wrappers for CsmForConditionalGeneration: plain tensors in, plain tensors out.

Each wrapper holds references to the reference model's own submodules (no copies, no patches), so
the ONNX graph computes exactly what transformers computes.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from transformers import DynamicCache


def _cache_from(config, past: tuple[torch.Tensor, ...]) -> DynamicCache:
    """A DynamicCache seeded from flat (key0, value0, key1, value1, ...) tensors."""
    cache = DynamicCache(config=config)
    for i in range(len(past) // 2):
        cache.update(past[2 * i], past[2 * i + 1], i)
    return cache


def _flat_present(cache: DynamicCache, n_layers: int) -> list[torch.Tensor]:
    out = []
    for i in range(n_layers):
        out += [cache.layers[i].keys, cache.layers[i].values]
    return out


class Embed(nn.Module):
    """Token ids + audio frames -> backbone input embeddings.

    Positions holding the audio token or the audio-eos token take the sum of the frame's codebook
    embeddings (as transformers' _merge_input_ids_with_input_values); all others the text embedding.
    """

    def __init__(self, model):
        super().__init__()
        self.text = model.embed_text_tokens
        self.audio = model.backbone_model.embed_tokens
        self.audio_ids = (model.config.audio_token_id, model.config.audio_eos_token_id)

    def forward(self, input_ids, audio_codes):
        text = self.text(input_ids)
        audio = self.audio(audio_codes)
        is_audio = (input_ids == self.audio_ids[0]) | (input_ids == self.audio_ids[1])
        return torch.where(is_audio.unsqueeze(-1), audio, text)


class BackboneStep(nn.Module):
    """One backbone call: prefill (seq > 1) or a step (seq = 1), any past length including 0."""

    def __init__(self, model):
        super().__init__()
        self.backbone = model.backbone_model
        self.lm_head = model.lm_head
        self.n_layers = model.config.num_hidden_layers

    def forward(self, inputs_embeds, attention_mask, position_ids, *past):
        cache = _cache_from(self.backbone.config, past)
        out = self.backbone(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                            position_ids=position_ids, past_key_values=cache, use_cache=True)
        hidden = out.last_hidden_state
        logits = self.lm_head(hidden)  # 3-D input: exported as MatMul, which the quantizers take
        return (hidden, logits, *_flat_present(cache, self.n_layers))


class DepthStep(nn.Module):
    """One depth-decoder call. Position p (= past length + offset) holds code p-1; position 0 the
    backbone hidden state. Returns logits of the codebook following the last input position."""

    def __init__(self, model):
        super().__init__()
        self.depth = model.depth_decoder.model
        self.heads = model.depth_decoder.codebooks_head.weight  # [K-1, Hd, V]
        self.vocab = model.depth_decoder.config.vocab_size
        self.n_layers = model.depth_decoder.config.num_hidden_layers

    def forward(self, input_ids, backbone_last_hidden_state, *past):
        past_len = past[0].shape[2]
        positions = torch.arange(input_ids.shape[1], device=input_ids.device) + past_len
        embeds = self.depth.embed_tokens(input_ids + torch.clamp(positions - 1, min=0) * self.vocab)
        is_hidden = (positions == 0).view(1, -1, 1)
        embeds = torch.where(is_hidden, backbone_last_hidden_state.unsqueeze(1), embeds)
        cache = _cache_from(self.depth.config, past)
        out = self.depth(inputs_embeds=embeds, past_key_values=cache, use_cache=True)
        last = out.last_hidden_state[:, -1:, :]  # [B, 1, Hd]
        head = self.heads[positions[-1] - 1]  # [Hd, V]
        logits = torch.matmul(last, head)[:, 0, :]
        return (logits, *_flat_present(cache, self.n_layers))


class MimiDecode(nn.Module):
    """Codes [B, K, T] -> waveform [B, 1, T * frame_size] (whole-utterance decode)."""

    def __init__(self, model):
        super().__init__()
        self.codec = model.codec_model
        self.max_code = model.codec_model.config.codebook_size - 1

    def forward(self, audio_codes):
        # eos/pad codes (>= codebook_size) are not codec entries; transformers leaves this to the caller.
        codes = torch.clamp(audio_codes, 0, self.max_code)
        return self.codec.decode(codes).audio_values


class MimiEncode(nn.Module):
    """Waveform [B, 1, N] at 24 kHz -> codes [B, K, frames]."""

    def __init__(self, model):
        super().__init__()
        self.codec = model.codec_model
        self.n_q = model.config.num_codebooks

    def forward(self, input_values):
        return self.codec.encode(input_values, num_quantizers=self.n_q).audio_codes


@contextlib.contextmanager
def static_codec_shapes(codec):
    """Export-only patch, restored on exit. Mimi keeps conv sizes as tensor buffers and computes its
    padding with torch.ceil on them, which torch.export sees as data-dependent sizes ("Could not guard
    on data-dependent expression"). With plain ints and the same padding in integer arithmetic every
    length stays symbolic. The encoder transformer runs eager attention while exporting (sdpa's
    is_causal check guards on the length); parity compares against the unpatched model."""
    convs = [m for m in codec.modules() if type(m).__name__ == "MimiConv1d"]
    int_attrs = ("padding_total", "padding_left", "padding_right")
    saved = []
    for conv in convs:
        saved.append({a: getattr(conv, a) for a in int_attrs})
        pt = int(conv.padding_total)
        # padding_left/right are derived in __init__ and stay on the meta device after from_pretrained
        # (unused by causal convs); derive them again from padding_total.
        for a, v in zip(int_attrs, (pt, pt - pt // 2, pt // 2)):
            conv._buffers.pop(a, None)
            object.__setattr__(conv, a, v)
        k, s, pt = int(conv.kernel_size), int(conv.stride), conv.padding_total
        conv._get_extra_padding_for_conv1d = lambda x, k=k, s=s, pt=pt: (-(x.shape[-1] - k + pt)) % s
    enc_cfg = codec.encoder.config if codec.encoder is not None else None
    saved_attn = enc_cfg._attn_implementation if enc_cfg is not None else None
    if enc_cfg is not None:
        enc_cfg._attn_implementation = "eager"
    try:
        yield
    finally:
        for conv, attrs in zip(convs, saved):
            del conv._get_extra_padding_for_conv1d
            for a, v in attrs.items():
                object.__delattr__(conv, a)
                if a == "padding_total":
                    conv.register_buffer(a, v, persistent=False)
                else:
                    object.__setattr__(conv, a, v)
        if enc_cfg is not None:
            enc_cfg._attn_implementation = saved_attn
