"""Each streaming piece against its batch form, no model needed: a stream of chunks (any split into
whole strides) must give the batch output, with the state carried between chunks."""

import pytest
import torch
from torch import nn

from voxport.exporter.streaming import StreamingConv1d, StreamingConvTranspose1d


def _stream(mod, x, chunks):
    state, outs, i = mod.initial_state(x.shape[0]), [], 0
    for n in chunks:
        y, state = mod(x[..., i:i + n], state)
        outs.append(y)
        i += n
    return torch.cat(outs, -1)


@pytest.mark.parametrize("kernel,stride,groups", [(16, 8, 1), (4, 2, 8), (7, 3, 1), (8, 4, 2)])
def test_conv_transpose_stream_equals_batch(kernel, stride, groups):
    torch.manual_seed(kernel * 10 + groups)
    conv = nn.ConvTranspose1d(8, 6 if groups == 1 else 8, kernel, stride, groups=groups)
    x = torch.randn(2, 8, 11)
    full = conv(x)[..., : 11 * stride]  # causal: everything past T * stride is trimmed on the right
    mod = StreamingConvTranspose1d(conv)
    # the MatMul form is taken exactly where it applies
    assert mod.as_matmul == (groups == 1 and kernel == 2 * stride)
    with torch.no_grad():
        for chunks in ([11], [1] * 11, [3, 1, 4, 2, 1]):
            got = _stream(mod, x, chunks)
            assert got.shape == full.shape
            assert torch.allclose(got, full, atol=1e-5, rtol=1e-5), (chunks, (got - full).abs().max())


@pytest.mark.parametrize("kernel,stride,dilation", [(7, 1, 1), (3, 1, 2), (4, 2, 1)])
def test_conv_stream_equals_causal_batch(kernel, stride, dilation):
    torch.manual_seed(kernel)
    conv = nn.Conv1d(5, 4, kernel, stride, dilation=dilation)
    context = (kernel - 1) * dilation + 1 - stride
    x = torch.randn(1, 5, 12)
    full = conv(nn.functional.pad(x, (context, 0)))  # causal batch: zeros on the left
    mod = StreamingConv1d(conv, context)
    with torch.no_grad():
        for chunks in ([12], [stride] * (12 // stride), [2 * stride, stride, 12 - 3 * stride]):
            got = _stream(mod, x, chunks)
            assert torch.allclose(got, full, atol=1e-5, rtol=1e-5), (chunks, (got - full).abs().max())
