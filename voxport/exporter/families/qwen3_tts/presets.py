"""Qwen3-TTS presets with random weights, materialised in the released checkpoint layout
(Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice): config.json + model.safetensors, generation_config.json,
tokenizer files, speech_tokenizer/ (the 12 Hz codec). `load` reads that layout, a preset's or a
user's, through the reference package.

Special codec ids are the released ones (codec vocabulary 3072 = 2048 codes + 1024 specials; the
talker's sampling suppresses [V-1024, V) except eos). The tiny presets keep the same layout scaled
down: 64 codes + 1024 specials, every special id shifted by 2048 - 64.
"""

from __future__ import annotations

import copy
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path

from voxport.errors import CheckpointError
from voxport.exporter.families.qwen3_tts.codec import FULL_CODEC, TINY_CODEC, build_codec, randomize_codec

# released talker special ids (codec vocabulary 3072)
_CODEC_IDS = dict(codec_pad_id=2148, codec_bos_id=2149, codec_eos_token_id=2150, codec_think_id=2154,
                  codec_nothink_id=2155, codec_think_bos_id=2156, codec_think_eos_id=2157)
_LANGUAGES = {"english": 2050, "german": 2053, "spanish": 2054, "chinese": 2055, "beijing_dialect": 2074,
              "sichuan_dialect": 2062}
_SPEAKERS = {"vivian": 3065, "serena": 3066, "ryan": 3061, "aiden": 2861, "uncle_fu": 3010,
             "dylan": 2878, "eric": 2875}
_DIALECT = {"dylan": "beijing_dialect", "eric": "sichuan_dialect"}
# released text-side ids (Qwen2 vocabulary 151936)
_TEXT_IDS = dict(im_start_token_id=151644, im_end_token_id=151645, tts_pad_token_id=151671,
                 tts_bos_token_id=151672, tts_eos_token_id=151673)
# their names in the released tokenizer (llama.cpp's Qwen3-TTS runner finds them by name)
TEXT_SPECIALS = {"<|im_start|>": "im_start_token_id", "<|im_end|>": "im_end_token_id",
                 "<tts_pad>": "tts_pad_token_id", "<tts_text_bos>": "tts_bos_token_id",
                 "<tts_text_eod>": "tts_eos_token_id"}
GENERATION_CONFIG = {"do_sample": True, "repetition_penalty": 1.05, "temperature": 0.9, "top_p": 1.0,
                     "top_k": 50, "subtalker_dosample": True, "subtalker_temperature": 0.9,
                     "subtalker_top_k": 50, "subtalker_top_p": 1.0, "max_new_tokens": 8192}

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello there! How are you doing today? I'm fine, thanks.",
    "Speech synthesis turns written text into spoken audio, one frame at a time.",
    "Speak slowly and warmly, like a storyteller by the fire.",
    "A voice prompt is a short utterance with its transcript, used to clone a speaker.",
    "assistant user system",
]


@dataclass(frozen=True)
class QwenPreset:
    name: str
    model_type: str  # tts_model_type: "custom_voice" | "base"
    talker: dict
    predictor: dict
    codec: dict
    codebook_size: int = 2048
    text_hidden_size: int = 2048
    text_vocab_size: int | None = 151936  # None: the size of the preset tokenizer (tiny)
    speaker_encoder: dict = field(default_factory=dict)
    model_size: str = "0b6"
    seed: int = 0
    # the files' version, in the cache key (older caches are rebuilt): 2 writes the released
    # `architectures`, 3 the released special-token names and, full size, the released vocabulary
    layout: int = 3


def _talker_full(hidden: int, ffn: int) -> dict:
    return dict(hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=28, num_attention_heads=16,
                num_key_value_heads=8, head_dim=128, max_position_embeddings=32768, rope_theta=1000000,
                rope_scaling=dict(rope_type="default", mrope_section=[24, 20, 20], interleaved=True))


_PREDICTOR_FULL = dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=5, num_attention_heads=16,
                       num_key_value_heads=8, head_dim=128, max_position_embeddings=65536, rope_theta=1000000)
# head_dim a multiple of 16 (onnxruntime's GroupQueryAttention, exporter/kernels.py); mrope sections sum to
# head_dim / 2
_TINY_TALKER = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=16, max_position_embeddings=4096, rope_theta=10000,
                    rope_scaling=dict(rope_type="default", mrope_section=[4, 2, 2], interleaved=True))
_TINY_PREDICTOR = dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, head_dim=16, max_position_embeddings=64)
# head size 24, a multiple of 8 but not of 16: the kernels refuse it, the frame graph is traced
_TINY_TALKER_HD24 = {**_TINY_TALKER, "head_dim": 24,
                     "rope_scaling": dict(rope_type="default", mrope_section=[6, 3, 3], interleaved=True)}
_TINY_PREDICTOR_HD24 = {**_TINY_PREDICTOR, "head_dim": 24}
_TINY_SPEAKER_ENCODER = dict(enc_dim=64, enc_channels=[32, 32, 32, 32, 96], enc_attention_channels=16,
                             enc_res2net_scale=4, enc_se_channels=16)

PRESETS: dict[str, QwenPreset] = {
    "qwen3-tts-tiny": QwenPreset("qwen3-tts-tiny", "custom_voice", _TINY_TALKER, _TINY_PREDICTOR, TINY_CODEC,
                                 codebook_size=64, text_hidden_size=32, text_vocab_size=None),
    "qwen3-tts-tiny-base": QwenPreset("qwen3-tts-tiny-base", "base", _TINY_TALKER, _TINY_PREDICTOR, TINY_CODEC,
                                      codebook_size=64, text_hidden_size=32, text_vocab_size=None,
                                      speaker_encoder=_TINY_SPEAKER_ENCODER),
    "qwen3-tts-tiny-hd24": QwenPreset("qwen3-tts-tiny-hd24", "custom_voice", _TINY_TALKER_HD24, _TINY_PREDICTOR_HD24,
                                      TINY_CODEC, codebook_size=64, text_hidden_size=32, text_vocab_size=None),
    "qwen3-tts-0.6b": QwenPreset("qwen3-tts-0.6b", "custom_voice", _talker_full(1024, 3072), _PREDICTOR_FULL,
                                 FULL_CODEC),
    # Base: what llama.cpp's llama-tts runs (a CustomVoice checkpoint has no speaker encoder for it)
    "qwen3-tts-0.6b-base": QwenPreset("qwen3-tts-0.6b-base", "base", _talker_full(1024, 3072), _PREDICTOR_FULL,
                                      FULL_CODEC, speaker_encoder=dict(enc_dim=1024)),
    "qwen3-tts-1.7b": QwenPreset("qwen3-tts-1.7b", "custom_voice", _talker_full(2048, 6144), _PREDICTOR_FULL,
                                 FULL_CODEC, model_size="1b7"),
}


def build_tokenizer(vocab_size: int = 512):
    """A byte-level BPE trained on the embedded corpus, with the prompt format's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(TEXT_SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<tts_pad>")


def _shift(ids: dict, by: int) -> dict:
    return {k: v - by for k, v in ids.items()}


def build_config(preset: QwenPreset, tokenizer=None):
    from voxport.exporter.families.qwen3_tts.reference import reference

    preset = copy.deepcopy(preset)  # the configs write into the dicts they are given (rope_scaling)
    by = 2048 - preset.codebook_size  # tiny: specials keep their released offsets past the codes
    text_ids = ({attr: tokenizer.convert_tokens_to_ids(t) for t, attr in TEXT_SPECIALS.items()}
                if preset.text_vocab_size is None else _TEXT_IDS)
    groups = 16
    predictor = dict(vocab_size=preset.codebook_size, num_code_groups=groups, **preset.predictor)
    speakers = _shift(_SPEAKERS, by) if preset.model_type == "custom_voice" else {}
    talker = dict(code_predictor_config=predictor, vocab_size=preset.codebook_size + 1024, num_code_groups=groups,
                  text_hidden_size=preset.text_hidden_size,
                  text_vocab_size=preset.text_vocab_size or len(tokenizer), **preset.talker,
                  **_shift(_CODEC_IDS, by), codec_language_id=_shift(_LANGUAGES, by), spk_id=speakers,
                  spk_is_dialect={s: _DIALECT.get(s, False) for s in speakers})
    with reference() as qt:
        return qt.models.Qwen3TTSConfig(
            talker_config=talker, speaker_encoder_config=preset.speaker_encoder, tokenizer_type="qwen3_tts_tokenizer_12hz",
            tts_model_size=preset.model_size, tts_model_type=preset.model_type, **text_ids)


def build_model(preset: QwenPreset, tokenizer=None):
    import torch

    from voxport.exporter.families.qwen3_tts.reference import reference

    config = build_config(preset, tokenizer)
    with reference() as qt:
        torch.manual_seed(preset.seed)
        model = qt.models.Qwen3TTSForConditionalGeneration(config).eval()
    return model


def save_checkpoint(model, codec, tokenizer, out: Path) -> None:
    """The released layout: weights + config, generation config, tokenizer, speech_tokenizer/."""
    from safetensors.torch import save_file
    from transformers import EncodecFeatureExtractor

    # not save_pretrained: transformers 5.23 reads the reference's `_tied_weights_keys` (a list, the
    # 4.x form) as a dict and fails; nothing is tied (tie_word_embeddings false), so the file is the same
    out.mkdir(parents=True, exist_ok=True)
    config = model.config.to_dict()
    # the speaker encoder's config takes only its own fields (released files carry just those)
    config["speaker_encoder_config"] = {k: v for k, v in config["speaker_encoder_config"].items()
                                        if k in inspect.signature(type(model.config.speaker_encoder_config)).parameters}
    # transformers 5 writes `rope_parameters`; the reference (and the released files) read `rope_scaling`
    for sub in (config["talker_config"], config["talker_config"]["code_predictor_config"]):
        rope = {k: v for k, v in sub.pop("rope_parameters", {}).items() if k != "rope_theta"}
        sub["rope_scaling"] = rope if set(rope) - {"rope_type"} else None
    # as the released config.json: llama.cpp's converter (convert_hf_to_gguf.py) picks its model class by it
    config["architectures"] = [type(model).__name__]
    (out / "config.json").write_text(json.dumps(config, indent=2))
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    tokenizer.save_pretrained(out)
    (out / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG, indent=2))
    codec.save_pretrained(out / "speech_tokenizer")
    EncodecFeatureExtractor(feature_size=1, sampling_rate=24000, padding_value=0.0).save_pretrained(
        out / "speech_tokenizer")


def build_preset(preset: QwenPreset, out: Path) -> None:
    # tiny: a stand-in tokenizer trained offline (its size is the text vocabulary); full size: the
    # released Qwen2 vocabulary, fetched once (vocab.py), so a converter that checks the tokenizer
    # (llama.cpp's) takes the files, and text tokenises as the released model's does
    if preset.text_vocab_size is None:
        tokenizer = build_tokenizer()
    else:
        from voxport.exporter.families.qwen3_tts import vocab
        from voxport.fsutil import cache_root

        tokenizer = vocab.tokenizer_from_gguf(vocab.vocab_file(cache_root()))
        ids = {attr: tokenizer.convert_tokens_to_ids(t) for t, attr in TEXT_SPECIALS.items()}
        assert ids == _TEXT_IDS, ids  # config.json's ids are the released ones
    codec = randomize_codec(build_codec(preset.codec, preset.seed), preset.seed)
    save_checkpoint(build_model(preset, tokenizer), codec, tokenizer, out)


def load(path: Path):
    """A checkpoint directory in the released layout -> Qwen3TTSForConditionalGeneration, fp32, eval,
    with its speech tokenizer (model.speech_tokenizer.model) and generation config loaded."""
    import torch

    from voxport.exporter.families.qwen3_tts.reference import reference

    path = Path(path)
    for need in ("config.json", "generation_config.json", "speech_tokenizer/config.json"):
        if not (path / need).is_file():
            raise CheckpointError(f"{path}: not a Qwen3-TTS checkpoint directory ({need} is missing)")
    with reference() as qt:
        model = qt.models.Qwen3TTSForConditionalGeneration.from_pretrained(
            str(path), local_files_only=True, dtype=torch.float32)
    model.speech_tokenizer.model.float().eval()
    return model.float().eval()
