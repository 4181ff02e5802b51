"""CSM / Marvis presets with random weights: `tiny` for tests, full-size dimensions for benchmarks,
written in the layout of sesame/csm-1b (save_pretrained + tokenizer files + chat template)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# The chat template shipped with sesame/csm-1b (speaker turns, audio placeholder after the text).
CSM_CHAT_TEMPLATE = """
{%- for message in messages %}
    {%- if not message['role'] is string or not message['role'].isdigit() %}
        {{- raise_exception("The role must be an integer or a stringified integer (e.g. '0') designating the speaker id") }}
    {%- endif %}
    {%- set content = message['content'] %}
    {%- if content is not iterable or content is string %}
        {{- raise_exception("The content must be a list") }}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {{- bos_token }}
    {{- '[' + message['role'] + ']' }}
    {{- message['content'][0]['text'] }}
    {{- eos_token }}
    {%- if message['content']|length > 1 %}
        {{- '<|AUDIO|><|audio_eos|>' }}
    {%- endif %}
{%- endfor %}
"""

SPECIAL_TOKENS = ["<|begin_of_text|>", "<|end_of_text|>", "<|AUDIO|>", "<|audio_eos|>"]

# A fixed, embedded corpus: the preset tokenizer is trained on it, so it is identical everywhere.
_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello there! How are you doing today? I'm fine, thanks.",
    "Speech synthesis turns written text into spoken audio, one frame at a time.",
    "Numbers like 1, 2, 3, 42 and 2026 appear in text; so do dates: 22/11/2026.",
    "She sells sea shells by the sea shore, and the shells she sells are surely seashells.",
    "A voice prompt is a short utterance with its transcript, used to clone a speaker.",
]


@dataclass(frozen=True)
class Preset:
    name: str
    backbone: dict
    depth: dict
    codec: dict
    num_codebooks: int = 32
    text_vocab_size: int | None = None  # None: the size of the preset tokenizer
    tokenizer_vocab: int = 512
    seed: int = 0
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class OriginalPreset:
    """A preset written in the original CSM layout (original.py): flavour names, torchtune weight names,
    the tokenizer in tokenizer/ and Mimi in codec/ (where --tokenizer and --codec put theirs), so
    exporting it runs the original-layout loader."""

    name: str
    backbone_flavor: str
    decoder_flavor: str
    codec: dict
    text_vocab_size: int | None = None  # None: the size of the stand-in tokenizer
    tokenizer: str = "smollm2"  # whose turn markers the stand-in tokenizer carries
    added_tokens: tuple = ()  # a fine-tune's markers, added to the tokenizer whole
    added_special_tokens: tuple = ()  # the same, added as special tokens (some fine-tunes do)
    tokenizer_vocab: int = 512
    num_codebooks: int = 32
    audio_vocab_size: int = 2051
    seed: int = 0


_TINY_CODEC = dict(
    hidden_size=64, num_filters=8, codebook_dim=16, vector_quantization_hidden_dimension=16,
    upsample_groups=64, num_hidden_layers=2, intermediate_size=128, num_attention_heads=4,
    num_key_value_heads=4, layer_scale_initial_scale=1.0, sliding_window=250,
)
_FULL_CODEC: dict = {}  # MimiConfig() defaults are the real Mimi

PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        backbone=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      head_dim=16, intermediate_size=128, max_position_embeddings=512),
        # head_dim a multiple of 16: onnxruntime's GroupQueryAttention (the written frame graph) takes it
        depth=dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                   head_dim=16, intermediate_size=96),
        codec=_TINY_CODEC,
    ),
    # head size 24, a multiple of 8 but not of 16: GroupQueryAttention refuses it (exporter/kernels.py),
    # so the frame graph is traced; tests prove such a checkpoint exports, runs and passes parity
    "tiny-hd24": Preset(
        name="tiny-hd24",
        backbone=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      head_dim=24, intermediate_size=128, max_position_embeddings=512),
        depth=dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                   head_dim=24, intermediate_size=96),
        codec=_TINY_CODEC,
    ),
    "marvis-250m": Preset(
        name="marvis-250m",
        backbone=dict(hidden_size=1536, num_hidden_layers=6, num_attention_heads=12, num_key_value_heads=3,
                      head_dim=128, intermediate_size=8192, max_position_embeddings=2048),
        depth=dict(hidden_size=1024, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
                   head_dim=128, intermediate_size=4096),
        codec=_FULL_CODEC,
        text_vocab_size=49152,
    ),
    # Marvis 100M v0.2 (original layout only): llama-100M backbone. Its decoder flavour is not
    # published; llama-100M is the likelier one (README: the Hub's ~0.4B parameters fit it, not llama-60M)
    "marvis-100m": OriginalPreset(name="marvis-100m", backbone_flavor="llama-100M", decoder_flavor="llama-100M",
                                  codec=_FULL_CODEC, text_vocab_size=49152),
    # the original layout at test size, its tokenizer carrying prosody markers as a fine-tune's would
    "marvis-tiny": OriginalPreset(name="marvis-tiny", backbone_flavor="voxport-tiny",
                                  decoder_flavor="voxport-tiny-decoder", codec=_TINY_CODEC,
                                  added_tokens=("[HAPPY]", "[PAUSE:500ms]"),
                                  added_special_tokens=("[EMPHASIS]", "[/EMPHASIS]")),
    "csm-1b": Preset(
        name="csm-1b",
        backbone=dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                      head_dim=64, intermediate_size=8192, max_position_embeddings=2048),
        depth=dict(hidden_size=1024, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
                   head_dim=128, intermediate_size=8192),
        codec=_FULL_CODEC,
        text_vocab_size=128256,
    ),
}


def build_tokenizer(vocab_size: int, specials: list[str] = SPECIAL_TOKENS, roles: dict | None = None):
    """A byte-level BPE trained on the embedded corpus, wrapped as a transformers fast tokenizer.
    `roles`: bos_token / eos_token / pad_token among `specials` (default: the first three, in order)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    roles = roles or {"bos_token": specials[0], "eos_token": specials[1], "pad_token": specials[2]}
    return PreTrainedTokenizerFast(tokenizer_object=tok, **roles)


def build_config(preset: Preset, tokenizer):
    from transformers import CsmConfig, CsmDepthDecoderConfig, MimiConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    n = preset.num_codebooks
    codec = MimiConfig(num_quantizers=n, **preset.codec)
    depth = CsmDepthDecoderConfig(num_codebooks=n, backbone_hidden_size=preset.backbone["hidden_size"],
                                  max_position_embeddings=n + 1, **preset.depth)
    return CsmConfig(
        num_codebooks=n, text_vocab_size=preset.text_vocab_size or len(tokenizer), **preset.backbone,
        bos_token_id=ids["<|begin_of_text|>"], eos_token_id=ids["<|end_of_text|>"],
        pad_token_id=ids["<|AUDIO|>"], audio_token_id=ids["<|AUDIO|>"],
        audio_eos_token_id=ids["<|audio_eos|>"],
        depth_decoder_config=depth.to_dict(), codec_config=codec.to_dict(),
    )


def randomize_codec(codec) -> None:
    """A freshly initialised Mimi decodes everything to zero (embed_sum starts at 0): randomise it."""
    for module in codec.modules():
        if type(module).__name__ == "MimiEuclideanCodebook":
            module.embed_sum.data.normal_(0.0, 1.0)
            module._embed = None


def build_model(preset: Preset, tokenizer):
    import torch
    from transformers import CsmForConditionalGeneration

    torch.manual_seed(preset.seed)
    config = build_config(preset, tokenizer)
    model = CsmForConditionalGeneration(config)
    randomize_codec(model.codec_model)
    return model.eval()


def save_checkpoint(model, tokenizer, out: Path) -> None:
    """Write the layout of sesame/csm-1b: config, safetensors, tokenizer, processor, chat template."""
    from transformers import CsmProcessor, EncodecFeatureExtractor

    model.save_pretrained(out)
    fe = EncodecFeatureExtractor(feature_size=1, sampling_rate=24000, padding_value=0.0)
    CsmProcessor(feature_extractor=fe, tokenizer=tokenizer, chat_template=CSM_CHAT_TEMPLATE).save_pretrained(out)


def build_preset(preset: Preset | OriginalPreset, out: Path) -> None:
    if isinstance(preset, OriginalPreset):
        from voxport.exporter.families.csm.original_preset import build

        return build(preset, out)
    tokenizer = build_tokenizer(preset.tokenizer_vocab)
    save_checkpoint(build_model(preset, tokenizer), tokenizer, out)
