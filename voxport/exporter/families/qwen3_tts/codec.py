"""Qwen3-TTS's 12 Hz codec (speech tokenizer): the presets' configurations and a seeded build.

Minimal stand-in on this branch (the codec graphs are written on another); the four names below are
the interface presets.py uses."""

from __future__ import annotations

# encoder (Mimi) and decoder kwargs of Qwen3TTSTokenizerV2Config; codebook 64 so the tiny talker's
# vocabulary is 64 codes + the 1,024 special ids the released layout reserves
TINY_CODEC = dict(
    encoder_config=dict(num_quantizers=16, hidden_size=64, num_filters=8, codebook_dim=16, codebook_size=64,
                        vector_quantization_hidden_dimension=16, upsample_groups=64, num_hidden_layers=2,
                        intermediate_size=128, num_attention_heads=4, num_key_value_heads=4),
    decoder_config=dict(codebook_size=64, codebook_dim=32, hidden_size=32, latent_dim=32, num_attention_heads=4,
                        num_key_value_heads=4, intermediate_size=64, num_hidden_layers=2, num_quantizers=16,
                        decoder_dim=32),
    encoder_valid_num_quantizers=16,
)
FULL_CODEC: dict = dict(encoder_config=dict(num_quantizers=32, codebook_size=2048), encoder_valid_num_quantizers=16)


def build_codec(kwargs: dict, seed: int):
    import copy

    import torch

    from voxport.exporter.families.qwen3_tts.reference import reference

    with reference() as qt:
        torch.manual_seed(seed)
        model = qt.codec.Qwen3TTSTokenizerV2Model(qt.codec_config.Qwen3TTSTokenizerV2Config(**copy.deepcopy(kwargs)))
    randomize_codec(model)
    return model.eval()


def randomize_codec(model) -> None:
    """Fresh codebooks are all zero (embedding_sum starts at 0): give them random entries."""
    for module in model.modules():
        for name in ("embed_sum", "embedding_sum"):
            t = getattr(module, name, None)
            if t is not None:
                t.data.normal_(0.0, 1.0)
                if hasattr(module, "_embed"):
                    module._embed = None
