"""The fused per-frame graph: one runtime call writes a whole 7-token SNAC frame.

LM step on the input (the prompt, or the previous frame's last token) -> position 0 sampled from its
4,096 audio ids and the stop id -> six more LM steps (unrolled; the KV grows by 7 positions a frame)
-> the frame's 7 codes and the embedding of its last token, the next call's input.

Each position p samples only its own ids (the layout's rows [audio_start + p * 4096, + 4096), position
0 also the stop id): its logits are one MatMul with a [hidden, 4096] slice of the output head, not
156,940 rows. A code is the id's offset in that slice; position 0's stop is code 4096, and a frame
that stops has all seven codes 4096 (the manifest's stop rule reads position 0).

Logit processing, as canopy's engine asks of its server: a repetition penalty (1.3) on ids generated
before in the utterance, supplied as `seen` [1, 7, 4097] (1.0 where position p's code c was drawn
before; the prompt's text ids never fall in an audio slice), then temperature, top-k, top-p, sampled
Gumbel-max with the `noise` uniforms [1, 7, 4097] (position p reads its row's first 4,096).

FrameStep is the frame in PyTorch on the reference LlamaForCausalLM's own modules (the parity
harness compares the written graph against it); build_frame writes it from the weights with fused
onnxruntime ops (voxport/exporter/blocks.py).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from voxport.exporter.families.orpheus.layout import POSITIONS, Layout
from voxport.exporter.torch_steps import cache_from, flat_present, gumbel_choice


def head_rows(layout: Layout, p: int) -> list[int]:
    a, b = layout.rows(p)
    return [*range(a, b), layout.stop_id] if p == 0 else list(range(a, b))


class FrameStep(nn.Module):
    def __init__(self, lm, layout: Layout):
        super().__init__()
        self.lm, self.layout = lm, layout
        self.n_layers = lm.config.num_hidden_layers
        head = lm.get_output_embeddings().weight
        for p in range(POSITIONS):
            self.register_buffer(f"head_{p}", head[head_rows(layout, p)].detach(), persistent=False)

    def forward(self, inputs_embeds, attention_mask, position_ids, temperature, top_k, top_p, repetition_penalty,
                seen, noise, *past):
        c, lay = self.layout.codebook_size, self.layout
        cache = cache_from(self.lm.config, past)
        x, mask, pos = inputs_embeds, attention_mask, position_ids
        codes = []
        for p in range(POSITIONS):
            h = self.lm.model(inputs_embeds=x, attention_mask=mask, position_ids=pos, past_key_values=cache,
                              use_cache=True).last_hidden_state[:, -1]
            logits = h @ getattr(self, f"head_{p}").T  # [1, width]
            width = logits.shape[-1]
            penalised = torch.where(logits > 0, logits / repetition_penalty, logits * repetition_penalty)
            logits = torch.where(seen[:, p, :width] > 0, penalised, logits)
            code = gumbel_choice(logits, noise[:, p, :width], temperature, top_k, top_p)
            codes.append(code)
            ids = lay.audio_start + p * c + code.clamp(max=c - 1)
            x = self.lm.model.embed_tokens(ids[:, None])
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            pos = pos[:, -1:] + 1
        codes = torch.stack(codes, dim=1)
        codes = torch.where(codes[:, :1] == c, torch.full_like(codes, c), codes)
        return (codes, x, *flat_present(cache, self.n_layers))


def build_frame(lm, layout: Layout, graph_inputs: list, graph_outputs: list):
    """The frame graph from `lm`'s weights with fused ops; I/O as the frame GraphSpec declares. Batch 1.
    Positions come from the attention mask's length (GroupQueryAttention's seqlens = mask sum - 1, then
    + 1 per unrolled step); `position_ids` is accepted for the contract and equals them for the one
    unpadded stream this graph serves."""
    from voxport.exporter.blocks import LlamaStack, Sampler, _np, frame_model, mask_lengths, rope_caches
    from voxport.exporter.onnx_builder import GraphBuilder

    cfg, c = lm.config, layout.codebook_size
    b = GraphBuilder("frame")
    names = {t.name: b.input(t.name, t.dtype, t.shape) for t in graph_inputs}
    past = [(names[f"past_key_values.{i}.key"], names[f"past_key_values.{i}.value"])
            for i in range(cfg.num_hidden_layers)]
    sampler = Sampler(b, names["temperature"], names["top_k"], names["top_p"], names["noise"], vocab=c + 1)
    audio_sampler = Sampler(b, names["temperature"], names["top_k"], names["top_p"], gumbel=sampler.gumbel,
                            name="audio_sampling", vocab=c)
    stack = LlamaStack(b, lm.model, "llama", rope_caches(b, "llama", lm.model.rotary_emb, cfg.max_position_embeddings))
    head = lm.get_output_embeddings().weight
    # the audio rows of the input table, position-major: row p * C + code
    a0, _ = layout.rows(0)
    table = b.weight("embed_audio.weight", _np(lm.model.embed_tokens.weight[a0:a0 + POSITIONS * c]))
    seqlens, total = mask_lengths(b, names["attention_mask"])
    x, kv, codes = names["inputs_embeds"], past, []
    for p in range(POSITIONS):
        with b.scope(f"position{p}"):
            if p == 0:
                h, kv = stack(x, kv, seqlens, total, last_only=True)
            else:
                # GroupQueryAttention's shape inference gives its present the past's length symbol, so
                # onnxruntime planned step p's present into step p-1's buffer (one position short); a
                # Reshape with -1 leaves the length unknown to inference
                flat = b.const([1, cfg.num_key_value_heads, -1, cfg.head_dim])
                kv = [(b.op("Reshape", [k, flat], label="past"), b.op("Reshape", [v, flat], label="past")) for k, v in kv]
                h, kv = stack(x, kv, b.op("Add", [seqlens, b.const([p], np.int32)], label="seqlens"),
                              b.op("Add", [total, b.const(p, np.int32)], label="total"), seq=1)
            w = b.weight(f"lm_head.position{p}", _np(head[head_rows(layout, p)]).T)
            logits = b.op("MatMul", [h, w], label="head")  # [1, 1, width]
            width = c + 1 if p == 0 else c
            with b.scope("repetition_penalty"):
                r = names["repetition_penalty"]
                penalised = b.op("Where", [b.op("Greater", [logits, b.const(0.0, np.float32)]),
                                           b.op("Div", [logits, r]), b.op("Mul", [logits, r])])
                row = b.op("Slice", [names["seen"], b.const([p, 0]), b.const([p + 1, width]), b.const([1, 2])])
                seen = b.op("Greater", [row, b.const(0.0, np.float32)], label="seen")
                logits = b.op("Where", [seen, penalised, logits])
            codes.append((sampler if p == 0 else audio_sampler)(logits, p))  # [1, 1]
            code = b.op("Min", [codes[-1], b.const([[c - 1]])], label="stop_row") if p == 0 else codes[-1]
            rows = b.op("Add", [code, b.const([[p * c]])], label="row") if p else code
            x = b.op("Gather", [table, rows], label="embed")  # [1, 1, H]
    with b.scope("codes"):
        frame = b.op("Concat", codes, axis=1)  # [1, 7]
        stop = b.op("Greater", [codes[0], b.const([[c - 1]])], label="stop")  # code C: the stop id
        frame = b.op("Where", [stop, b.const([[c] * POSITIONS]), frame])
    return frame_model(b, graph_outputs, frame, x, kv)


class LmStep(nn.Module):
    """One LM call on embeddings: the last position's final hidden state and the KV (the frame graph's
    first step without sampling; its outputs are deterministic, so the precision gates read the LM here)."""

    def __init__(self, lm):
        super().__init__()
        self.model, self.n_layers = lm.model, lm.config.num_hidden_layers

    def forward(self, inputs_embeds, attention_mask, position_ids, *past):
        cache = cache_from(self.model.config, past)
        out = self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=cache, use_cache=True)
        return (out.last_hidden_state[:, -1:], *flat_present(cache, self.n_layers))


def build_lm_step(lm, graph_inputs: list, graph_outputs: list):
    """LmStep with the frame graph's fused blocks; batch 1, positions from the mask."""
    from voxport.exporter.blocks import cached_stack
    from voxport.exporter.onnx_builder import GraphBuilder

    cfg = lm.config
    b = GraphBuilder("lm_step")
    names = {t.name: b.input(t.name, t.dtype, t.shape) for t in graph_inputs}
    past = [(names[f"past_key_values.{i}.key"], names[f"past_key_values.{i}.value"])
            for i in range(cfg.num_hidden_layers)]
    last, presents = cached_stack(b, lm.model, "llama", cfg.max_position_embeddings, names["inputs_embeds"], past,
                                  names["attention_mask"])
    outs = {"hidden": last, **{f"present.{i}.{kv}": t for i, pair in enumerate(presents)
                               for kv, t in zip(("key", "value"), pair)}}
    for t in graph_outputs:
        b.output(outs[t.name], t.name, t.dtype, t.shape)
    return b.model()
