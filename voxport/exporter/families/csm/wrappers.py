"""Export wrappers for CsmForConditionalGeneration: plain tensors in, plain tensors out.

Each wrapper holds references to the reference model's own submodules (no copies, no patches), so
the ONNX graph computes exactly what transformers computes.
"""

from __future__ import annotations

import torch
from torch import nn
from voxport.exporter.torch_steps import cache_from, flat_present


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
        cache = cache_from(self.backbone.config, past)
        out = self.backbone(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                            position_ids=position_ids, past_key_values=cache, use_cache=True)
        hidden = out.last_hidden_state
        logits = self.lm_head(hidden)  # 3-D input: exported as MatMul, which the quantizers take
        return (hidden, logits, *flat_present(cache, self.n_layers))


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
        cache = cache_from(self.depth.config, past)
        out = self.depth(inputs_embeds=embeds, past_key_values=cache, use_cache=True)
        last = out.last_hidden_state[:, -1:, :]  # [B, 1, Hd]
        head = self.heads[positions[-1] - 1]  # [Hd, V]
        logits = torch.matmul(last, head)[:, 0, :]
        return (logits, *flat_present(cache, self.n_layers))


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
