"""The fused per-frame graph: one runtime call writes a whole 7-token SNAC frame for every stream (row).

LM pass on the input (the prompt, or the previous frame's last token) -> position 0 sampled from its
4,096 audio ids and the stop id -> six more LM steps (unrolled) -> the frame's 7 codes and the
embedding of its last token, the next call's input. The KV cache is static (exporter/kv_cache.py):
buffers [rows, kv_heads, capacity, head_dim] and `cache_lengths` [rows]; the LM pass writes positions
lengths .. lengths + seq - 1 and step p (1..6) position lengths + seq - 1 + p, so a call fills seq + 6
positions of each row (the contract's `frame.steps` 7).

Each position p samples only its own ids (the layout's rows [audio_start + p * 4096, + 4096), position
0 also the stop id): its logits are one MatMul with a [hidden, 4096] slice of the output head, not
156,940 rows. A code is the id's offset in that slice; position 0's stop is code 4096, and a frame
that stops has all seven codes 4096 (the manifest's stop rule reads position 0).

Logit processing, as canopy's engine asks of its server: a repetition penalty (1.3) on ids generated
before in the utterance, supplied as `seen` [rows, 7, 4097] (1.0 where position p's code c was drawn
before; the prompt's text ids never fall in an audio slice), then temperature, top-k, top-p, sampled
Gumbel-max with the `noise` uniforms [rows, 7, 4097] (position p reads its row's first 4,096). Every
setting is per row ([rows]).

FrameStep is the frame in PyTorch on the reference LlamaForCausalLM's own modules (the parity
harness compares the written graph against it; it is what gets traced where the fused kernels refuse
the configuration, exporter/kernels.py); build_frame writes it from the weights with fused
onnxruntime ops (voxport/exporter/blocks.py).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from voxport.exporter import kv_cache
from voxport.exporter.families.orpheus.layout import POSITIONS, Layout
from voxport.exporter.torch_steps import gumbel_choice, static_stack


def head_rows(layout: Layout, p: int) -> list[int]:
    a, b = layout.rows(p)
    return [*range(a, b), layout.stop_id] if p == 0 else list(range(a, b))


class FrameStep(nn.Module):
    def __init__(self, lm, layout: Layout):
        super().__init__()
        self.lm, self.layout = lm, layout
        head = lm.get_output_embeddings().weight
        for p in range(POSITIONS):
            self.register_buffer(f"head_{p}", head[head_rows(layout, p)].detach(), persistent=False)

    def forward(self, inputs_embeds, cache_lengths, temperature, top_k, top_p, repetition_penalty, seen, noise,
                *past):
        """Rows are streams: inputs_embeds [B, T, H], cache_lengths [B] (positions each row's buffers
        hold), settings [B], seen and noise [B, 7, C + 1], past buffers [B, kv_heads, capacity, D] ->
        codes [B, 7], next_embeds [B, 1, H], the buffers with the T + 6 new positions written."""
        c, lay = self.layout.codebook_size, self.layout
        x, lengths, presents, codes = inputs_embeds, cache_lengths, list(past), []
        r = repetition_penalty.reshape(-1, 1)
        for p in range(POSITIONS):
            hidden, presents = static_stack(self.lm.model, x, lengths, presents)
            lengths = lengths + x.shape[1]
            logits = hidden[:, -1] @ getattr(self, f"head_{p}").T  # [B, width]
            width = logits.shape[-1]
            penalised = torch.where(logits > 0, logits / r, logits * r)
            logits = torch.where(seen[:, p, :width] > 0, penalised, logits)
            code = gumbel_choice(logits, noise[:, p, :width], temperature, top_k, top_p)
            codes.append(code)
            x = self.lm.model.embed_tokens((lay.audio_start + p * c + code.clamp(max=c - 1))[:, None])
        codes = torch.stack(codes, dim=1)
        codes = torch.where(codes[:, :1] == c, torch.full_like(codes, c), codes)
        return (codes, x, *presents)


def build_frame(lm, layout: Layout, graph_inputs: list, graph_outputs: list, capture: bool = False):
    """The frame graph from `lm`'s weights with fused ops; I/O as the frame GraphSpec declares. Rows
    are streams. Every step's GroupQueryAttention takes the previous one's present as its past: the
    same [rows, kv_heads, capacity, head_dim] shape throughout, so onnxruntime may run a step in its
    past's buffer; the first step reads the bound cache buffer and the last writes the bound output
    (the same memory), so each row's new positions land in place. capture: the form WebGPU graph
    capture takes (blocks.Sampler, cache_lengths)."""
    from voxport.exporter.blocks import LlamaStack, Sampler, _np, cache_lengths, frame_model, rope_caches
    from voxport.exporter.onnx_builder import GraphBuilder

    cfg, c = lm.config, layout.codebook_size
    b = GraphBuilder("frame")
    names = {t.name: b.input(t.name, t.dtype, t.shape) for t in graph_inputs}
    flat = [names[n] for n in kv_cache.names(kv_cache.INPUT, cfg.num_hidden_layers)]
    past = list(zip(flat[::2], flat[1::2]))
    sampler = Sampler(b, names["temperature"], names["top_k"], names["top_p"], names["noise"], vocab=c + 1, capture=capture)
    audio_sampler = Sampler(b, names["temperature"], names["top_k"], names["top_p"], gumbel=sampler.gumbel,
                            name="audio_sampling", vocab=c, capture=capture)
    stack = LlamaStack(b, lm.model, "llama", rope_caches(b, "llama", lm.model.rotary_emb, cfg.max_position_embeddings))
    head = lm.get_output_embeddings().weight
    # the audio rows of the input table, position-major: row p * C + code
    a0, _ = layout.rows(0)
    table = b.weight("embed_audio.weight", _np(lm.model.embed_tokens.weight[a0:a0 + POSITIONS * c]))
    seqlens, total = cache_lengths(b, names[kv_cache.LENGTHS], names["inputs_embeds"], capture)
    ct = sampler.code_type
    r = b.op("Reshape", [names["repetition_penalty"], b.const([-1, 1, 1])], label="repetition_penalty")
    x, kv, codes = names["inputs_embeds"], past, []
    for p in range(POSITIONS):
        with b.scope(f"position{p}"):
            if p == 0:
                h, kv = stack(x, kv, seqlens, total, last_only=True)
            else:  # one more position per step: seqlens_k = lengths + seq - 1 + p
                h, kv = stack(x, kv, b.op("Add", [seqlens, b.const([p], np.int32)], label="seqlens"),
                              b.op("Add", [total, b.const(p, np.int32)], label="total"), seq=1)
            w = b.weight(f"lm_head.position{p}", _np(head[head_rows(layout, p)]).T)
            logits = b.op("MatMul", [h, w], label="head")  # [B, 1, width]
            width = c + 1 if p == 0 else c
            with b.scope("repetition_penalty"):
                penalised = b.op("Where", [b.op("Greater", [logits, b.const(0.0, np.float32)]),
                                           b.op("Div", [logits, r]), b.op("Mul", [logits, r])])
                row = b.op("Slice", [names["seen"], b.const([p, 0]), b.const([p + 1, width]), b.const([1, 2])])
                seen = b.op("Greater", [row, b.const(0.0, np.float32)], label="seen")  # [B, 1, width]
                logits = b.op("Where", [seen, penalised, logits])
            codes.append((sampler if p == 0 else audio_sampler)(logits, p))  # [B, 1]
            code = b.op("Min", [codes[-1], b.const([[c - 1]], ct)], label="stop_row") if p == 0 else codes[-1]
            rows = b.op("Add", [code, b.const([[p * c]], ct)], label="row") if p else code
            x = b.op("Gather", [table, rows], label="embed")  # [B, 1, H]
    with b.scope("codes"):
        frame = b.op("Concat", codes, axis=1)  # [B, 7]
        stop = b.op("Greater", [codes[0], b.const([[c - 1]], ct)], label="stop")  # code C: the stop id
        frame = b.op("Where", [stop, b.const([[c] * POSITIONS], ct), frame])
    return frame_model(b, graph_outputs, frame, x, kv, capture)


class LmStep(nn.Module):
    """One LM call on embeddings over the static cache: the last position's final hidden state and the
    buffers (the frame graph's first step without sampling; its outputs are deterministic, so the
    precision gates read the LM here)."""

    def __init__(self, lm):
        super().__init__()
        self.model = lm.model

    def forward(self, inputs_embeds, cache_lengths, *past):
        hidden, presents = static_stack(self.model, inputs_embeds, cache_lengths, past)
        return (hidden[:, -1:], *presents)


def build_lm_step(lm, graph_inputs: list, graph_outputs: list):
    """LmStep with the frame graph's fused blocks; rows are streams."""
    from voxport.exporter.blocks import cached_stack
    from voxport.exporter.onnx_builder import GraphBuilder

    cfg = lm.config
    b = GraphBuilder("lm_step")
    names = {t.name: b.input(t.name, t.dtype, t.shape) for t in graph_inputs}
    flat = [names[n] for n in kv_cache.names(kv_cache.INPUT, cfg.num_hidden_layers)]
    last, presents, _ = cached_stack(b, lm.model, "llama", cfg.max_position_embeddings, names["inputs_embeds"],
                                  list(zip(flat[::2], flat[1::2])), names[kv_cache.LENGTHS])
    outs = {"hidden": last, **dict(zip(kv_cache.names(kv_cache.OUTPUT, cfg.num_hidden_layers),
                                       [t for pair in presents for t in pair]))}
    for t in graph_outputs:
        b.output(outs[t.name], t.name, t.dtype, t.shape)
    return b.model()
