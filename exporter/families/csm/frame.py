"""The fused per-frame graph: one runtime call produces a whole audio frame.

backbone step -> codebook 0 -> 31 depth-decoder steps (unrolled, depth KV never leaves the graph)
-> the frame's 32 codes and the summed embedding the backbone takes next. Weights are the reference
model's own modules, shared by all unrolled steps; each codebook head is its own constant MatMul
weight so a 4-bit MatMul quantizer can take it (a head picked by Gather is skipped, NOTES.md §2).

Sampling is Gumbel-max over top-k-masked logits / temperature with the uniforms given as an input,
so a PyTorch run (or the step graphs) fed the same noise draws the same codes. Temperature 0 (or
top-k 1) is greedy.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.csm.modeling_csm import apply_rotary_pos_emb

from exporter.families.csm.wrappers import _cache_from, _flat_present


def gumbel_choice(logits: torch.Tensor, noise: torch.Tensor, temperature: torch.Tensor,
                  top_k: torch.Tensor) -> torch.Tensor:
    """logits [B, V], noise uniforms in [0, 1) [B, V], temperature [] (0 = greedy), top_k [] (1..V)
    -> ids [B]. Same arithmetic as runtime/sampling.py's numpy version."""
    ranked = torch.sort(logits, dim=-1, descending=True).values
    kth = ranked.gather(-1, (top_k - 1).clamp(0, logits.shape[-1] - 1).reshape(1, 1).expand(logits.shape[0], 1))
    kept = torch.where(logits >= kth, logits, torch.full_like(logits, float("-inf")))
    gumbel = -torch.log(-torch.log(noise.clamp(1e-20, 1.0 - 1e-7)))
    sampled = kept / temperature.clamp(min=1e-6) + gumbel
    scores = torch.where(temperature > 0, sampled, logits)
    return scores.argmax(-1)


class FrameStep(nn.Module):
    def __init__(self, model):
        super().__init__()
        cfg = model.config
        self.backbone, self.lm_head = model.backbone_model, model.lm_head
        self.audio_embed = model.backbone_model.embed_tokens  # codes [B, 1, K] -> summed [B, 1, H]
        self.depth = model.depth_decoder.model
        self.n_layers, self.k = cfg.num_hidden_layers, cfg.num_codebooks
        self.vocab = model.depth_decoder.config.vocab_size
        heads = model.depth_decoder.codebooks_head.weight  # [K-1, Hd, V]
        for i in range(self.k - 1):  # views: no copy in torch, one initializer per head in ONNX
            self.register_buffer(f"head_{i}", heads[i], persistent=False)

    def forward(self, inputs_embeds, attention_mask, position_ids, temperature, top_k, noise, *past):
        cache = _cache_from(self.backbone.config, past)
        out = self.backbone(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                            position_ids=position_ids, past_key_values=cache, use_cache=True)
        hidden = out.last_hidden_state[:, -1:]  # [B, 1, H]
        logits = self.lm_head(hidden)[:, 0]
        code = gumbel_choice(logits, noise[:, 0], temperature, top_k)
        codes = [code]
        kv: list = [None] * len(self.depth.layers)
        # position 0: the backbone hidden state; position p >= 1: code p-1 from embedding table p-1
        embeds = torch.cat([hidden, self.depth.embed_tokens(code[:, None])], dim=1)
        for i in range(self.k - 1):
            h = self._depth_step(embeds, kv, 0 if i == 0 else i + 1)
            head = getattr(self, f"head_{i}")
            code = gumbel_choice(torch.matmul(h[:, -1:], head)[:, 0], noise[:, i + 1], temperature, top_k)
            codes.append(code)
            embeds = self.depth.embed_tokens(code[:, None] + (i + 1) * self.vocab)
        codes = torch.stack(codes, dim=1)  # [B, K]
        next_embeds = self.audio_embed(codes[:, None])  # [B, 1, H]
        return (codes, next_embeds, *_flat_present(cache, self.n_layers))

    def _depth_step(self, embeds: torch.Tensor, kv: list, start: int) -> torch.Tensor:
        """The depth decoder on positions start.. with its KV in `kv` (one (k, v) per layer, grown in
        place). Written out from the model's own submodules instead of calling its forward: that
        builds masks and caches per call, which made the 31-step trace take minutes and the graph
        several times larger. Causal masking is needed only on the first call (2 positions)."""
        d = self.depth
        x = d.inputs_embeds_projector(embeds)
        b, n = x.shape[0], x.shape[1]
        cos, sin = self._rope(start, n, x)
        mask = torch.full((n, n), float("-inf"), device=x.device).triu(1) if n > 1 else None
        for j, layer in enumerate(d.layers):
            a = layer.self_attn
            h = layer.input_layernorm(x)
            q = a.q_proj(h).view(b, n, -1, a.head_dim).transpose(1, 2)
            k = a.k_proj(h).view(b, n, -1, a.head_dim).transpose(1, 2)
            v = a.v_proj(h).view(b, n, -1, a.head_dim).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            if kv[j] is not None:
                k, v = torch.cat([kv[j][0], k], 2), torch.cat([kv[j][1], v], 2)
            kv[j] = (k, v)
            g = a.num_key_value_groups
            kr, vr = (k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)) if g > 1 else (k, v)
            w = q @ kr.transpose(2, 3) * a.scaling
            w = torch.softmax(w if mask is None else w + mask, dim=-1)
            x = x + a.o_proj((w @ vr).transpose(1, 2).reshape(b, n, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return d.norm(x)

    def _rope(self, start: int, n: int, x: torch.Tensor):
        """cos/sin for positions start..start+n-1, the arithmetic of the model's rotary_emb. Not its
        forward: that is @torch.no_grad(), and each such region becomes a submodule torch.export
        splits out and recompiles (31 of them made the trace take minutes)."""
        rope = self.depth.rotary_emb
        # positions are known when tracing: a constant, not a float Range (no fp16 Range kernel)
        pos = torch.tensor([float(p) for p in range(start, start + n)], device=x.device)
        freqs = pos[None, :, None] * rope.inv_freq.to(torch.float32)[None, None, :]
        emb = torch.cat([freqs, freqs], dim=-1)
        return (emb.cos() * rope.attention_scaling).to(x.dtype), (emb.sin() * rope.attention_scaling).to(x.dtype)
