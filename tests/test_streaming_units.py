"""Each streaming piece against its batch form, no model needed: a stream of chunks (any split into
whole strides) must give the batch output, with the state carried between chunks."""

import pytest
import torch
from torch import nn

from voxport.exporter.streaming import (StreamingConv1d, StreamingConvNeXt, StreamingConvTranspose1d,
                                       StreamingWindowedTransformer)


def _stream(mod, x, chunks):
    state, outs, i = mod.initial_state(x.shape[0]), [], 0
    for n in chunks:
        y, state = mod(x[..., i:i + n], state)
        outs.append(y)
        i += n
    return torch.cat(outs, -1)


@pytest.mark.parametrize("kernel,stride,groups", [(16, 8, 1), (4, 2, 8), (7, 3, 1), (8, 4, 2), (2, 2, 1)])
def test_conv_transpose_stream_equals_batch(kernel, stride, groups):
    torch.manual_seed(kernel * 10 + groups)
    conv = nn.ConvTranspose1d(8, 6 if groups == 1 else 8, kernel, stride, groups=groups)
    x = torch.randn(2, 8, 11)
    full = conv(x)[..., : 11 * stride]  # causal: everything past T * stride is trimmed on the right
    mod = StreamingConvTranspose1d(conv)
    # the MatMul form is taken exactly where it applies; kernel == stride carries no state
    assert mod.as_matmul == (groups == 1 and kernel in (stride, 2 * stride))
    assert len(mod.state_specs()) == (kernel > stride)
    with torch.no_grad():
        for chunks in ([11], [1] * 11, [3, 1, 4, 2, 1]):
            got = _stream(mod, x, chunks)
            assert got.shape == full.shape
            assert torch.allclose(got, full, atol=1e-5, rtol=1e-5), (chunks, (got - full).abs().max())


@pytest.mark.parametrize("form", ["conv", "as_2d", "as_matmul"])
@pytest.mark.parametrize("kernel,stride,dilation,groups", [(7, 1, 1, 1), (3, 1, 2, 1), (4, 2, 1, 1), (1, 1, 1, 1),
                                                           (7, 1, 3, 4), (5, 3, 2, 1)])
def test_conv_stream_equals_causal_batch(kernel, stride, dilation, groups, form):
    if form == "as_matmul" and groups > 1:
        pytest.skip("the MatMul form takes groups = 1 (refused: test_conv_matmul_form_refuses_groups)")
    torch.manual_seed(kernel)
    conv = nn.Conv1d(4, 8, kernel, stride, dilation=dilation, groups=groups)
    context = (kernel - 1) * dilation + 1 - stride
    x = torch.randn(1, 4, 12)
    full = conv(nn.functional.pad(x, (context, 0)))  # causal batch: zeros on the left
    mod = StreamingConv1d(conv, context, as_2d=form == "as_2d", as_matmul=form == "as_matmul")
    with torch.no_grad():
        for chunks in ([12], [stride] * (12 // stride), [2 * stride, stride, 12 - 3 * stride]):
            got = _stream(mod, x, chunks)
            assert torch.allclose(got, full, atol=1e-5, rtol=1e-5), (chunks, (got - full).abs().max())


def test_conv_matmul_form_refuses_groups():
    with pytest.raises(ValueError, match="groups 1"):
        StreamingConv1d(nn.Conv1d(4, 8, 3, groups=2), 2, as_matmul=True)


class _ConvNeXt(nn.Module):
    """A causal ConvNeXt block in batch form: the reference the streaming block must reproduce."""

    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, 7, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pwconv1, self.act, self.pwconv2 = nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.randn(dim))

    def forward(self, x):
        h = self.dwconv(nn.functional.pad(x, (6, 0))).transpose(1, 2)
        return x + (self.gamma * self.pwconv2(self.act(self.pwconv1(self.norm(h))))).transpose(1, 2)


def test_convnext_stream_equals_batch():
    torch.manual_seed(0)
    block = _ConvNeXt(6)
    x = torch.randn(2, 6, 13)
    mod = StreamingConvNeXt(StreamingConv1d(block.dwconv, 6), block)
    with torch.no_grad():
        full = block(x)
        for chunks in ([13], [1] * 13, [4, 1, 6, 2]):
            got = _stream(mod, x, chunks)
            assert torch.allclose(got, full, atol=1e-5, rtol=1e-5), (chunks, (got - full).abs().max())


def test_windowed_transformer_stream_equals_batch():
    """transformers' Mimi transformer (same layer names as Qwen3-TTS's codec) over 23 steps with a
    5-step sliding window: the stream wraps the window several times."""
    from transformers import MimiConfig
    from transformers.models.mimi.modeling_mimi import MimiTransformerModel, apply_rotary_pos_emb

    torch.manual_seed(0)
    cfg = MimiConfig(hidden_size=16, num_attention_heads=4, num_key_value_heads=2, head_dim=4, intermediate_size=32,
                     num_hidden_layers=2, sliding_window=5, layer_scale_initial_scale=1.0)
    cfg._attn_implementation = "eager"
    t = MimiTransformerModel(cfg).eval()
    x = torch.randn(2, 23, 16)
    mod = StreamingWindowedTransformer(t.layers, t.rotary_emb, apply_rotary_pos_emb, 5, 4, 2, 4)
    with torch.no_grad():
        full = t(hidden_states=x).last_hidden_state
        for chunks in ([23], [1] * 23, [3, 1, 7, 2, 6, 4]):
            state, outs, i = mod.initial_state(2), [], 0
            for n in chunks:
                y, state = mod(x[:, i:i + n], state)
                outs.append(y)
                i += n
            got = torch.cat(outs, 1)
            assert torch.allclose(got, full, atol=1e-5, rtol=1e-5), (chunks, (got - full).abs().max())
            assert state[-1].tolist() == [23, 23]  # the offset counts every step
