"""Qwen3-TTS's 12 Hz codec (Qwen3TTSTokenizerV2Model, the "speech tokenizer"): presets, the graphs
(batch decoder, streaming decoder, encoder) and the runtime facts of its streaming decoder.

The decoder: 16 codes per frame -> split RVQ (1 semantic + 15 acoustic codebooks) -> causal conv ->
8-layer transformer with a 72-frame sliding window -> 2 x (transposed conv + ConvNeXt) -> SEANet-like
blocks with SnakeBeta -> 1920 samples per frame at 24 kHz. The encoder is a Mimi encoder with 32
quantizers, of which the first 16 are used.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from voxport.exporter.families.qwen3_tts.codec_stream import CodecDecodeStream
from voxport.exporter.families.qwen3_tts.reference import reference
from voxport.exporter.shared_graphs import audio_encoder_graph
from voxport.exporter.spec import GraphSpec, TensorSpec
from voxport.exporter.streaming import stream_graph, stream_runtime

F32, I64 = "float32", "int64"

# The released Qwen/Qwen3-TTS-Tokenizer-12Hz dimensions (its config.json as published: the decoder
# transformer is 512 wide, 16 heads of 64, MLP 1024; the latent stream 1024, the upsampling 1536).
FULL_CODEC = {
    "decoder_config": {
        "codebook_size": 2048, "hidden_size": 512, "latent_dim": 1024, "codebook_dim": 512,
        "num_hidden_layers": 8, "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 64,
        "sliding_window": 72, "intermediate_size": 1024, "num_quantizers": 16,
        "upsample_rates": (8, 5, 4, 3), "upsampling_ratios": (2, 2), "decoder_dim": 1536,
        "max_position_embeddings": 8000, "rope_theta": 10000,
    },
    "encoder_config": {  # Mimi at 12.5 Hz, 32 quantizers
        "sampling_rate": 24000, "frame_rate": 12.5, "hidden_size": 512, "num_filters": 64,
        "upsampling_ratios": [8, 6, 5, 4], "num_hidden_layers": 8, "num_attention_heads": 8,
        "num_key_value_heads": 8, "head_dim": 64, "intermediate_size": 2048, "sliding_window": 250,
        "codebook_size": 2048, "codebook_dim": 256, "vector_quantization_hidden_dimension": 256,
        "num_quantizers": 32, "num_semantic_quantizers": 1, "use_causal_conv": True,
    },
    "encoder_valid_num_quantizers": 16,
    "input_sample_rate": 24000, "output_sample_rate": 24000,
    "decode_upsample_rate": 1920, "encode_downsample_rate": 1920,
}

# The same structure (16 quantizers split 1 + 15, 72-frame window, 2x2 ConvNeXt upsampling, SnakeBeta
# blocks, 1920 samples per frame) with small widths, 2 transformer layers, and 2 up/downsampling
# blocks of larger rates instead of 4: export time follows the node count, not the widths (the
# three graphs on 2 shared cores: 14 + 18 + 22 s with 4 blocks, 12 + 15 + 14 s with 2, measured).
TINY_CODEC = {
    **FULL_CODEC,
    "decoder_config": {
        **FULL_CODEC["decoder_config"],
        "codebook_size": 64, "hidden_size": 32, "latent_dim": 32, "codebook_dim": 16,
        "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 16,
        "intermediate_size": 64, "upsample_rates": (40, 12), "decoder_dim": 32,
    },
    "encoder_config": {
        **FULL_CODEC["encoder_config"],
        "hidden_size": 32, "num_filters": 4, "upsampling_ratios": [40, 24], "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 64,
        "codebook_size": 64, "codebook_dim": 16, "vector_quantization_hidden_dimension": 16,
    },
}


def build_codec(kwargs: dict, seed: int = 0) -> nn.Module:
    """A randomly initialised Qwen3TTSTokenizerV2Model of the given config, in eval mode."""
    torch.manual_seed(seed)
    with reference() as qt:
        config = qt.codec_config.Qwen3TTSTokenizerV2Config(**kwargs)
        return qt.codec.Qwen3TTSTokenizerV2Model(config).eval()


def randomize_codec(model: nn.Module, seed: int = 0) -> nn.Module:
    """Make a random codec produce audio and varied codes, with every part contributing. Default
    init leaves every codebook's embedding sum at zero (decoder: exact silence; encoder: every code
    0), its 0.02-std weights shrink the tiny decoder's output to 2e-8, and layer scales of 0.01 and
    ConvNeXt gammas of 1e-6 all but remove the transformer and the ConvNeXt blocks (measured). Random
    codebooks and cluster usages, scales and gammas near 1, and PyTorch's own conv/linear init in the
    decoder give the tiny decoder audio peaking near 0.4."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            if name.endswith(("embedding_sum", "embed_sum")):  # Qwen's decoder / Mimi's encoder codebooks
                t.copy_(torch.randn(t.shape, generator=gen))
            elif name.endswith(("cluster_usage", "layer_scale.scale", ".gamma")):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
        torch.manual_seed(seed)
        for m in model.decoder.modules():
            if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d, nn.Linear)):
                m.reset_parameters()
    return model


class CodecDecode(nn.Module):
    """codes [B, 16, frames] -> audio [B, 1, frames * 1920]: the decoder's plain forward on the whole
    input, which is exactly causal (the streaming graph equals it).

    The reference's `decode` runs `chunked_decode` instead: 300-frame chunks, each decoded again with
    only 25 frames of left context. Up to 300 frames that is this forward (2e-7, float noise); past
    frame 300 it approximates it, as the 72-frame attention window and the convs reach further back
    than 25 frames: 2.4e-3 relative on the tiny random codec over 400 frames (measured)."""

    def __init__(self, model):
        super().__init__()
        self.decoder = model.decoder
        self.max_code = model.config.decoder_config.codebook_size - 1

    def forward(self, audio_codes):
        # out-of-range codes (the LM's pad/eos ids) are not codebook entries: clamped, as the reference
        # clamps negatives (an out-of-range Gather is an error in onnxruntime)
        return self.decoder(torch.clamp(audio_codes, 0, self.max_code))


class CodecEncode(nn.Module):
    """audio [B, 1, N] at 24 kHz -> codes [B, 16, ceil(N / 1920)]. The encoder holds 32 quantizers;
    residual quantization makes the first 16 codes independent of the rest, so only 16 run."""

    def __init__(self, model):
        super().__init__()
        self.encoder = model.encoder
        self.n_q = model.config.encoder_valid_num_quantizers

    def forward(self, input_values):
        return self.encoder.encode(input_values, num_quantizers=self.n_q, return_dict=True).audio_codes


@contextlib.contextmanager
def static_decoder_shapes(decoder):
    """Export-only patch, restored on exit. Each causal conv computes its right padding with math.ceil
    on a float of the length; traced, every conv nests that into the symbolic length, and sympy's
    simplification of the growing expressions made the tiny decoder's export take 40 s (137 s
    profiled; 0.15 M parameters, 800 nodes). The same padding in integer arithmetic, (-(L - k + p)) mod
    stride, is the constant 0 for the decoder's stride-1 convs."""
    convs = [m for m in decoder.modules() if type(m).__name__.endswith("CausalConvNet")]
    for conv in convs:
        k, s, p = conv.kernel_size, conv.stride, conv.padding
        conv._get_extra_padding_for_conv1d = (lambda x: 0) if s == 1 else \
            (lambda x, k=k, s=s, p=p: (-(x.shape[-1] - k + p)) % s)
    try:
        yield
    finally:
        for conv in convs:
            del conv._get_extra_padding_for_conv1d


def _frame_size(model) -> int:
    return int(model.config.decode_upsample_rate)


def _sample_rate(model) -> int:
    return int(model.config.output_sample_rate)


def _random_codes(model, s: dict) -> torch.Tensor:
    cfg = model.config.decoder_config
    gen = torch.Generator().manual_seed(s["batch"] * 1000 + s["frames"] + s.get("offset", 0))
    return torch.randint(0, cfg.codebook_size, (s["batch"], cfg.num_quantizers, s["frames"]), generator=gen)


def decoder_graph(model) -> GraphSpec:
    k = model.config.decoder_config.num_quantizers
    return GraphSpec(
        "codec_decoder", CodecDecode(model),
        inputs=[TensorSpec("audio_codes", I64, ("batch", k, "frames"))],
        outputs=[TensorSpec("audio_values", F32, ("batch", 1, "samples"))],
        make_inputs=lambda s: [_random_codes(model, s)], export_sizes={"batch": 2, "frames": 3},
        # 80 frames: past the 72-frame window
        check_sizes=[{"batch": 1, "frames": 1}, {"batch": 1, "frames": 9}, {"batch": 3, "frames": 4},
                     {"batch": 1, "frames": 80}],
        export_context=lambda: static_decoder_shapes(model.decoder),
    )


def decoder_stream_graph(model) -> GraphSpec:
    cfg = model.config.decoder_config
    return stream_graph("codec_decoder_stream", CodecDecodeStream(model), cfg.num_quantizers, cfg.codebook_size,
                        cfg.sliding_window)


def encoder_graph(model) -> GraphSpec:
    return audio_encoder_graph("codec_encoder", CodecEncode(model), model.config.encoder_valid_num_quantizers,
                               _frame_size(model), _sample_rate(model), model.encoder)


def codec_graphs(model) -> list[GraphSpec]:
    return [decoder_graph(model), decoder_stream_graph(model), encoder_graph(model)]


def codec_stream_runtime(model) -> dict:
    """The manifest's entry for the streaming decoder, with the sample rate and samples per frame."""
    return {**stream_runtime("codec_decoder_stream", CodecDecodeStream(model)),
            "sample_rate": _sample_rate(model), "frame_size": _frame_size(model)}
