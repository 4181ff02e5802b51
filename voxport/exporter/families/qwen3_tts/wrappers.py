"""Export wrappers for Qwen3TTSForConditionalGeneration's talker and code predictor: plain tensors in
and out, on the reference model's own submodules (no copies of its arithmetic)."""

from __future__ import annotations

import torch
from torch import nn

from voxport.exporter.torch_steps import cache_from, flat_present

NONE = -1  # an id track's "nothing at this position"


class PromptEmbed(nn.Module):
    """Two id tracks -> talker input embeddings; every prompt the reference builds is a sum of these.

    text_ids [B, S]: text_projection(text_embedding(id)), or nothing where NONE.
    codec_ids [B, S, G]: sum over groups g of codec table g (group 0: the talker's codec_embedding,
    which also holds the special/speaker/language ids; group g >= 1: the code predictor's table g-1),
    skipping NONE. A special id is [id, NONE, ...]; a reference-audio frame is its G codes.
    A position where both are NONE is zero (the runtime adds a Base model's x-vector there)."""

    def __init__(self, model):
        super().__init__()
        talker = model.talker
        self.text, self.projection = talker.model.text_embedding, talker.text_projection
        self.tables = nn.ModuleList([talker.model.codec_embedding, *talker.code_predictor.model.codec_embedding])

    def forward(self, text_ids, codec_ids):
        text = self.projection(self.text(text_ids.clamp(min=0)))
        out = torch.where((text_ids >= 0).unsqueeze(-1), text, torch.zeros_like(text))
        for g, table in enumerate(self.tables):
            ids = codec_ids[..., g]
            out = out + torch.where((ids >= 0).unsqueeze(-1), table(ids.clamp(min=0)), torch.zeros_like(out))
        return out


class TalkerStep(nn.Module):
    """One talker call: prefill (seq > 1) or a step, any past length including 0.
    position_ids [B, S]: text positions; the talker's 3-axis mRoPE gets them on all three axes, as
    the reference's get_rope_index does for a prompt without audio/vision positions."""

    def __init__(self, model):
        super().__init__()
        self.talker = model.talker.model
        self.codec_head = model.talker.codec_head
        self.n_layers = model.talker.config.num_hidden_layers

    def forward(self, inputs_embeds, attention_mask, position_ids, *past):
        cache = cache_from(self.talker.config, past)
        out = self.talker(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                          position_ids=position_ids, past_key_values=cache, use_cache=True)
        hidden = out.last_hidden_state
        return (hidden, self.codec_head(hidden), *flat_present(cache, self.n_layers))


class CodePredictorStep(nn.Module):
    """One code-predictor call. Position p (= past length + offset) holds: p = 0 the talker's last
    hidden state, p = 1 code group 0 (talker codec table), p >= 2 code group p-1 (predictor table
    p-2). Returns the logits of group p from head p-1 for the last position p."""

    def __init__(self, model):
        super().__init__()
        cp = model.talker.code_predictor
        self.predictor, self.project = cp.model, cp.small_to_mtp_projection
        self.c0_table = model.talker.model.codec_embedding
        self.v = cp.config.vocab_size
        # [G-1, Vp, H] and [G-1, Hp, Vp]: indexed by position inside the graph
        self.register_buffer("tables", torch.stack([e.weight for e in cp.model.codec_embedding]), persistent=False)
        self.register_buffer("heads", torch.stack([h.weight.t() for h in cp.lm_head]), persistent=False)
        self.n_layers = cp.config.num_hidden_layers

    def forward(self, input_ids, talker_hidden, *past):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device) + past[0].shape[2]
        groups = (positions - 2).clamp(min=0)  # predictor table per position (p >= 2)
        rest = self.tables.flatten(0, 1)[(input_ids.clamp(max=self.v - 1) + groups * self.v)]
        c0 = self.c0_table(input_ids)
        embeds = torch.where((positions == 1).view(1, -1, 1), c0, rest)
        embeds = torch.where((positions == 0).view(1, -1, 1), talker_hidden.unsqueeze(1), embeds)
        cache = cache_from(self.predictor.config, past)
        out = self.predictor(inputs_embeds=self.project(embeds), past_key_values=cache, use_cache=True)
        head = self.heads[positions[-1] - 1]  # [Hp, Vp]
        logits = torch.matmul(out.last_hidden_state[:, -1:], head)[:, 0]
        return (logits, *flat_present(cache, self.n_layers))
