"""The fused per-frame graph: one runtime call produces a whole audio frame.

backbone step -> codebook 0 -> 31 depth-decoder steps (unrolled, depth KV never leaves the graph)
-> the frame's 32 codes and the summed embedding the backbone takes next.

`build_frame` writes the ONNX graph from the checkpoint's weights with fused onnxruntime ops
(voxport/exporter/blocks.py): 1,7xx nodes for marvis-250m instead of the 9,109 the traced graph had.
`FrameStep` is the same frame in PyTorch on the reference model's own modules: the parity harness
compares the written graph against it, and it is what the graph's design is checked by. Each codebook
head is its own constant MatMul weight so the 4-bit quantizer takes it (a head picked by Gather on a
[31, Hd, V] table is skipped).

Sampling is Gumbel-max over top-k-masked logits / temperature with the uniforms given as an input,
so a PyTorch run (or the step graphs) fed the same noise draws the same codes. Temperature 0 (or
top-k 1) is greedy.
"""

from __future__ import annotations

import torch
from torch import nn

from voxport.exporter.torch_steps import gumbel_choice, static_stack, unrolled_stack


class FrameStep(nn.Module):
    def __init__(self, model):
        super().__init__()
        cfg = model.config
        self.backbone, self.lm_head = model.backbone_model, model.lm_head
        self.audio_embed = model.backbone_model.embed_tokens  # codes [B, 1, K] -> summed [B, 1, H]
        self.depth = model.depth_decoder.model
        self.k = cfg.num_codebooks
        self.vocab = model.depth_decoder.config.vocab_size
        heads = model.depth_decoder.codebooks_head.weight  # [K-1, Hd, V]
        for i in range(self.k - 1):  # views: no copy in torch, one initializer per head in ONNX
            self.register_buffer(f"head_{i}", heads[i], persistent=False)

    def forward(self, inputs_embeds, cache_lengths, temperature, top_k, top_p, noise, *past):
        """Every row one stream: inputs_embeds [B, T, H] (a prompt, T > 1, or a frame's embedding),
        cache_lengths [B] positions each row's static buffers (past: [B, kv_heads, capacity, D]) hold,
        sampling settings [B], noise [B, K, V] -> codes [B, K], next_embeds [B, 1, H], the buffers with
        the new positions written."""
        hidden, presents = static_stack(self.backbone, inputs_embeds, cache_lengths, past)
        hidden = hidden[:, -1:]  # [B, 1, H]
        logits = self.lm_head(hidden)[:, 0]
        code = gumbel_choice(logits, noise[:, 0], temperature, top_k, top_p)
        codes = [code]
        kv: list = [None] * len(self.depth.layers)
        # position 0: the backbone hidden state; position p >= 1: code p-1 from embedding table p-1
        embeds = torch.cat([hidden, self.depth.embed_tokens(code[:, None])], dim=1)
        for i in range(self.k - 1):
            h = self._depth_step(embeds, kv, 0 if i == 0 else i + 1)
            head = getattr(self, f"head_{i}")
            code = gumbel_choice(torch.matmul(h[:, -1:], head)[:, 0], noise[:, i + 1], temperature, top_k,
                                top_p)
            codes.append(code)
            embeds = self.depth.embed_tokens(code[:, None] + (i + 1) * self.vocab)
        codes = torch.stack(codes, dim=1)  # [B, K]
        next_embeds = self.audio_embed(codes[:, None])  # [B, 1, H]
        return (codes, next_embeds, *presents)

    def _depth_step(self, embeds: torch.Tensor, kv: list, start: int) -> torch.Tensor:
        return unrolled_stack(self.depth, self.depth.inputs_embeds_projector(embeds), kv, start)


def build_frame(model, graph_inputs: list, graph_outputs: list, capture: bool = False) -> "onnx.ModelProto":  # noqa: F821 (onnx is imported where the graph is built)
    """The frame graph written with fused ops from `model`'s weights; I/O as the frame GraphSpec
    declares (graph_inputs/outputs: its TensorSpecs, in order). Batch >= 1, each row a stream.
    capture: the form WebGPU graph capture takes (blocks.Sampler, cache_lengths: no `If`, codes int32,
    nothing computed on the CPU that the GPU reads).

    The backbone's KV lives in static buffers (frame.FrameStep's docstring), each row's positions
    from `cache_lengths`; the depth decoder's per-frame cache is a fixed [B, kv_heads, K, D] inside
    the graph. A depth step gathers its code's embedding and
    projects it (storing the tables already projected saved one small MatMul a step but added 260 MB
    to marvis-250m's fp32 frame, past what the page's 4 GB wasm heap held)."""

    from voxport.exporter import kv_cache
    from voxport.exporter.blocks import (LlamaStack, Sampler, cached_stack, frame_model, linear_t, rope_caches,
                                         row_lengths, row_sum, zero_rows)
    from voxport.exporter.onnx_builder import GraphBuilder

    cfg, dcfg = model.config, model.depth_decoder.config
    k, v = cfg.num_codebooks, cfg.vocab_size
    b = GraphBuilder("frame")
    names = {}
    for t in graph_inputs:
        names[t.name] = b.input(t.name, t.dtype, t.shape)
    n_layers = cfg.num_hidden_layers
    flat = [names[n] for n in kv_cache.names(kv_cache.INPUT, n_layers)]
    past = list(zip(flat[::2], flat[1::2]))
    sampler = Sampler(b, names["temperature"], names["top_k"], names["top_p"], names["noise"],
                      vocab=v if capture else None, capture=capture)

    with b.scope("backbone"):
        last, presents, seqlens = cached_stack(b, model.backbone_model, "backbone", cfg.max_position_embeddings,
                                               names["inputs_embeds"], past, names[kv_cache.LENGTHS], capture)
        logits = b.op("MatMul", [last, b.weight("lm_head.weight", linear_t(model.lm_head))], label="lm_head")
        codes = [sampler(logits, 0)]

    depth = model.depth_decoder.model
    drope = rope_caches(b, "depth", depth.rotary_emb, dcfg.max_position_embeddings)
    dstack = LlamaStack(b, depth, "depth", drope)
    audio = model.backbone_model.embed_tokens
    # CSM ties the depth decoder's code embeddings to the backbone's audio table
    # (tie_codebooks_embeddings): one initializer then serves both (marvis-250m: 403 MB fp32)
    tied = depth.embed_tokens.weight.data_ptr() == audio.embed_audio_tokens.weight.data_ptr()
    table = b.weight("embed_audio_tokens.weight" if tied else "depth.embed_tokens.weight",
                     depth.embed_tokens.weight.detach().numpy())
    projector = b.weight("depth.inputs_embeds_projector.weight", linear_t(depth.inputs_embeds_projector))
    heads = model.depth_decoder.codebooks_head.weight  # [K-1, Hd, V]
    rows = zero_rows(b, seqlens) if capture else None
    kv = dstack.fixed_cache(last, k, rows)
    for i in range(k - 1):
        with b.scope("depth", f"step{i}"):
            ids = codes[-1] if i == 0 else b.op("Add", [codes[-1], b.const(i * v, sampler.code_type)], label="offset")
            x = b.op("Gather", [table, ids], label="embed")  # codebook i's rows start at i * V
            if i == 0:  # position 0: the backbone state, position 1: codebook 0
                x = b.op("Concat", [last, x], axis=1)
            x = b.op("MatMul", [x, projector], label="projector")
            pos = 1 if i == 0 else i + 1  # the last position this step writes
            h, kv = dstack(x, kv, *row_lengths(b, x, pos, rows), seq=2 if i == 0 else 1, last_only=i == 0)
            logits = b.op("MatMul", [h, b.weight(f"depth.codebooks_head.{i}", heads[i].detach().numpy())],
                          label="head")
            codes.append(sampler(logits, i + 1))

    with b.scope("next_embeds"):
        frame = b.op("Concat", codes, axis=1, label="codes")  # [B, K]
        offsets = audio.audio_tokens_offsets.numpy()[None].astype(sampler.code_type)
        ids = b.op("Add", [frame, b.weight("audio_tokens_offsets", offsets)])
        embeds = b.op("Gather", [b.weight("embed_audio_tokens.weight",
                                          audio.embed_audio_tokens.weight.detach().numpy()), ids])
        next_embeds = row_sum(b, embeds, len(codes))  # [B, 1, H]

    return frame_model(b, graph_outputs, frame, next_embeds, presents, capture)
