"""Orpheus presets with random weights, written in canopylabs/orpheus-3b-0.1-ft's layout: a plain Llama
checkpoint (config.json, model.safetensors, tokenizer.json with the <custom_token_N> ids) plus SNAC in a
`snac/` subfolder (hubertsiuzdak/snac_24khz's config.json and pytorch_model.bin).

orpheus-3b has the released dimensions (Llama 3.2 3B: 28 layers, 3,072 wide, 24/8 heads of 128, FFN
8,192, vocabulary 156,940, tied embeddings, llama3 RoPE scaling) and the released SNAC; orpheus-tiny
keeps the layout rules with a small text vocabulary and 64-code SNAC levels. Both ship a stand-in
byte-level BPE tokenizer whose special and custom tokens sit at the layout's ids (the graphs never
read the text ids' meaning; the prompt's control ids come from the tokenizer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from voxport.exporter.families.orpheus import codec
from voxport.exporter.families.orpheus.layout import AUDIO_OFFSET, POSITIONS

_CORPUS = [
    "tara: The quick brown fox jumps over the lazy dog.",
    "leah: Hello there! How are you doing today? I'm fine, thanks. <laugh>",
    "leo: Speech synthesis turns written text into spoken audio, one frame at a time. <sigh>",
    "zac: Well, that's, uh, interesting... <chuckle> <gasp> <cough> <groan> <yawn> <sniffle>",
]
_LLAMA3_ROPE = dict(rope_type="llama3", factor=32.0, high_freq_factor=4.0, low_freq_factor=1.0,
                    original_max_position_embeddings=8192)


@dataclass(frozen=True)
class OrpheusPreset:
    name: str
    llama: dict
    snac: dict
    text_base: int  # ids before Llama's special tokens (128,000 released)
    specials: int  # Llama's special-token block (256 released: <|begin_of_text|> .. reserved)
    vocab_size: int | None  # None: exactly text + specials + 10 controls + 7 x codebook
    seed: int = 0
    # the weights' dtype on disk: the released 3B ships bfloat16 (6.6 GB; fp32 would be 13.2 GB of disk and,
    # while the random model is made, of memory); the loader reads either as fp32
    dtype: str = "float32"


_FULL = dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
             num_key_value_heads=8, head_dim=128, max_position_embeddings=131072, rope_theta=500000.0,
             rope_scaling=_LLAMA3_ROPE, rms_norm_eps=1e-5, tie_word_embeddings=True)
# head_dim a multiple of 16 (GroupQueryAttention, exporter/kernels.py); llama3 scaling kept, with a shorter original length
_TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, max_position_embeddings=4096, rope_theta=500000.0,
             rope_scaling={**_LLAMA3_ROPE, "original_max_position_embeddings": 256}, rms_norm_eps=1e-5,
             tie_word_embeddings=True)

PRESETS: dict[str, OrpheusPreset] = {
    "orpheus-tiny": OrpheusPreset("orpheus-tiny", _TINY, codec.TINY_SNAC, text_base=384, specials=16, vocab_size=None),
    # head size 24, which GroupQueryAttention refuses: the LM graphs are traced instead of written
    "orpheus-tiny-hd24": OrpheusPreset("orpheus-tiny-hd24", {**_TINY, "head_dim": 24}, codec.TINY_SNAC, text_base=384,
                                       specials=16, vocab_size=None),
    "orpheus-3b": OrpheusPreset("orpheus-3b", _FULL, codec.FULL_SNAC, text_base=128000, specials=256,
                                vocab_size=156940, dtype="bfloat16"),
}


def build_tokenizer(text_base: int, specials: int, custom: int):
    """A byte-level BPE (trained on a few lines) padded to `text_base` ids, then Llama 3's special block
    (<|begin_of_text|> first, <|eot_id|> 9th), then <custom_token_0..custom-1>; it prepends
    <|begin_of_text|> as Llama 3's does."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=min(text_base, 384), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    for i in range(len(vocab), text_base):  # unreachable fillers: the released ids stay where they are
        vocab[f"<|filler_{i}|>"] = i
    names = ["<|begin_of_text|>", "<|end_of_text|>"] + [f"<|reserved_special_token_{i}|>" for i in range(specials - 2)]
    names[9] = "<|eot_id|>"
    names += [f"<custom_token_{i}>" for i in range(custom)]
    data["added_tokens"] = [{"id": text_base + i, "content": n, "single_word": False, "lstrip": False, "rstrip": False,
                             "normalized": False, "special": True} for i, n in enumerate(names)]
    bos = {"id": "<|begin_of_text|>", "type_id": 0}
    data["post_processor"] = {"type": "TemplateProcessing",
                              "single": [{"SpecialToken": bos}, {"Sequence": {"id": "A", "type_id": 0}}],
                              "pair": [{"SpecialToken": bos}, {"Sequence": {"id": "A", "type_id": 0}},
                                       {"Sequence": {"id": "B", "type_id": 1}}],
                              "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [text_base],
                                                                       "tokens": ["<|begin_of_text|>"]}}}
    out = Tokenizer.from_str(json.dumps(data))
    assert out.token_to_id("<custom_token_0>") == text_base + specials, "added tokens were renumbered"
    return out


def build_preset(preset: OrpheusPreset, out: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    size = preset.snac["codebook_size"]
    custom_base = preset.text_base + preset.specials
    vocab = preset.vocab_size or custom_base + AUDIO_OFFSET + POSITIONS * size
    tokenizer = build_tokenizer(preset.text_base, preset.specials, vocab - custom_base)
    config = LlamaConfig(vocab_size=vocab, bos_token_id=preset.text_base, eos_token_id=preset.text_base + 9,
                         attention_bias=False, mlp_bias=False, hidden_act="silu", **preset.llama)
    torch.manual_seed(preset.seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, preset.dtype))
    try:
        lm = LlamaForCausalLM(config).eval()
    finally:
        torch.set_default_dtype(default)
    out.mkdir(parents=True, exist_ok=True)
    config.architectures = ["LlamaForCausalLM"]
    config.save_pretrained(out)
    state = {k: v.detach().contiguous() for k, v in lm.state_dict().items()
             if not (config.tie_word_embeddings and k == "lm_head.weight")}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    del lm, state
    tokenizer.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}))
    codec.save(codec.randomize(codec.build_snac(preset.snac, preset.seed), preset.seed), preset.snac,
               out / codec.SNAC_DIR)
