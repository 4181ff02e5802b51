"""The Qwen3-TTS frame graph written from the weights with onnxruntime's fused ops (voxport/exporter/blocks.py),
the same computation as frame.FrameStep, which stays its PyTorch reference in the parity harness.

talker stack (last position only past the last layer's attention) -> codec_head -> repetition penalty on
the seen ids, + c0_bias -> group 0 sampled (temperature, top_k, top_p) -> code predictor unrolled over groups
1..15 (step 0 on [talker state, group 0's embedding], then one code a step; its KV stays in the graph),
each group with its own embedding table and head, sampled with the predictor_* settings ->
next_embeds = the 16 group embeddings summed + text_embed.

The talker's multimodal RoPE gets the same position on all three axes for the text-only positions
TTS generation uses, where it is plain RoPE over the rotary module's inv_freq: GroupQueryAttention's
cos/sin caches. Positions come from `cache_lengths` (static buffers, as in CSM's frame graph); the code
predictor's per-frame cache is a fixed [B, kv_heads, G, D] inside the graph.
"""

from __future__ import annotations

import numpy as np
from torch import nn


def build_frame(model, graph_inputs: list, graph_outputs: list, capture: bool = False):
    """ONNX ModelProto with the frame GraphSpec's inputs/outputs (its TensorSpecs, in order). Batch >= 1.
    capture: the form WebGPU graph capture takes (blocks.Sampler, cache_lengths)."""
    from voxport.exporter import kv_cache
    from voxport.exporter.blocks import (LlamaStack, Sampler, _np, cached_stack, frame_model, linear_bias, linear_t,
                                         rope_caches, row_lengths, row_sum, zero_rows)
    from voxport.exporter.onnx_builder import GraphBuilder

    talker = model.talker
    tc, cp = talker.config, talker.code_predictor
    groups = tc.num_code_groups
    b = GraphBuilder("frame")
    names = {t.name: b.input(t.name, t.dtype, t.shape) for t in graph_inputs}
    flat = [names[n] for n in kv_cache.names(kv_cache.INPUT, tc.num_hidden_layers)]
    past = list(zip(flat[::2], flat[1::2]))
    sampler = Sampler(b, names["temperature"], names["top_k"], names["top_p"], names["noise"], vocab=tc.vocab_size,
                      capture=capture)
    predictor_sampler = Sampler(b, names["predictor_temperature"], names["predictor_top_k"], names["predictor_top_p"],
                                gumbel=sampler.gumbel, name="predictor_sampling", vocab=cp.config.vocab_size,
                                capture=capture)

    def linear(x: str, lin: nn.Linear, name: str, label: str) -> str:
        y = b.op("MatMul", [x, b.weight(f"{name}.weight", linear_t(lin))], label=label)
        bias = linear_bias(lin)
        return y if bias is None else b.op("Add", [y, b.weight(f"{name}.bias", bias)], label=label)

    with b.scope("talker"):
        last, presents, seqlens = cached_stack(b, talker.model, "talker", tc.max_position_embeddings,
                                               names["inputs_embeds"], past, names[kv_cache.LENGTHS], capture)
        logits = linear(last, talker.codec_head, "talker.codec_head", "codec_head")  # [B, 1, V]
        with b.scope("repetition_penalty"):
            p = b.op("Reshape", [names["repetition_penalty"], b.const([-1, 1, 1])], label="penalty")
            penalised = b.op("Where", [b.op("Greater", [logits, b.const(0.0, np.float32)]),
                                       b.op("Div", [logits, p]), b.op("Mul", [logits, p])])
            rows = b.const([0, 1, -1])  # [B, V] -> [B, 1, V], as the logits
            seen = b.op("Greater", [b.op("Reshape", [names["c0_seen"], rows]), b.const(0.0, np.float32)], label="seen")
            logits = b.op("Where", [seen, penalised, logits])
        logits = b.op("Add", [logits, b.op("Reshape", [names["c0_bias"], rows])], label="c0_bias")
        codes = [sampler(logits, 0)]
        embeds = [b.op("Gather", [b.weight("talker.codec_embedding.weight",
                                           _np(talker.model.codec_embedding.weight)), codes[0]], label="embed")]

    d = cp.model
    # positions 0..groups-1 are all the predictor ever sees in a frame
    pstack = LlamaStack(b, d, "predictor", rope_caches(b, "predictor", d.rotary_emb, groups))
    project = cp.small_to_mtp_projection
    rows = zero_rows(b, seqlens) if capture else None
    kv = pstack.fixed_cache(last, groups, rows)
    for i in range(groups - 1):  # step i samples group i + 1
        with b.scope("predictor", f"step{i}"):
            x = b.op("Concat", [last, embeds[0]], axis=1) if i == 0 else embeds[-1]  # [B, 2 | 1, H]
            if isinstance(project, nn.Linear):
                x = linear(x, project, "predictor.small_to_mtp_projection", "projection")
            pos = i + 1  # the last position this step writes
            h, kv = pstack(x, kv, *row_lengths(b, x, pos, rows), seq=2 if i == 0 else 1, last_only=i == 0)
            logits = linear(h, cp.lm_head[i], f"predictor.lm_head.{i}", "head")  # [B, 1, Vp]
            codes.append(predictor_sampler(logits, i + 1))
            embeds.append(b.op("Gather", [b.weight(f"predictor.codec_embedding.{i}.weight",
                                                   _np(d.codec_embedding[i].weight)), codes[-1]], label="embed"))

    with b.scope("next_embeds"):
        frame = b.op("Concat", codes, axis=1, label="codes")  # [B, G]
        summed = row_sum(b, b.op("Concat", embeds, axis=1), len(embeds))  # [B, 1, H]
        next_embeds = b.op("Add", [summed, names["text_embed"]], label="text")

    return frame_model(b, graph_outputs, frame, next_embeds, presents, capture)
