"""Fused transformer blocks written from a checkpoint's weights with onnxruntime's contrib ops.

Why not trace: the traced frame graph spent ~8,300 kernels per marvis-250m frame (every RMSNorm, RoPE
and attention as a dozen elementwise ops), and WebGPU pays a dispatch for each. Pattern rewriters on
the traced graph do not recover GroupQueryAttention or RoPE from what transformers 5.23 emits. So a
Llama-style layer is written here as 11 nodes:

    [Skip]SimplifiedLayerNormalization -> MatMul(packed q|k|v) -> GroupQueryAttention (rotary inside)
    -> MatMul(o) -> SkipSimplifiedLayerNormalization (residual add + norm) -> MatMul(packed gate|up)
    -> Split -> Sigmoid -> Mul -> Mul (SiLU(gate) * up) -> MatMul(down)

Qwen3 attention (q_norm/k_norm: RMSNorm per head before RoPE) adds 7 nodes between the packed MatMul and
GroupQueryAttention: Split(q|k|v), then for q and k Reshape -> SkipSimplifiedLayerNormalization (zero
skip) -> Reshape, GroupQueryAttention taking q, k, v apart.

Every op has a kernel in onnxruntime's CPU build and in onnxruntime-web (wasm and WebGPU). The weights
are the reference modules' own, concatenated; the PyTorch module stays the reference the parity
harness compares each graph against. GroupQueryAttention needs head_dim % 8 == 0 (every released
CSM/Marvis/Llama checkpoint has 64 or 128).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from onnx import ModelProto, TensorProto

from voxport.exporter.onnx_builder import GraphBuilder


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).cpu().numpy()


def linear_t(*linears) -> np.ndarray:
    """nn.Linear weights [out, in] -> one MatMul weight [in, sum(out)] (outputs concatenated)."""
    return np.concatenate([_np(l.weight).T for l in linears], axis=1)


def linear_bias(*linears) -> np.ndarray | None:
    if all(l.bias is None for l in linears):
        return None
    return np.concatenate([_np(l.bias) if l.bias is not None else np.zeros(l.out_features, np.float32)
                           for l in linears])


@dataclass(frozen=True)
class Rope:
    """cos/sin caches [max_positions, head_dim/2] in GroupQueryAttention's layout, computed with the
    reference rotary module's own inv_freq and attention scaling (llama3 scaling included; a dynamic
    scaling that changes with the sequence length is not)."""

    cos: str
    sin: str


def rope_caches(b: GraphBuilder, name: str, rotary, max_positions: int) -> Rope:
    pos = torch.arange(max_positions, dtype=torch.float32)
    freqs = pos[:, None] * rotary.inv_freq.to(torch.float32)[None, :]  # the reference's product
    scale = float(getattr(rotary, "attention_scaling", 1.0))
    return Rope(b.weight(f"{name}.cos_cache", _np(freqs.cos() * scale)),
                b.weight(f"{name}.sin_cache", _np(freqs.sin() * scale)))


def unfusable(cfg) -> str | None:
    """Why a Llama-style config cannot be written with these blocks, or None."""
    if cfg.head_dim % 8:
        return f"head_dim {cfg.head_dim} is not a multiple of 8, which onnxruntime's GroupQueryAttention requires"
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return f"hidden_act {cfg.hidden_act!r}; the fused MLP is SiLU-gated"
    if getattr(cfg, "sliding_window", None) is not None:
        return f"sliding_window {cfg.sliding_window}; the fused attention attends to the whole past"
    return None


def mask_lengths(b, mask: str) -> tuple[str, str]:
    """GroupQueryAttention's length inputs from an attention mask [1, total]: seqlens_k (valid keys
    - 1, int32) and total_sequence_length (int32)."""
    total = b.op("Cast", [b.op("Gather", [b.op("Shape", [mask]), b.const(1)], label="total")], to=6)
    seqlens = b.op("Sub", [b.op("Cast", [b.op("ReduceSum", [mask, b.const([1])], keepdims=0)], to=6),
                           b.const([1], np.int32)], label="seqlens_k")
    return seqlens, total


def cached_stack(b, model, name: str, max_positions: int, embeds: str, past: list, mask: str) -> tuple[str, list]:
    """A decoder stack (`model`: layers, norm, rotary_emb) over a prompt or one step, its KV from
    `past`, lengths from the attention mask: the last position's hidden state [1, 1, H] (the last
    layer's MLP runs on that position only) and the present KV."""
    seqlens, total = mask_lengths(b, mask)
    stack = LlamaStack(b, model, name, rope_caches(b, name, model.rotary_emb, max_positions))
    return stack(embeds, past, seqlens, total, last_only=True)


class LlamaStack:
    """The decoder layers + final norm of a transformers Llama-style model, as fused nodes.

    `prefix` names the weights (shared by every call: a stack run 31 times per frame stores each weight
    once). Each call writes one pass over the layers under the builder's current scope."""

    def __init__(self, b: GraphBuilder, model, prefix: str, rope: Rope):
        cfg = model.config
        why = unfusable(cfg)
        if why:
            raise ValueError(f"{prefix}: {why}")
        self.b, self.rope, self.cfg = b, rope, cfg
        self.heads, self.kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.eps = float(model.norm.variance_epsilon)
        self.layers = []
        for i, layer in enumerate(model.layers):
            a, m, p = layer.self_attn, layer.mlp, f"{prefix}.layers.{i}"
            w = {"in_norm": b.weight(f"{p}.input_layernorm.weight", _np(layer.input_layernorm.weight)),
                 "post_norm": b.weight(f"{p}.post_attention_layernorm.weight",
                                       _np(layer.post_attention_layernorm.weight)),
                 "qkv": b.weight(f"{p}.attn.qkv.weight", linear_t(a.q_proj, a.k_proj, a.v_proj)),
                 "o": b.weight(f"{p}.attn.o.weight", linear_t(a.o_proj)),
                 "gate_up": b.weight(f"{p}.mlp.gate_up.weight", linear_t(m.gate_proj, m.up_proj)),
                 "down": b.weight(f"{p}.mlp.down.weight", linear_t(m.down_proj)),
                 "scale": float(a.scaling)}
            if getattr(a, "q_norm", None) is not None:  # Qwen3: RMSNorm per head on q and k, before RoPE
                w["q_norm"] = b.weight(f"{p}.attn.q_norm.weight", _np(a.q_norm.weight))
                w["k_norm"] = b.weight(f"{p}.attn.k_norm.weight", _np(a.k_norm.weight))
                w["q_eps"], w["k_eps"] = float(a.q_norm.variance_epsilon), float(a.k_norm.variance_epsilon)
            for key, lins in (("qkv_bias", (a.q_proj, a.k_proj, a.v_proj)), ("o_bias", (a.o_proj,)),
                              ("gate_up_bias", (m.gate_proj, m.up_proj)), ("down_bias", (m.down_proj,))):
                bias = linear_bias(*lins)
                w[key] = None if bias is None else b.weight(f"{p}.{key}", bias)
            self.layers.append(w)
        self.norm = b.weight(f"{prefix}.norm.weight", _np(model.norm.weight))

    def _linear(self, x: str, w: str, bias: str | None, label: str) -> str:
        y = self.b.op("MatMul", [x, w], label=label)
        return y if bias is None else self.b.op("Add", [y, bias], label=label)

    def _head_norm(self, x: str, weight: str, eps: float, heads: int, label: str) -> str:
        """RMSNorm over each head of x [1, seq, heads * head_dim]. Viewed as [seq, heads, head_dim], the
        zero skip is one constant [heads, head_dim] whatever seq is (the op takes a 2-D skip as
        (sequence, hidden) and repeats it over the batch axis; checked on onnxruntime's CPU build)."""
        b, hd = self.b, self.head_dim
        x3 = b.op("Reshape", [x, b.const([-1, heads, hd])], label=label)
        zero = b.const(np.zeros((heads, hd)), np.float32)
        y = b.ms("SkipSimplifiedLayerNormalization", [x3, zero, weight], label=label, epsilon=eps)
        return b.op("Reshape", [y, b.const([1, -1, heads * hd])], label=label)

    def __call__(self, x: str, past: list[tuple[str, str]] | None, seqlens_k: str, total_len: str,
                 seq: int | None = None, last_only: bool = False) -> tuple[str, list[tuple[str, str]]]:
        """x [1, seq, hidden] -> (final-normed hidden [1, seq, hidden], per layer (present_key, present_value)).
        seq: the input length when it is fixed (unrolled steps), None when it is the graph's dynamic axis.
        last_only: return the last position only ([1, 1, hidden]); the last layer's MLP then runs on
        that position alone (a 20-token prompt: 19 MLP rows of the last layer not computed).
        past: per layer (key, value) [1, kv_heads, past, head_dim], or None for an empty cache.
        seqlens_k [1] int32 = total - 1, total_len [] int32 (GroupQueryAttention's position source)."""
        b, presents = self.b, []
        h = residual = None
        for i, w in enumerate(self.layers):
            with b.scope(f"layers.{i}"):
                if residual is None:
                    # The first norm has no residual to add: a zero one. onnxruntime's plain
                    # SimplifiedLayerNormalization sits in the ONNX domain, where the ONNX checker
                    # (voxport verify) rejects it as unknown; x + 0 is exact.
                    residual = b.const(np.zeros((1, seq, self.cfg.hidden_size)), np.float32) if seq else \
                        b.op("Mul", [x, b.const(0.0, np.float32)], label="no_residual")
                h, _, _, residual = b.ms("SkipSimplifiedLayerNormalization", [x, residual, w["in_norm"]],
                                         n_out=4, unused=(1, 2), label="input_layernorm", epsilon=self.eps)
                with b.scope("attn"):
                    qkv = self._linear(h, w["qkv"], w["qkv_bias"], "qkv")
                    pk, pv = past[i] if past is not None else ("", "")
                    q, k, v = qkv, "", ""
                    if "q_norm" in w:  # normed per head before GroupQueryAttention rotates them
                        hd = self.head_dim
                        q, k, v = b.op("Split", [qkv, b.const([self.heads * hd, self.kv_heads * hd,
                                                               self.kv_heads * hd])], n_out=3, axis=-1, label="qkv")
                        q = self._head_norm(q, w["q_norm"], w["q_eps"], self.heads, "q_norm")
                        k = self._head_norm(k, w["k_norm"], w["k_eps"], self.kv_heads, "k_norm")
                    attn, k, v = b.ms("GroupQueryAttention", [q, k, v, pk, pv, seqlens_k, total_len,
                                                              self.rope.cos, self.rope.sin], n_out=3,
                                      num_heads=self.heads, kv_num_heads=self.kv_heads, scale=w["scale"],
                                      do_rotary=1, rotary_interleaved=0)
                    presents.append((k, v))
                    x = self._linear(attn, w["o"], w["o_bias"], "o")
                if last_only and i == len(self.layers) - 1:
                    x, residual = (b.op("Slice", [t, b.const([-1]), b.const([1 << 62]), b.const([1])], label="last")
                                   for t in (x, residual))
                h, _, _, residual = b.ms("SkipSimplifiedLayerNormalization", [x, residual, w["post_norm"]],
                                         n_out=4, unused=(1, 2), label="post_attention_layernorm", epsilon=self.eps)
                with b.scope("mlp"):
                    gu = self._linear(h, w["gate_up"], w["gate_up_bias"], "gate_up")
                    gate, up = b.op("Split", [gu], n_out=2, axis=-1, num_outputs=2)
                    silu = b.op("Mul", [gate, b.op("Sigmoid", [gate])], label="silu")
                    x = self._linear(b.op("Mul", [silu, up]), w["down"], w["down_bias"], "down")
        out = b.ms("SkipSimplifiedLayerNormalization", [x, residual, self.norm], label="norm", epsilon=self.eps)
        return out, presents


def frame_model(b: GraphBuilder, graph_outputs: list, codes: str, next_embeds: str, presents: list) -> ModelProto:
    """A frame graph's outputs named as its GraphSpec declares them (codes, next_embeds, present.{i}.key/value),
    and the finished model."""
    outs = {"codes": codes, "next_embeds": next_embeds}
    for i, (key, value) in enumerate(presents):
        outs[f"present.{i}.key"], outs[f"present.{i}.value"] = key, value
    for t in graph_outputs:
        b.output(outs[t.name], t.name, t.dtype, t.shape)
    return b.model()


class Sampler:
    """Gumbel-max over the top-k, then top-p, logits, written once per frame graph (the arithmetic of
    voxport/runtime/sampling.py): code = argmax of l / T + g over the k largest logits l that top-p
    keeps, g = -log(-log(u)) from the `noise` uniforms; temperature 0 = greedy. Per codebook an `If` on
    T > 0: greedy is one ArgMax; sampling ranks only k logits (TopK). Measured on Chromium's WebGPU:
    one TopK over 2,051 logits is ~80 dispatches (a full sort, whatever k), 2,560 of tiny's 3,667 per
    frame; on CPU the traced graph's full sort cost ~7 ms of a marvis-250m frame."""

    def __init__(self, b: GraphBuilder, temperature: str, top_k: str, top_p: str, noise: str | None = None,
                 gumbel: str | None = None, name: str = "sampling", vocab: int | None = None):
        """Gumbel values from `noise`, or `gumbel`: another Sampler's (one noise input read with two
        temperature/top-k pairs, as Qwen3-TTS's talker and code predictor sampling). `vocab`: top_k is
        clipped to [1, vocab] as the PyTorch reference's gumbel_choice does (TopK fails past the row).
        `top_p`: an input in (0, 1]; 1 keeps all k (the comparison is skipped, not rounded)."""
        with b.scope(name):
            self.top_p = top_p
            self.no_top_p = b.op("GreaterOrEqual", [top_p, b.const(1.0, np.float32)], label="top_p_off")
            self.sampling = b.op("Greater", [temperature, b.const(0.0, np.float32)])
            self.k = b.op("Reshape", [top_k, b.const([1])], label="k")
            if vocab is not None:
                self.k = b.op("Clip", [self.k, b.const(1), b.const(vocab)], label="k")
            self.temp = b.op("Max", [temperature, b.const(1e-6, np.float32)])  # as torch's clamp(min=1e-6)
            if gumbel is None:
                u = b.op("Clip", [noise, b.const(1e-20, np.float32), b.const(1.0 - 1e-7, np.float32)])
                gumbel = b.op("Neg", [b.op("Log", [b.op("Neg", [b.op("Log", [u])])])], label="gumbel")
            self.gumbel = gumbel
        self.b = b

    def __call__(self, logits: str, codebook: int) -> str:
        """logits [1, 1, V] -> code [1, 1] int64; the Gumbel values of noise row `codebook` (its first V
        when the row is longer: TopK's indices pick them)."""
        b = self.b
        with b.scope("sample"):
            # fp32 here, so the branches (which read it from the outer scope) stay fp32 in fp16 variants
            logits = b.op("Cast", [logits], to=1, label="fp32")
            with b.branch() as greedy:
                best = b.op("ArgMax", [logits], axis=-1, keepdims=1, label="greedy")
            with b.branch() as sampled:
                with b.scope("topk"):
                    vals, idx = b.op("TopK", [logits, self.k], n_out=2, axis=-1, largest=1, sorted=1)
                    row = b.op("Gather", [self.gumbel, b.const([codebook])], axis=1, label="gumbel")  # [1, 1, V]
                    g = b.op("GatherElements", [row, idx], axis=-1)
                    scaled = b.op("Div", [vals, self.temp])
                with b.scope("topp"):  # TopK's values are sorted: the exclusive CumSum is the mass above each
                    above = b.op("CumSum", [b.op("Softmax", [scaled], axis=-1), b.const(-1)], exclusive=1)
                    keep = b.op("Or", [b.op("Less", [above, self.top_p]), self.no_top_p])
                    scaled = b.op("Where", [keep, scaled, b.const(-np.inf, np.float32)])
                with b.scope("topk"):
                    scores = b.op("Add", [scaled, g])
                    pick = b.op("GatherElements", [idx, b.op("ArgMax", [scores], axis=-1, keepdims=1)], axis=-1)
            code = b.op("If", [self.sampling], then_branch=b.subgraph("sampled", sampled, [pick]),
                        else_branch=b.subgraph("greedy", greedy, [best]), out_types=(TensorProto.INT64,))
            return b.op("Reshape", [code, b.const([1, 1])], label="code")
