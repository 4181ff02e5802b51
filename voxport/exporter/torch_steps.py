"""The PyTorch side of the graphs every family shares: a KV cache as flat tensors in and out, the
noise-driven sampler the fused graphs mirror, the step-graph input makers, and Mimi's export patch
(CSM's codec and Qwen3-TTS's codec encoder are both Mimi). Families import these; no family imports
another."""

from __future__ import annotations

import contextlib

import torch
from transformers import DynamicCache


def cache_from(config, past: tuple[torch.Tensor, ...]) -> DynamicCache:
    """A DynamicCache seeded from flat (key0, value0, key1, value1, ...) tensors."""
    cache = DynamicCache(config=config)
    for i in range(len(past) // 2):
        cache.update(past[2 * i], past[2 * i + 1], i)
    return cache


def flat_present(cache: DynamicCache, n_layers: int) -> list[torch.Tensor]:
    out = []
    for i in range(n_layers):
        out += [cache.layers[i].keys, cache.layers[i].values]
    return out


def rand_past(gen, n_layers, batch, kv_heads, past, head_dim) -> list[torch.Tensor]:
    return [torch.randn(batch, kv_heads, past, head_dim, generator=gen) for _ in range(2 * n_layers)]


def lm_step_inputs(s: dict, hidden: int, n_layers: int, kv_heads: int, head_dim: int) -> list[torch.Tensor]:
    """An LM step's inputs at sizes s (batch, seq, past): embeddings, a mask with left padding on the
    first row when batch > 1 (exercises the mask), positions from the mask, a random past."""
    b, q, p = s["batch"], s["seq"], s["past"]
    gen = torch.Generator().manual_seed(b * 10000 + q * 100 + p)
    mask = torch.ones(b, p + q, dtype=torch.long)
    if b > 1:
        mask[0, : max(1, (p + q) // 4)] = 0
    pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, p:]
    embeds = torch.randn(b, q, hidden, generator=gen) * 0.5
    return [embeds, mask, pos, *rand_past(gen, n_layers, b, kv_heads, p, head_dim)]


def static_step_inputs(s: dict, hidden: int, n_layers: int, kv_heads: int, head_dim: int) -> list[torch.Tensor]:
    """A static-cache step's inputs at sizes s: "past" a list of each row's cached length (rows of
    different lengths), "seq" new positions per row, "capacity" the buffers' length: embeddings
    [rows, seq, hidden], lengths [rows], random buffers [rows, kv_heads, capacity, head_dim] (random
    past the lengths too: a graph that reads there differs from the reference)."""
    lengths, q, cap = list(s["past"]), s["seq"], s["capacity"]
    gen = torch.Generator().manual_seed(sum(lengths) * 100 + q * 10 + len(lengths))
    embeds = torch.randn(len(lengths), q, hidden, generator=gen) * 0.5
    return [embeds, torch.tensor(lengths, dtype=torch.long), *rand_past(gen, n_layers, len(lengths), kv_heads, cap, head_dim)]


def gumbel_choice(logits: torch.Tensor, noise: torch.Tensor, temperature: torch.Tensor,
                  top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """logits [B, V], noise uniforms in [0, 1) [B, V], per row (shape [B], or [] for every row):
    temperature (0 = greedy), top_k (1..V), top_p ((0, 1], 1 = none) -> ids [B]. Same arithmetic as
    voxport/runtime/sampling.py's numpy version."""
    b, v = logits.shape
    col = (lambda t: t.reshape(-1, 1).expand(b, 1))
    temperature, top_k, top_p = col(temperature), col(top_k), col(top_p)
    ranked = torch.sort(logits, dim=-1, descending=True).values
    kth = ranked.gather(-1, (top_k - 1).clamp(0, v - 1))
    kept = torch.where(logits >= kth, logits, torch.full_like(logits, float("-inf")))
    gumbel = -torch.log(-torch.log(noise.clamp(1e-20, 1.0 - 1e-7)))
    scaled = kept / temperature.clamp(min=1e-6)
    # top-p over softmax(scaled) in descending order: keep an id while the ids above it hold < top_p
    order = torch.sort(scaled, dim=-1, descending=True).indices  # ties: equal mass either way
    p = torch.softmax(scaled.gather(-1, order), dim=-1)
    above = torch.cat([torch.zeros_like(p[:, :1]), torch.cumsum(p[:, :-1], dim=-1)], dim=-1)
    keep = torch.zeros_like(above, dtype=torch.bool).scatter(-1, order, (above < top_p) | (top_p >= 1))
    sampled = torch.where(keep, scaled, torch.full_like(scaled, float("-inf"))) + gumbel
    scores = torch.where(temperature > 0, sampled, logits)
    return scores.argmax(-1)


def static_stack(stack, x: torch.Tensor, lengths: torch.Tensor, past: tuple) -> tuple[torch.Tensor, list]:
    """A Llama/Qwen3 decoder stack (its layers, norm, rotary_emb) over x [B, T, H] whose KV lives in
    static buffers `past` (key0, value0, key1, ... each [B, kv_heads, capacity, head_dim]), row r
    holding lengths[r] positions: the new positions lengths[r]..+T-1 are written into copies of the
    buffers (the presents, returned flat), each row attends to its own first lengths[r] + t + 1
    positions. The written frame graphs' PyTorch reference, and what is traced where the fused
    kernels refuse a configuration; from the model's own submodules, as unrolled_stack."""
    b, n = x.shape[0], x.shape[1]
    cap = past[0].shape[2]
    pos = lengths.reshape(-1, 1) + torch.arange(n, device=x.device)  # [B, T]
    rotary = stack.rotary_emb
    freqs = pos[..., None].to(torch.float32) * rotary.inv_freq.to(torch.float32)  # as rope_caches
    emb = torch.cat([freqs, freqs], dim=-1)[:, None]  # [B, 1, T, D]
    scale = float(getattr(rotary, "attention_scaling", 1.0))
    cos, sin = (emb.cos() * scale).to(x.dtype), (emb.sin() * scale).to(x.dtype)
    seen = torch.arange(cap, device=x.device)[None, None, :] <= pos[:, :, None]  # [B, T, capacity]
    mask = torch.where(seen, 0.0, float("-inf"))[:, None].to(x.dtype)
    presents = []
    for j, layer in enumerate(stack.layers):
        a = layer.self_attn
        q, k, v = _rotated_qkv(a, layer.input_layernorm(x), cos, sin)
        at = pos[:, None, :, None].expand(b, k.shape[1], n, a.head_dim)
        k, v = past[2 * j].scatter(2, at, k), past[2 * j + 1].scatter(2, at, v)
        presents += [k, v]
        g = a.num_key_value_groups
        kr, vr = (k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)) if g > 1 else (k, v)
        w = torch.softmax(q @ kr.transpose(2, 3) * a.scaling + mask, dim=-1)
        x = x + a.o_proj((w @ vr).transpose(1, 2).reshape(b, n, -1))
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    return stack.norm(x), presents


def _rotated_qkv(a, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """One attention's q, k, v [B, heads, T, head_dim] from the normed input h [B, T, H]: per-head q/k
    norms (Qwen3) where it has them, then RoPE on q and k. Shared by the static and unrolled stacks."""
    b, n = h.shape[0], h.shape[1]
    q = a.q_proj(h).view(b, n, -1, a.head_dim)
    k = a.k_proj(h).view(b, n, -1, a.head_dim)
    if hasattr(a, "q_norm"):
        q, k = a.q_norm(q), a.k_norm(k)
    q, k = q.transpose(1, 2), k.transpose(1, 2)
    v = a.v_proj(h).view(b, n, -1, a.head_dim).transpose(1, 2)
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin, v


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rope_at(rotary, start: int, n: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin for positions start..start+n-1, the arithmetic of a transformers rotary module. Not its
    forward: that is @torch.no_grad(), and each such region becomes a submodule torch.export splits
    out and recompiles (31 of them made CSM's depth-decoder trace take minutes)."""
    # positions are known when tracing: a constant, not a float Range (no fp16 Range kernel)
    pos = torch.tensor([float(p) for p in range(start, start + n)], device=x.device)
    freqs = pos[None, :, None] * rotary.inv_freq.to(torch.float32)[None, None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    return (emb.cos() * rotary.attention_scaling).to(x.dtype), (emb.sin() * rotary.attention_scaling).to(x.dtype)


def unrolled_stack(stack, x: torch.Tensor, kv: list, start: int) -> torch.Tensor:
    """A Llama/Qwen3 decoder stack (its layers, norm and rotary_emb) on positions start.. with its KV
    in `kv` (one (k, v) per layer, grown in place), written out from the model's own submodules
    instead of calling its forward: that builds masks and caches per call, which made a 31-step trace
    take minutes and the graph several times larger. Per-head q/k norms (Qwen3) where the attention
    has them; causal masking only when more than one position comes at once."""
    b, n = x.shape[0], x.shape[1]
    cos, sin = rope_at(stack.rotary_emb, start, n, x)
    mask = torch.full((n, n), float("-inf"), device=x.device).triu(1) if n > 1 else None
    for j, layer in enumerate(stack.layers):
        a = layer.self_attn
        q, k, v = _rotated_qkv(a, layer.input_layernorm(x), cos, sin)
        if kv[j] is not None:
            k, v = torch.cat([kv[j][0], k], 2), torch.cat([kv[j][1], v], 2)
        kv[j] = (k, v)
        g = a.num_key_value_groups
        kr, vr = (k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)) if g > 1 else (k, v)
        w = q @ kr.transpose(2, 3) * a.scaling
        w = torch.softmax(w if mask is None else w + mask, dim=-1)
        x = x + a.o_proj((w @ vr).transpose(1, 2).reshape(b, n, -1))
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    return stack.norm(x)


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
