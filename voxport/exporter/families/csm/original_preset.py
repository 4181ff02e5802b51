"""Random-weight checkpoints in the original CSM layout (presets.OriginalPreset): what Marvis's
training writes, plus the tokenizer and Mimi it ships without."""

from __future__ import annotations

import json
from pathlib import Path

from voxport.exporter.families.csm.flavors import FLAVORS
from voxport.exporter.families.csm.original import CODEC_DIR, SEGMENT_MARKERS, TOKENIZER_DIR, Layout

# SmolLM2's first ids: <|endoftext|> 0, <|im_start|> 1, <|im_end|> 2 (Llama-3's markers for "llama3")
_STAND_IN_SPECIALS = {"smollm2": ["<|endoftext|>", *SEGMENT_MARKERS["smollm2"]],
                      "llama3": list(SEGMENT_MARKERS["llama3"])}


def build_tokenizer(preset):
    from tokenizers import AddedToken

    from voxport.exporter.families.csm.presets import build_tokenizer as stand_in

    specials = _STAND_IN_SPECIALS[preset.tokenizer]
    tok = stand_in(preset.tokenizer_vocab, specials, {"bos_token": specials[0], "eos_token": specials[0]})
    if preset.added_tokens:
        tok.add_tokens([AddedToken(t, normalized=False) for t in preset.added_tokens])
    if preset.added_special_tokens:
        tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in preset.added_special_tokens],
                       special_tokens=True)
    return tok


def random_weights(layout: Layout, seed: int) -> dict:
    """Norm scales 1, everything else N(0, 0.02) (transformers' Llama init), from one seeded generator."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in layout.shapes().items():
        out[key] = torch.ones(shape) if key.endswith(".scale") else torch.randn(shape, generator=gen) * 0.02
    return out


def build(preset, out: Path) -> None:
    from safetensors.torch import save_file
    from transformers import MimiConfig, MimiModel

    import torch

    from voxport.exporter.families.csm.presets import randomize_codec

    tok = build_tokenizer(preset)
    text_vocab = preset.text_vocab_size or len(tok)
    config = {"backbone_flavor": preset.backbone_flavor, "decoder_flavor": preset.decoder_flavor,
              "text_vocab_size": text_vocab, "audio_vocab_size": preset.audio_vocab_size,
              "audio_num_codebooks": preset.num_codebooks, "tokenizer": preset.tokenizer}
    layout = Layout(FLAVORS[preset.backbone_flavor], FLAVORS[preset.decoder_flavor], text_vocab,
                    preset.audio_vocab_size, preset.num_codebooks, preset.tokenizer)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    save_file(random_weights(layout, preset.seed), str(out / "model.safetensors"))
    tok.save_pretrained(out / TOKENIZER_DIR)
    torch.manual_seed(preset.seed)
    codec = MimiModel(MimiConfig(num_quantizers=preset.num_codebooks, **preset.codec))
    randomize_codec(codec)
    codec.save_pretrained(out / CODEC_DIR)
