"""Streaming with explicit state: one abstraction that every streaming module uses.

Learned from kyutai's moshi (`modules/streaming.py`): a streaming module consumes its input in
chunks and carries what it needs from the past as state. Here the state is not hidden in the
module: `forward(x, state) -> (y, new_state)` takes and returns it as plain tensors, so the whole
stateful network exports to one ONNX graph with the state as graph inputs and outputs, and a
runtime needs no knowledge of the layers: it feeds back what it got, starting from
`initial_state()` (zeros of the declared shapes, which the manifest records).

A container (`StreamingSequential`, `StreamingResidual`) names its children's states by path, so
every state tensor has a readable name (`decoder_seanet.layers.3.tail`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class StateSpec(NamedTuple):
    name: str
    shape: tuple[int, ...]  # without the leading batch axis
    dtype: str = "float32"  # numpy name; zeros of it are the empty state


class StreamingModule(nn.Module):
    """Base: declares its state tensors; all-zero state is the start of a stream."""

    def state_specs(self) -> list[StateSpec]:
        return []

    def initial_state(self, batch: int = 1) -> list[torch.Tensor]:
        return [torch.zeros(batch, *s.shape, dtype=getattr(torch, s.dtype)) for s in self.state_specs()]

    def forward(self, x: torch.Tensor, state: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        raise NotImplementedError


class Stateless(StreamingModule):
    """A pointwise module (activation): no past needed."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x, state):
        return self.module(x), []


class StreamingConv1d(StreamingModule):
    """A causal Conv1d. Batch mode pads `context` zeros on the left (context = effective kernel -
    stride); streaming keeps the last `context` input samples instead. Chunks must be whole strides.

    `as_2d`: export it as a 2-D Conv over [B, C, 1, T] with a [out, in, 1, kernel] weight, the same
    sums (1e-6 relative). onnxruntime's CPU runs 1-D Convs through im2col + GEMM but rewrites 2-D
    ones into its blocked NCHWc kernels (AVX-512: 16 channels a block): the Qwen3-TTS 12 Hz codec's
    streaming decoder (31 Convs, 4.9 GFLOP a frame) measured 40% less per frame at 1 frame a call
    and 12% less at 8 (q4, 2 threads, interleaved).

    `as_matmul`: export it as `kernel` strided slices of the input stacked on the channel axis, times a
    constant [kernel * in, out] weight (one MatMul, groups = 1, no padding). For a wide conv over few
    output steps (Mimi's first SEANet conv, 512 -> 1,024 channels, kernel 7, 2 steps a frame) onnxruntime's
    Conv is slow, and in the wasm build pathologically so: 12-19 ms a call against 0.9 ms as a MatMul
    (whose constant weight onnxruntime prepacks), 1.2 ms natively (voxport/bench/wasm_profile.py). Over
    many steps the Conv is faster (1,920 steps, 64 -> 32 channels: wasm 0.9 vs 1.3 ms)."""

    def __init__(self, conv: nn.Conv1d, context: int, as_2d: bool = False, as_matmul: bool = False):
        super().__init__()
        self.conv, self.context, self.as_2d, self.as_matmul = conv, int(context), as_2d, as_matmul
        self.stride = int(conv.stride[0])
        if as_2d:  # a view of the weight: one initializer in the graph
            self.register_buffer("weight_2d", conv.weight.detach().unsqueeze(2), persistent=False)
        if as_matmul:
            if as_2d or conv.groups != 1 or int(conv.padding[0]) != 0:
                raise ValueError("the MatMul form takes a plain conv: groups 1, no padding, not also as_2d")
            # row j * in + c is tap j of input channel c, the order the slices are stacked in
            self.register_buffer("weight_mm", conv.weight.detach().permute(2, 1, 0).reshape(-1, conv.out_channels),
                                 persistent=False)

    def state_specs(self):
        # a 1x1 conv needs no past: no state, rather than an empty one a runtime would have to feed
        return [StateSpec("context", (self.conv.in_channels, self.context))] if self.context else []

    def forward(self, x, state):
        if not self.context:
            return self._conv(x), []
        buf = torch.cat([state[0], x], dim=-1)
        y = self._conv(buf)
        return y, [buf[..., buf.shape[-1] - self.context:]]

    def _conv(self, x):
        if self.as_matmul:
            return self._matmul(x)
        if not self.as_2d:
            return self.conv(x)
        c = self.conv
        y = nn.functional.conv2d(x.unsqueeze(2), self.weight_2d, c.bias, (1, self.stride), (0, c.padding[0]),
                                 (1, c.dilation[0]), c.groups)
        return y.squeeze(2)

    def _matmul(self, x):
        k, d, s = int(self.conv.kernel_size[0]), int(self.conv.dilation[0]), self.stride
        steps = (x.shape[-1] - (k - 1) * d - 1) // s + 1
        taps = torch.cat([x[..., j * d: j * d + (steps - 1) * s + 1: s] for j in range(k)], dim=1)  # [B, k*in, T]
        y = taps.transpose(1, 2) @ self.weight_mm
        if self.conv.bias is not None:
            y = y + self.conv.bias
        return y.transpose(1, 2)


class StreamingConvTranspose1d(StreamingModule):
    """A causal ConvTranspose1d (all trimming on the right). Each input step writes `kernel` outputs
    of which the last kernel - stride overlap the next step's; streaming emits the settled part and
    carries the overlap tail (without bias, added once when the tail settles).

    When kernel = 2 * stride or kernel = stride, and groups = 1 (Mimi's SEANet upsampling; Qwen3-TTS's
    2x upsampling and decoder blocks) it runs as one MatMul with a
    constant [in, out * kernel] weight plus an overlap-add: onnxruntime's CPU ConvTranspose took 3.8 ms
    of a 12.6 ms marvis-250m codec call for 4 nodes (col2im over 1-2 input steps), and a MatMul is
    what the 4-bit and 8-bit quantizers take."""

    def __init__(self, conv: nn.ConvTranspose1d):
        super().__init__()
        self.conv = conv
        self.stride = int(conv.stride[0])
        self.tail = int(conv.kernel_size[0]) - self.stride
        # kernel = stride (Qwen3-TTS's 2x upsampling, 1,024 wide) takes the MatMul form too: no overlap to add
        self.as_matmul = conv.groups == 1 and self.tail in (0, self.stride) and int(conv.dilation[0]) == 1
        if self.as_matmul:  # a view of the weight [in, out, kernel]: one initializer in the graph
            self.register_buffer("weight_mm", conv.weight.detach().reshape(conv.in_channels, -1), persistent=False)

    def state_specs(self):
        # kernel == stride (Qwen3-TTS's 2x upsampling): steps do not overlap, nothing to carry
        return [StateSpec("tail", (self.conv.out_channels, self.tail))] if self.tail else []

    def forward(self, x, state):
        if not self.tail:
            return (self._steps(x) if self.as_matmul else self.conv(x)), []
        if self.as_matmul:
            return self._matmul(x, state)
        c = self.conv
        y = nn.functional.conv_transpose1d(x, c.weight, None, c.stride, 0, 0, c.groups, c.dilation)
        n = x.shape[-1] * self.stride
        y = torch.cat([y[..., : self.tail] + state[0], y[..., self.tail:]], dim=-1)
        out, tail = y[..., :n], y[..., n:]
        if c.bias is not None:
            out = out + c.bias.view(1, -1, 1)
        return out, [tail]

    def _steps(self, x):
        """kernel = stride: each input step writes its own `stride` outputs."""
        b, t, cout, s = x.shape[0], x.shape[-1], self.conv.out_channels, self.stride
        out = (x.transpose(1, 2) @ self.weight_mm).reshape(b, t, cout, s).permute(0, 2, 1, 3).reshape(b, cout, t * s)
        return out + self.conv.bias.view(1, -1, 1) if self.conv.bias is not None else out

    def _matmul(self, x, state):
        b, t, cout, s = x.shape[0], x.shape[-1], self.conv.out_channels, self.stride
        y = (x.transpose(1, 2) @ self.weight_mm).reshape(b, t, cout, 2, s)  # per input step: 2 halves
        head, over = y[:, :, :, 0], y[:, :, :, 1]  # [B, T, out, stride]
        over = torch.cat([state[0][:, None], over], dim=1)  # the previous step's overlap, the tail first
        out = (head + over[:, :t]).permute(0, 2, 1, 3).reshape(b, cout, t * s)
        if self.conv.bias is not None:
            out = out + self.conv.bias.view(1, -1, 1)
        return out, [over[:, t]]


class StreamingSequential(StreamingModule):
    """Children in order; the state is the concatenation of the children's, named by path."""

    def __init__(self, children: dict[str, StreamingModule]):
        super().__init__()
        self.names = list(children)
        # keyed by name, so exported nodes carry it in their scope ("...decoder_transformer...", which
        # precision policies match on)
        self.mods = nn.ModuleDict({n.replace(".", "_"): m for n, m in children.items()})

    def state_specs(self):
        return [s._replace(name=f"{name}.{s.name}") for name, m in zip(self.names, self.mods.values())
                for s in m.state_specs()]

    def forward(self, x, state):
        new, i = [], 0
        for m in self.mods.values():
            n = len(m.state_specs())
            x, s = m(x, state[i:i + n])
            new += s
            i += n
        return x, new


class StreamingResidual(StreamingModule):
    """y = shortcut(x) + block(x), both streaming."""

    def __init__(self, block: StreamingModule, shortcut: StreamingModule):
        super().__init__()
        self.block, self.shortcut = block, shortcut

    def state_specs(self):
        return ([s._replace(name=f"block.{s.name}") for s in self.block.state_specs()]
                + [s._replace(name=f"shortcut.{s.name}") for s in self.shortcut.state_specs()])

    def forward(self, x, state):
        nb = len(self.block.state_specs())
        y, sb = self.block(x, state[:nb])
        r, ss = self.shortcut(x, state[nb:])
        return r + y, sb + ss


class ChannelsLast(StreamingModule):
    """[B, C, T] <-> [B, T, C] around a module that works on the last axis (a transformer)."""

    def __init__(self, inner: StreamingModule):
        super().__init__()
        self.inner = inner

    def state_specs(self):
        return self.inner.state_specs()

    def forward(self, x, state):
        y, s = self.inner(x.transpose(1, 2), state)
        return y.transpose(1, 2), s


class StreamingConvNeXt(StreamingModule):
    """A ConvNeXt block, input [B, C, T]: x + gamma * pwconv2(act(pwconv1(norm(dwconv(x))))). Only the
    depthwise conv (a StreamingConv1d) looks at the past; the rest is per step. `block` holds the
    usual ConvNeXt names (norm, pwconv1, act, pwconv2, gamma)."""

    def __init__(self, dwconv: StreamingModule, block: nn.Module):
        super().__init__()
        self.dwconv, self.block = dwconv, block

    def state_specs(self):
        return [s._replace(name=f"dwconv.{s.name}") for s in self.dwconv.state_specs()]

    def forward(self, x, state):
        h, new = self.dwconv(x, state)
        b = self.block
        h = b.pwconv2(b.act(b.pwconv1(b.norm(h.transpose(1, 2)))))
        return x + (b.gamma * h).transpose(1, 2), new


class StreamingWindowedTransformer(StreamingModule):
    """Pre-norm transformer layers with sliding-window causal self-attention and RoPE over a stream,
    input [B, T, C]. State per layer: the last `window` keys and values (slot j holds step
    offset - window + j; slots before step 0 are masked), plus the absolute step offset (for RoPE and
    the mask). Fixed-size state keeps the graph's shapes static across calls.

    Layers use the names transformers' Mimi and Qwen3-TTS's codec share: input_layernorm,
    self_attn.{q,k,v,o}_proj (+ optional q_norm/k_norm), self_attn_layer_scale,
    post_attention_layernorm, mlp, mlp_layer_scale. `rotary(x, positions) -> (cos, sin)` and
    `apply_rotary(q, k, cos, sin)` are the model's own."""

    def __init__(self, layers: nn.ModuleList, rotary: nn.Module, apply_rotary, window: int, heads: int,
                 kv_heads: int, head_dim: int):
        super().__init__()
        self.layers, self.rotary, self.apply_rotary = layers, rotary, apply_rotary
        self.window, self.kv_heads, self.head_dim = int(window), int(kv_heads), int(head_dim)
        self.groups = heads // kv_heads

    def state_specs(self):
        kv = [StateSpec(f"layers.{i}.{n}", (self.kv_heads, self.window, self.head_dim))
              for i in range(len(self.layers)) for n in ("key", "value")]
        return [*kv, StateSpec("offset", (), "int64")]

    def forward(self, x, state):
        n = x.shape[1]
        offset = state[-1]  # [B]
        pos = offset[:, None] + torch.arange(n, device=x.device)  # [B, n] absolute steps of the inputs
        key_pos = torch.cat([offset[:, None] - self.window + torch.arange(self.window, device=x.device), pos], 1)
        q_pos, k_pos = pos[:, :, None], key_pos[:, None, :]
        # transformers' sliding window: a query at step p sees steps p - window < s <= p
        allowed = (k_pos >= 0) & (k_pos <= q_pos) & (k_pos > q_pos - self.window)
        mask = torch.where(allowed, 0.0, float("-inf")).to(x.dtype)[:, None]  # [B, 1, n, window + n]
        cos, sin = self.rotary(x, pos)
        new = []
        for i, layer in enumerate(self.layers):
            x, k, v = self._layer(layer, x, state[2 * i], state[2 * i + 1], cos, sin, mask)
            new += [k[:, :, n:], v[:, :, n:]]
        return x, [*new, offset + n]

    def _heads(self, proj, h, norm=None):
        b, n = h.shape[0], h.shape[1]
        y = proj(h).view(b, n, -1, self.head_dim)
        return (norm(y) if norm is not None else y).transpose(1, 2)

    def _layer(self, layer, x, past_k, past_v, cos, sin, mask):
        attn = layer.self_attn
        b, n = x.shape[0], x.shape[1]
        h = layer.input_layernorm(x)
        q = self._heads(attn.q_proj, h, getattr(attn, "q_norm", None))
        k = self._heads(attn.k_proj, h, getattr(attn, "k_norm", None))
        v = self._heads(attn.v_proj, h)
        q, k = self.apply_rotary(q, k, cos, sin)
        k, v = torch.cat([past_k, k], 2), torch.cat([past_v, v], 2)
        kr = k.repeat_interleave(self.groups, 1) if self.groups > 1 else k
        vr = v.repeat_interleave(self.groups, 1) if self.groups > 1 else v
        w = torch.softmax(q @ kr.transpose(2, 3) * attn.scaling + mask, dim=-1)
        o = attn.o_proj((w @ vr).transpose(1, 2).reshape(b, n, -1))
        x = x + layer.self_attn_layer_scale(o)
        x = x + layer.mlp_layer_scale(layer.mlp(layer.post_attention_layernorm(x)))
        return x, k, v


def stream_graph(name: str, module: StreamingModule, codebooks: int, vocab: int, window: int):
    """The GraphSpec of a stateful codec decoder (module: codes [B, K, frames] + state -> audio +
    state): `state_in.NAME` inputs, `state_out.NAME` outputs, checked with arbitrary (random) state
    before and after the transformer's `window`-step KV window wraps (an int64 state is the step
    offset)."""
    from voxport.exporter.spec import GraphSpec, TensorSpec

    states = module.stream.state_specs()

    def make(s):
        gen = torch.Generator().manual_seed(s["batch"] * 1000 + s["frames"] + s["offset"])
        codes = torch.randint(0, vocab, (s["batch"], codebooks, s["frames"]), generator=gen)
        state = [torch.full((s["batch"],), s["offset"], dtype=torch.long) if st.dtype == "int64"
                 else 0.5 * torch.randn(s["batch"], *st.shape, generator=gen) for st in states]
        return [codes, *state]

    return GraphSpec(
        name, module,
        inputs=[TensorSpec("audio_codes", "int64", ("batch", codebooks, "frames")),
                *[TensorSpec(f"state_in.{st.name}", st.dtype, ("batch", *st.shape)) for st in states]],
        outputs=[TensorSpec("audio_values", "float32", ("batch", 1, "samples")),
                 *[TensorSpec(f"state_out.{st.name}", st.dtype, ("batch", *st.shape)) for st in states]],
        make_inputs=make, export_sizes={"batch": 2, "frames": 3, "offset": 4},
        check_sizes=[{"batch": 1, "frames": 1, "offset": 0}, {"batch": 1, "frames": 2, "offset": 7},
                     {"batch": 3, "frames": 7, "offset": 400}, {"batch": 1, "frames": 1, "offset": window - 1}],
    )


def stream_runtime(name: str, module: StreamingModule) -> dict:
    """The manifest's `codec_stream` entry: a runtime starts from zeros of each state and feeds back
    each output."""
    return {"graph": name, "initial": "zeros", "state": [
        {"input": f"state_in.{st.name}", "output": f"state_out.{st.name}", "shape": list(st.shape),
         "dtype": st.dtype} for st in module.stream.state_specs()]}

