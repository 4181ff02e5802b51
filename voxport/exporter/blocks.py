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
harness compares each graph against. Which configurations the kernels take is exporter/kernels.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from onnx import ModelProto, TensorProto
from onnx import helper as onnx_helper

from voxport.exporter.kernels import unfusable
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


def cache_lengths(b, lengths: str, seq: int | str, capture: bool = False) -> tuple[str, str]:
    """GroupQueryAttention's length inputs for a static cache: `lengths` [batch] (int64, positions each
    row holds before this call) and `seq` new positions per row (an int, or the name of a tensor whose
    axis 1 is it) -> seqlens_k [batch] int32 (each row's last position) and total_sequence_length []
    int32 (the longest row's total; the kernel bounds each row by its own seqlens_k).

    capture: the form WebGPU graph capture takes, every value on the GPU: `seq` counted there (a sum of
    ones over its axis 1, not a Shape, whose CPU value a GPU op would need copied up: capture refuses
    copies) and the total from seqlens_k. Under capture onnxruntime's WebGPU GroupQueryAttention takes
    total_sequence_length from GPU memory (elsewhere from the CPU: a readback, in a call that is not
    captured)."""
    if capture:
        lens = b.op("Cast", [lengths], to=6, label="lengths")
        ones = b.op("Add", [b.op("Mul", [b.op("Slice", [seq, b.const([0]), b.const([1]), b.const([2])]),
                                          b.const(0.0, np.float32)]), b.const(1.0, np.float32)], label="seq")
        n = b.op("Cast", [b.op("ReduceSum", [ones, b.const([1, 2])], keepdims=0)], to=6, label="seq")  # [batch]
        seqlens = b.op("Sub", [b.op("Add", [lens, n]), b.const([1], np.int32)], label="seqlens_k")
        total = b.op("Add", [b.op("ReduceMax", [seqlens], keepdims=0), b.const(1, np.int32)], label="total")
        return seqlens, total
    n = b.const([seq], np.int32) if isinstance(seq, int) else \
        b.op("Cast", [b.op("Gather", [b.op("Shape", [seq]), b.const([1])], label="seq")], to=6)
    lens = b.op("Cast", [lengths], to=6, label="lengths")
    seqlens = b.op("Sub", [b.op("Add", [lens, n]), b.const([1], np.int32)], label="seqlens_k")
    total = b.op("Add", [b.op("ReduceMax", [lens], keepdims=0), b.op("Squeeze", [n, b.const([0])])], label="total")
    return seqlens, total


def row_lengths(b, like: str, pos: int, rows: str | None = None) -> tuple[str, str]:
    """Length inputs for an in-graph cache where every row is at position `pos` (the depth steps):
    seqlens_k [batch] = pos, total = pos + 1; batch from `like` [batch, ...], or from `rows` (GPU
    [batch] int32 zeros, the capturable form: no shape op feeds a GPU value)."""
    if rows is not None:
        return b.op("Add", [rows, b.const([pos], np.int32)], label="seqlens_k"), b.const(pos + 1, np.int32)
    batch = b.op("Slice", [b.op("Shape", [like]), b.const([0]), b.const([1])], label="batch")
    return b.op("Expand", [b.const([pos], np.int32), batch], label="seqlens_k"), b.const(pos + 1, np.int32)


def zero_rows(b, seqlens: str) -> str:
    """[batch] int32 zeros on the GPU from a GPU [batch] int32 (the `rows` of row_lengths, fixed_cache)."""
    return b.op("Mul", [seqlens, b.const(0, np.int32)], label="rows")


def cached_stack(b, model, name: str, max_positions: int, embeds: str, past: list, lengths: str,
                 capture: bool = False) -> tuple[str, list, str]:
    """A decoder stack (`model`: layers, norm, rotary_emb) over a prompt or one step for every row,
    its KV in static buffers `past` [batch, kv_heads, capacity, head_dim] (written in place when the
    runtime binds each present output to its past input), row lengths from `lengths`: the last
    position's hidden state [batch, 1, H] (the last layer's MLP runs on that position only), the
    present KV, and seqlens_k [batch] int32. capture: the lengths in cache_lengths' capturable form."""
    seqlens, total = cache_lengths(b, lengths, embeds, capture)
    stack = LlamaStack(b, model, name, rope_caches(b, name, model.rotary_emb, max_positions))
    last, presents = stack(embeds, past, seqlens, total, last_only=True)
    return last, presents, seqlens


class LlamaStack:
    """The decoder layers + final norm of a transformers Llama-style model, as fused nodes.

    `prefix` names the weights (shared by every call: a stack run 31 times per frame stores each weight
    once). Each call writes one pass over the layers under the builder's current scope."""

    def __init__(self, b: GraphBuilder, model, prefix: str, rope: Rope):
        cfg = model.config
        why = unfusable(cfg)  # the builders are called only where kernels.fusable said yes
        if why:
            raise ValueError(f"{prefix}: {why}")
        self.b, self.rope, self.cfg, self.prefix = b, rope, cfg, prefix
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

    def fixed_cache(self, like: str, capacity: int, rows: str | None = None) -> list[tuple[str, str]]:
        """An in-graph cache of fixed size: zeros [batch, kv_heads, capacity, head_dim] (batch from
        `like`) as every layer's first past; each present then keeps that shape, so no shape in the
        unrolled steps grows (a fixed-shape graph is what WebGPU graph capture needs). rows (GPU
        [batch] int32 zeros): the capturable form, the zeros broadcast on the GPU from an initializer
        (ConstantOfShape runs on the CPU on WebGPU: an upload every frame, which capture refuses), one
        tensor per layer and kv: under capture GroupQueryAttention must write its present into its past's
        buffer, which onnxruntime grants only to a past no other node reads."""
        b = self.b
        if rows is not None:
            # Unsqueeze, not Reshape to -1: the batch axis keeps its symbolic name through shape
            # inference, so onnxruntime can prove a present the size of its past and share the buffer
            col = b.op("Unsqueeze", [b.op("Cast", [rows], to=1), b.const([1, 2, 3])], label="cache")
            # a zeros initializer of its own per layer and kv: identical Adds would be merged into one
            # tensor by onnxruntime's common-subexpression pass, which no GroupQueryAttention may then
            # write in place
            zero = np.zeros((1, self.kv_heads, capacity, self.head_dim), np.float32)
            return [tuple(b.op("Add", [col, b.weight(f"{self.prefix}.cache.{i}.{kv}", zero)], label=f"cache.{i}.{kv}")
                          for kv in ("key", "value")) for i in range(len(self.layers))]
        batch = b.op("Slice", [b.op("Shape", [like]), b.const([0]), b.const([1])], label="batch")
        shape = b.op("Concat", [batch, b.const([self.kv_heads, capacity, self.head_dim])], axis=0, label="cache")
        zeros = b.op("ConstantOfShape", [shape], value=onnx_helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]),
                     out_types=(TensorProto.FLOAT,))
        return [(zeros, zeros)] * len(self.layers)

    def _linear(self, x: str, w: str, bias: str | None, label: str) -> str:
        y = self.b.op("MatMul", [x, w], label=label)
        return y if bias is None else self.b.op("Add", [y, bias], label=label)

    def _head_norm(self, x: str, weight: str, eps: float, heads: int, label: str) -> str:
        """RMSNorm over each head of x [batch, seq, heads * head_dim]. Viewed as [seq, heads, head_dim], the
        zero skip is one constant [heads, head_dim] whatever seq is (the op takes a 2-D skip as
        (sequence, hidden) and repeats it over the batch axis; checked on onnxruntime's CPU build)."""
        b, hd = self.b, self.head_dim
        x3 = b.op("Reshape", [x, b.const([-1, heads, hd])], label=label)
        zero = b.const(np.zeros((heads, hd)), np.float32)
        y = b.ms("SkipSimplifiedLayerNormalization", [x3, zero, weight], label=label, epsilon=eps)
        return b.op("Reshape", [y, b.op("Shape", [x], label=label)], label=label)

    def __call__(self, x: str, past: list[tuple[str, str]] | None, seqlens_k: str, total_len: str,
                 seq: int | None = None, last_only: bool = False) -> tuple[str, list[tuple[str, str]]]:
        """x [batch, seq, hidden] -> (final-normed hidden [batch, seq, hidden], per layer (present_key, present_value)).
        seq: the input length when it is fixed (unrolled steps), None when it is the graph's dynamic axis.
        last_only: return the last position only ([batch, 1, hidden]); the last layer's MLP then runs on
        that position alone (a 20-token prompt: 19 MLP rows of the last layer not computed).
        past: per layer (key, value) [batch, kv_heads, capacity, head_dim] (a static buffer: present has
        its shape), or None for an empty cache (present is [batch, kv_heads, total, head_dim]).
        seqlens_k [batch] int32 = each row's last position, total_len [] int32 (GroupQueryAttention's
        position source: row r's new positions are seqlens_k[r] - seq + 1 .. seqlens_k[r])."""
        b, presents = self.b, []
        h = residual = None
        for i, w in enumerate(self.layers):
            with b.scope(f"layers.{i}"):
                if residual is None:
                    # The first norm has no residual to add: a zero one. onnxruntime's plain
                    # SimplifiedLayerNormalization sits in the ONNX domain, where the ONNX checker
                    # (voxport verify) rejects it as unknown; x + 0 is exact.
                    residual = b.const(np.zeros((seq, self.cfg.hidden_size)), np.float32) if seq else \
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


def frame_model(b: GraphBuilder, graph_outputs: list, codes: str, next_embeds: str, presents: list,
                capture: bool = False) -> ModelProto:
    """A frame graph's outputs named as its GraphSpec declares them (codes, next_embeds, present.{i}.key/value),
    and the finished model. capture: the codes were kept int32 (Sampler's capturable form) and become
    the declared int64 only here."""
    if capture:
        codes = b.op("Cast", [codes], to=TensorProto.INT64, label="codes")
    outs = {"codes": codes, "next_embeds": next_embeds}
    for i, (key, value) in enumerate(presents):
        outs[f"present.{i}.key"], outs[f"present.{i}.value"] = key, value
    for t in graph_outputs:
        b.output(outs[t.name], t.name, t.dtype, t.shape)
    return b.model()


def row_sum(b: GraphBuilder, x: str, n: int) -> str:
    """x [B, n, H] summed over axis 1 -> [B, 1, H], each row's sum the same whatever the batch: a MatMul
    of ones [1, n] (one [1, n] x [n, H] product per row). onnxruntime's ReduceSum over axis 1 adds in an
    order that depends on B (checked: row 0 of a batch of 2 differs from row 0 alone in the last bit for
    [B, 32, 64] and [B, 32, 1536]); the next frame's input then differs, and a quantized frame's per-row
    rounding turned that into other codes after 4 frames on marvis-250m."""
    return b.op("MatMul", [b.weight(f"ones_{n}", np.ones((1, n), np.float32)), x], label="row_sum")


class Sampler:
    """Gumbel-max over the top-k, then top-p, logits, written once per frame graph (the arithmetic of
    voxport/runtime/sampling.py), each row with its own settings: code = argmax of l / T + g over the
    k largest logits l that top-p keeps, g = -log(-log(u)) from the `noise` uniforms; temperature 0 =
    greedy. Per codebook an `If` on any row sampling: greedy is one ArgMax; sampling ranks only the
    largest k of the batch (TopK), each row then keeping its own first k. Measured on Chromium's
    WebGPU: one TopK over 2,051 logits is ~80 dispatches (a full sort, whatever k), 2,560 of tiny's
    3,667 per frame; on CPU the traced graph's full sort cost ~7 ms of a marvis-250m frame.

    capture=True: the form WebGPU graph capture takes (the `frame_capture` graph): no `If` (capture
    refuses control flow), so every call ranks; TopK's k is the row's width, an initializer (a k
    computed from the top_k feed would be a CPU value fed from a GPU one: a copy, which capture also
    refuses), each row then keeping its own first top_k; greedy rows take the ArgMax through a
    `Where`. Codes are int32 (`code_type`): WebGPU runs int64 arithmetic on the CPU."""

    def __init__(self, b: GraphBuilder, temperature: str, top_k: str, top_p: str, noise: str | None = None,
                 gumbel: str | None = None, name: str = "sampling", vocab: int | None = None, capture: bool = False):
        """Settings [batch] per row. Gumbel values from `noise` [batch, K, V], or `gumbel`: another
        Sampler's (one noise input read with two temperature/top-k pairs, as Qwen3-TTS's talker and
        code predictor sampling). `vocab`: top_k is clipped to [1, vocab] as the PyTorch reference's
        gumbel_choice does (TopK fails past the row). `top_p`: in (0, 1]; 1 keeps all k (the
        comparison is skipped, not rounded)."""
        with b.scope(name):
            col = b.const([-1, 1, 1])  # [batch] -> [batch, 1, 1], against logits [batch, 1, V]
            self.top_p = b.op("Reshape", [top_p, col], label="top_p")
            self.no_top_p = b.op("GreaterOrEqual", [self.top_p, b.const(1.0, np.float32)], label="top_p_off")
            if capture:  # top-p 1 keeps every rank: an infinite bound (WebGPU has no `Or` kernel)
                self.top_p = b.op("Where", [self.no_top_p, b.const(np.inf, np.float32), self.top_p], label="top_p")
            self.row_sampling = b.op("Greater", [b.op("Reshape", [temperature, col], label="temperature"),
                                                 b.const(0.0, np.float32)], label="row")
            self.capture, self.vocab = capture, vocab
            self.code_type = np.int32 if capture else np.int64
            if capture:
                if vocab is None:
                    raise ValueError("a capturable Sampler needs the logits' width (vocab)")
                k = b.op("Cast", [b.op("Reshape", [top_k, col], label="k")], to=TensorProto.FLOAT)
                self.k = b.op("Clip", [k, b.const(1.0, np.float32), b.const(float(vocab), np.float32)], label="k")
            else:
                self.sampling = b.op("Greater", [b.op("ReduceMax", [temperature], keepdims=0),
                                                 b.const(0.0, np.float32)], label="any")
                k = b.op("Reshape", [top_k, col], label="k")
                if vocab is not None:
                    k = b.op("Clip", [k, b.const(1), b.const(vocab)], label="k")
                self.k = k
                self.k_max = b.op("Reshape", [b.op("ReduceMax", [k], keepdims=0), b.const([1])], label="k_max")
            self.temp = b.op("Max", [b.op("Reshape", [temperature, col], label="temp"),
                                     b.const(1e-6, np.float32)])  # as torch's clamp(min=1e-6)
            if gumbel is None:
                u = b.op("Clip", [noise, b.const(1e-20, np.float32), b.const(1.0 - 1e-7, np.float32)])
                gumbel = b.op("Neg", [b.op("Log", [b.op("Neg", [b.op("Log", [u])])])], label="gumbel")
            self.gumbel = gumbel
        self.b = b

    def __call__(self, logits: str, codebook: int) -> str:
        """logits [batch, 1, V] -> code [batch, 1] int64; the Gumbel values of noise row `codebook` (its
        first V when the row is longer: TopK's indices pick them)."""
        b = self.b
        if self.capture:
            return self._branch_free(logits, codebook)
        with b.scope("sample"):
            # fp32 here, so the branches (which read it from the outer scope) stay fp32 in fp16 variants
            logits = b.op("Cast", [logits], to=1, label="fp32")
            with b.branch() as greedy:
                best = b.op("ArgMax", [logits], axis=-1, keepdims=1, label="greedy")
            with b.branch() as sampled:
                argmax = b.op("ArgMax", [logits], axis=-1, keepdims=1, label="greedy_rows")
                with b.scope("topk"):
                    vals, idx = b.op("TopK", [logits, self.k_max], n_out=2, axis=-1, largest=1, sorted=1)
                    row = b.op("Gather", [self.gumbel, b.const([codebook])], axis=1, label="gumbel")  # [B, 1, V]
                    g = b.op("GatherElements", [row, idx], axis=-1)
                    scaled = b.op("Div", [vals, self.temp])
                    # a row keeps its own first k of the batch's k_max (TopK's values are sorted)
                    rank = b.op("Range", [b.const(0), b.op("Squeeze", [self.k_max, b.const([0])]), b.const(1)],
                                label="rank")
                    scaled = b.op("Where", [b.op("Less", [rank, self.k]), scaled, b.const(-np.inf, np.float32)],
                                  label="row_k")
                with b.scope("topp"):  # sorted: the exclusive CumSum is the mass above each
                    above = b.op("CumSum", [b.op("Softmax", [scaled], axis=-1), b.const(-1)], exclusive=1)
                    keep = b.op("Or", [b.op("Less", [above, self.top_p]), self.no_top_p])
                    scaled = b.op("Where", [keep, scaled, b.const(-np.inf, np.float32)])
                with b.scope("topk"):
                    scores = b.op("Add", [scaled, g])
                    pick = b.op("GatherElements", [idx, b.op("ArgMax", [scores], axis=-1, keepdims=1)], axis=-1)
                pick = b.op("Where", [self.row_sampling, pick, argmax], label="per_row")
            code = b.op("If", [self.sampling], then_branch=b.subgraph("sampled", sampled, [pick]),
                        else_branch=b.subgraph("greedy", greedy, [best]), out_types=(TensorProto.INT64,))
            return b.op("Reshape", [code, b.const([-1, 1])], label="code")

    def _branch_free(self, logits: str, codebook: int) -> str:
        """The capturable form of __call__ (the class docstring): code [batch, 1] int32."""
        b, v = self.b, self.vocab
        with b.scope("sample"):
            logits = b.op("Cast", [logits], to=1, label="fp32")
            argmax = b.op("Cast", [b.op("ArgMax", [logits], axis=-1, keepdims=1, label="greedy_rows")],
                          to=TensorProto.INT32)
            with b.scope("topk"):
                vals, idx = b.op("TopK", [logits, b.const([v])], n_out=2, axis=-1, largest=1, sorted=1)
                row = b.op("Gather", [self.gumbel, b.const([codebook])], axis=1, label="gumbel")  # [B, 1, V]
                g = b.op("GatherElements", [row, idx], axis=-1)
                scaled = b.op("Div", [vals, self.temp])
                rank = b.const(np.arange(v), np.float32)  # each row keeps its own first k
                scaled = b.op("Where", [b.op("Less", [rank, self.k]), scaled, b.const(-np.inf, np.float32)],
                              label="row_k")
            with b.scope("topp"):
                above = b.op("CumSum", [b.op("Softmax", [scaled], axis=-1), b.const(-1)], exclusive=1)
                scaled = b.op("Where", [b.op("Less", [above, self.top_p]), scaled, b.const(-np.inf, np.float32)])
            with b.scope("topk"):
                scores = b.op("Add", [scaled, g])
                # float ids (exact below 2**24): WebGPU's GatherElements takes float data, not int
                pick = b.op("GatherElements", [b.op("Cast", [idx], to=TensorProto.FLOAT),
                                               b.op("ArgMax", [scores], axis=-1, keepdims=1)], axis=-1)
                pick = b.op("Cast", [pick], to=TensorProto.INT32)
            code = b.op("Where", [self.row_sampling, pick, argmax], label="per_row")
            return b.op("Reshape", [code, b.const([-1, 1])], label="code")
