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
    stride); streaming keeps the last `context` input samples instead. Chunks must be whole strides."""

    def __init__(self, conv: nn.Conv1d, context: int):
        super().__init__()
        self.conv, self.context = conv, int(context)
        self.stride = int(conv.stride[0])

    def state_specs(self):
        return [StateSpec("context", (self.conv.in_channels, self.context))]

    def forward(self, x, state):
        buf = torch.cat([state[0], x], dim=-1)
        y = self.conv(buf)
        return y, [buf[..., buf.shape[-1] - self.context:]]


class StreamingConvTranspose1d(StreamingModule):
    """A causal ConvTranspose1d (all trimming on the right). Each input step writes `kernel` outputs
    of which the last kernel - stride overlap the next step's; streaming emits the settled part and
    carries the overlap tail (without bias, added once when the tail settles).

    When kernel = 2 * stride and groups = 1 (Mimi's SEANet upsampling) it runs as one MatMul with a
    constant [in, out * kernel] weight plus an overlap-add: onnxruntime's CPU ConvTranspose took 3.8 ms
    of a 12.6 ms marvis-250m codec call for 4 nodes (col2im over 1-2 input steps), and a MatMul is
    what the 4-bit and 8-bit quantizers take."""

    def __init__(self, conv: nn.ConvTranspose1d):
        super().__init__()
        self.conv = conv
        self.stride = int(conv.stride[0])
        self.tail = int(conv.kernel_size[0]) - self.stride
        self.as_matmul = conv.groups == 1 and self.tail == self.stride and int(conv.dilation[0]) == 1
        if self.as_matmul:  # a view of the weight [in, out, kernel]: one initializer in the graph
            self.register_buffer("weight_mm", conv.weight.detach().reshape(conv.in_channels, -1), persistent=False)

    def state_specs(self):
        return [StateSpec("tail", (self.conv.out_channels, self.tail))]

    def forward(self, x, state):
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
