"""The fused per-frame graph: one runtime call produces a whole 16-code frame.

talker step -> code group 0 (talker sampling, after the reference's repetition penalty and
suppressed ids) -> code predictor over groups 1..15 (unrolled; its KV never leaves the graph) ->
next talker input = sum of the 16 group embeddings + `text_embed` (the frame's trailing text
embedding or the tts-pad embedding, which the runtime picks per frame as the reference does).

Every input and output has a row per stream (batch); the talker's KV lives in static buffers
(exporter/kv_cache.py) written in place. Sampling is voxport's Gumbel-max with the uniforms as the
`noise` input [B, 16, V] (V: the talker's codec vocabulary); group g >= 1 reads the first Vp
(predictor vocabulary) uniforms of row g.
Top-p masks after top-k, as transformers' warpers (voxport/runtime/sampling.py).

FrameStep is the frame in PyTorch on the reference's own modules: the graph written with fused ops
(fused.build_frame) is checked against it, and it is what is traced where that cannot take the config.

Logit processing the reference's talker generate applies to group 0, supplied per frame:
`c0_seen` [B, V] 1.0 for ids generated before in this utterance (repetition penalty: a seen logit l
becomes l / penalty if l > 0 else l * penalty); `c0_bias` [B, V] added after it (0 or -inf: the
suppressed ids [V-1024, V) except eos, and eos itself during the first min_new_tokens frames).
"""

from __future__ import annotations

import torch
from torch import nn

from voxport.exporter.torch_steps import gumbel_choice, static_stack, unrolled_stack


class FrameStep(nn.Module):
    def __init__(self, model):
        super().__init__()
        talker = model.talker
        cp = talker.code_predictor
        self.talker, self.codec_head = talker.model, talker.codec_head
        self.c0_table = talker.model.codec_embedding
        self.tables = cp.model.codec_embedding
        self.heads = cp.lm_head
        self.predictor, self.project = cp.model, cp.small_to_mtp_projection
        self.groups = talker.config.num_code_groups
        self.vp = cp.config.vocab_size

    def forward(self, inputs_embeds, cache_lengths, text_embed, temperature, top_k, top_p,
                predictor_temperature, predictor_top_k, predictor_top_p, repetition_penalty, c0_seen, c0_bias,
                noise, *past):
        """Every row one stream, the talker's KV in static buffers past [B, kv_heads, capacity, D]
        holding cache_lengths [B] positions; settings [B] per row -> codes [B, G], next_embeds [B, 1, H],
        the buffers with the new positions written."""
        hidden, presents = static_stack(self.talker, inputs_embeds, cache_lengths, past)
        hidden = hidden[:, -1:]  # [B, 1, H]
        logits = self.codec_head(hidden)[:, 0]
        penalty = repetition_penalty.reshape(-1, 1)
        penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
        logits = torch.where(c0_seen > 0, penalised, logits) + c0_bias
        code = gumbel_choice(logits, noise[:, 0], temperature, top_k, top_p)
        codes = [code]
        embeds = [self.c0_table(code[:, None])]
        kv: list = [None] * len(self.predictor.layers)
        x = torch.cat([hidden, embeds[0]], dim=1)  # position 0: talker state, position 1: group 0
        for g in range(1, self.groups):
            h = unrolled_stack(self.predictor, self.project(x), kv, 0 if g == 1 else g)
            code = gumbel_choice(self.heads[g - 1](h[:, -1]), noise[:, g, : self.vp], predictor_temperature,
                                 predictor_top_k, predictor_top_p)
            codes.append(code)
            x = self.tables[g - 1](code[:, None])
            embeds.append(x)
        next_embeds = torch.cat(embeds, dim=1).sum(1, keepdim=True) + text_embed
        return (torch.stack(codes, dim=1), next_embeds, *presents)
