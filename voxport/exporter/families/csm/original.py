"""The original CSM layout (Sesame's csm-1b ckpt, marvis-tts-100m-v0.2, every checkpoint Marvis's
training writes): a config.json naming torchtune flavours and a safetensors file with torchtune names,
mapped onto transformers' CsmForConditionalGeneration.

    config.json        {backbone_flavor, decoder_flavor, text_vocab_size, audio_vocab_size,
                        audio_num_codebooks[, tokenizer]}
    *.safetensors      backbone.layers.N.attn.q_proj.weight, ..., text_embeddings.weight, audio_head
    tokenizer.json     here or in tokenizer/ (`voxport export --tokenizer` puts one there)
    codec/             kyutai's Mimi as transformers saves it (`voxport export --codec` puts one there)

Neither the tokenizer nor the codec ships with the weights (Sesame pairs Llama-3.2's tokenizer,
Marvis SmolLM2's, both kyutai's Mimi). The prompt is the one both generators build: each turn is
`<start>[speaker]text<end>` (the tokenizer's post-processor adds the markers), its audio frames, then
an all-zero eos frame; that is transformers' CSM chat template with `<|AUDIO|>` / `<|audio_eos|>`
positions, which this module adds to the tokenizer when it lacks them (their text embedding is never
read: the frame's codebook embeddings replace it)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from voxport.errors import CheckpointError
from voxport.exporter.families.csm.flavors import FLAVORS, NORM_EPS, Flavor, rope_parameters

CONFIG_KEYS = ("backbone_flavor", "decoder_flavor", "text_vocab_size", "audio_vocab_size", "audio_num_codebooks")
TOKENIZER_DIR, CODEC_DIR = "tokenizer", "codec"
AUDIO_TOKEN, AUDIO_EOS_TOKEN = "<|AUDIO|>", "<|audio_eos|>"
# the text segment markers each generator's tokenizer post-processor wraps a turn in
SEGMENT_MARKERS = {"llama3": ("<|begin_of_text|>", "<|end_of_text|>"), "smollm2": ("<|im_start|>", "<|im_end|>")}
SMOLLM2_VOCAB = 49152  # a config without "tokenizer" and this text vocabulary is Marvis's (SmolLM2)
# buffers a model saved after setup_caches() carries: generation state, not weights
RUNTIME_BUFFERS = ("kv_cache.k_cache", "kv_cache.v_cache", "kv_cache.cache_pos", "backbone_causal_mask",
                   "decoder_causal_mask")
CODEC_EOS = 0  # Sesame's generator ends on an all-zero frame and closes each audio turn with one


def is_original(config: dict) -> bool:
    return "model_type" not in config and ("backbone_flavor" in config or "decoder_flavor" in config)


@dataclass(frozen=True)
class Layout:
    backbone: Flavor
    decoder: Flavor
    text_vocab: int
    audio_vocab: int
    codebooks: int
    tokenizer_kind: str | None  # a SEGMENT_MARKERS key, or None: the tokenizer's own bos / eos

    def shapes(self) -> dict[str, tuple]:
        """Every weight of the original model and its shape."""
        out = {}
        for prefix, f in (("backbone", self.backbone), ("decoder", self.decoder)):
            e, q, kv = f.embed_dim, f.heads * f.head_dim, f.kv_heads * f.head_dim
            for i in range(f.layers):
                p = f"{prefix}.layers.{i}"
                out.update({f"{p}.attn.q_proj.weight": (q, e), f"{p}.attn.k_proj.weight": (kv, e),
                            f"{p}.attn.v_proj.weight": (kv, e), f"{p}.attn.output_proj.weight": (e, q),
                            f"{p}.mlp.w1.weight": (f.intermediate, e), f"{p}.mlp.w3.weight": (f.intermediate, e),
                            f"{p}.mlp.w2.weight": (e, f.intermediate), f"{p}.sa_norm.scale": (e,),
                            f"{p}.mlp_norm.scale": (e,)})
            out[f"{prefix}.norm.scale"] = (e,)
        b, d = self.backbone.embed_dim, self.decoder.embed_dim
        out.update({"text_embeddings.weight": (self.text_vocab, b),
                    "audio_embeddings.weight": (self.audio_vocab * self.codebooks, b),
                    "projection.weight": (d, b), "codebook0_head.weight": (self.audio_vocab, b),
                    "audio_head": (self.codebooks - 1, d, self.audio_vocab)})
        return out


def read_layout(path: Path, cfg: dict) -> Layout:
    where = path / "config.json"
    for key in CONFIG_KEYS:
        if key not in cfg:
            raise CheckpointError(f"{where}: missing {key!r} (the original CSM config names "
                                  f"{', '.join(CONFIG_KEYS)})")
    for key in CONFIG_KEYS[:2]:
        if cfg[key] not in FLAVORS:
            raise CheckpointError(f"{where}: {key} {cfg[key]!r} is not a known flavour "
                                  f"({', '.join(FLAVORS)})")
    for key in CONFIG_KEYS[2:]:
        if not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < (2 if key == "audio_num_codebooks" else 1):
            raise CheckpointError(f"{where}: {key} must be a positive integer, got {cfg[key]!r}")
    kind = cfg.get("tokenizer")
    if kind is not None and kind not in SEGMENT_MARKERS:
        raise CheckpointError(f"{where}: tokenizer {kind!r} is not known ({', '.join(SEGMENT_MARKERS)})")
    if kind is None and cfg["text_vocab_size"] == SMOLLM2_VOCAB:
        kind = "smollm2"
    return Layout(FLAVORS[cfg["backbone_flavor"]], FLAVORS[cfg["decoder_flavor"]], cfg["text_vocab_size"],
                  cfg["audio_vocab_size"], cfg["audio_num_codebooks"], kind)


def tokenizer_dir(path: Path) -> Path | None:
    """tokenizer/ (what --tokenizer supplies) wins over files beside the weights."""
    for d in (path / TOKENIZER_DIR, path):
        if (d / "tokenizer.json").is_file():
            return d
    return None


def check_dir(path: Path, cfg: dict) -> None:
    """Config, tokenizer and codec present, every weight named and shaped as the flavours say: read
    from the safetensors headers, nothing loaded."""
    layout = read_layout(path, cfg)
    tok = tokenizer_dir(path)
    if tok is None:
        raise CheckpointError(f"{path}: no tokenizer (tokenizer.json here or in {TOKENIZER_DIR}/); the original "
                              "layout ships without one: pass --tokenizer DIR|HUB_ID (Marvis: "
                              "HuggingFaceTB/SmolLM2-135M, Sesame CSM: meta-llama/Llama-3.2-1B)")
    codec = path / CODEC_DIR
    if not (codec / "config.json").is_file() or not list(codec.glob("*.safetensors")):
        raise CheckpointError(f"{path}: no Mimi codec ({CODEC_DIR}/ with config.json and safetensors); the "
                              "original layout ships without one: pass --codec DIR|HUB_ID (kyutai/mimi)")
    _check_codec(codec, layout)
    check_weights(path, layout)
    text_tokenizer(tok, layout)


def _check_codec(codec: Path, layout: Layout) -> None:
    try:
        ccfg = json.loads((codec / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{codec / 'config.json'}: not valid JSON ({e})") from None
    if ccfg.get("model_type") != "mimi":
        raise CheckpointError(f"{codec / 'config.json'}: model_type {ccfg.get('model_type')!r}, not a Mimi codec "
                              "(pass --codec kyutai/mimi or a directory saved by transformers' MimiModel)")
    if ccfg.get("num_quantizers", 32) < layout.codebooks:
        raise CheckpointError(f"{codec / 'config.json'}: num_quantizers {ccfg.get('num_quantizers')} < the "
                              f"model's {layout.codebooks} codebooks")


def _weight_shapes(path: Path) -> dict[str, tuple[tuple, str]]:
    from safetensors import safe_open

    out = {}
    for f in sorted(path.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():
                out[key] = (tuple(st.get_slice(key).get_shape()), f.name)
    return out


def check_weights(path: Path, layout: Layout) -> None:
    expected, found = layout.shapes(), _weight_shapes(path)
    for key, (shape, file) in found.items():
        if key not in expected:
            if key.endswith(RUNTIME_BUFFERS):
                continue
            raise CheckpointError(f"{path / file}: unexpected weight {key!r}, not in the original CSM layout "
                                  f"({len(expected)} weights for {_flavours(layout)})")
        if shape != expected[key]:
            raise CheckpointError(f"{path / file}: {key} has shape {list(shape)}, {_flavours(layout)} with the "
                                  f"config's vocabularies expects {list(expected[key])}")
    missing = [k for k in expected if k not in found]
    if missing:
        raise CheckpointError(f"{path}: missing weight {missing[0]!r}"
                              + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
                              + f" ({_flavours(layout)})")


def _flavours(layout: Layout) -> str:
    names = {v: k for k, v in FLAVORS.items()}
    return f"backbone {names[layout.backbone]}, decoder {names[layout.decoder]}"


def text_tokenizer(tok_dir: Path, layout: Layout):
    """The checkpoint's tokenizer as the artifact ships it: its added tokens kept (a fine-tune's prosody
    markers), bos / eos the turn markers, the audio positions added when missing. -> (tokenizer, text
    vocabulary the embedding table must cover)."""
    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(tok_dir)
    except Exception as e:  # a broken tokenizer.json / config: one line naming the directory
        raise CheckpointError(f"{tok_dir}: could not load the tokenizer ({str(e).splitlines()[0][:160]})") from None
    if layout.tokenizer_kind:
        bos, eos = SEGMENT_MARKERS[layout.tokenizer_kind]
    else:
        bos, eos = tok.bos_token, tok.eos_token
    vocab = tok.get_vocab()
    for role, marker in (("start", bos), ("end", eos)):
        if marker is None or marker not in vocab:
            raise CheckpointError(f"{tok_dir}: the tokenizer has no turn {role} token {marker!r} "
                                  f"({layout.tokenizer_kind or 'its own bos/eos'})")
    tok.bos_token, tok.eos_token = bos, eos
    beyond = sorted((i, t) for t, i in vocab.items() if i >= layout.text_vocab and t not in (AUDIO_TOKEN, AUDIO_EOS_TOKEN))
    if beyond:
        i, t = beyond[0]
        raise CheckpointError(f"{tok_dir}: token {t!r} has id {i}, outside the checkpoint's text embeddings "
                              f"(text_vocab_size {layout.text_vocab})")
    missing = [t for t in (AUDIO_TOKEN, AUDIO_EOS_TOKEN) if t not in vocab]
    if missing:
        tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in missing], special_tokens=True)
    if tok.pad_token is None:  # transformers' processor pads batches (one prompt here: never used)
        tok.pad_token = AUDIO_TOKEN
    return tok, max(layout.text_vocab, len(tok))


def build_config(layout: Layout, tok, text_rows: int, codec_config):
    from transformers import CsmConfig, CsmDepthDecoderConfig

    b, d, k, v = layout.backbone, layout.decoder, layout.codebooks, layout.audio_vocab

    def llama(f: Flavor, positions: int) -> dict:
        return dict(hidden_size=f.embed_dim, num_hidden_layers=f.layers, num_attention_heads=f.heads,
                    num_key_value_heads=f.kv_heads, head_dim=f.head_dim, intermediate_size=f.intermediate,
                    max_position_embeddings=positions, rms_norm_eps=NORM_EPS, hidden_act="silu",
                    attention_bias=False, mlp_bias=False, rope_parameters=rope_parameters(positions))

    # the depth decoder sees positions 0..K-1 (its KV cache holds K); the backbone its flavour's length
    depth = CsmDepthDecoderConfig(num_codebooks=k, backbone_hidden_size=b.embed_dim, vocab_size=v,
                                  **llama(d, k + 1))
    ids = {t: tok.convert_tokens_to_ids(t) for t in (tok.bos_token, tok.eos_token, AUDIO_TOKEN, AUDIO_EOS_TOKEN)}
    return CsmConfig(num_codebooks=k, vocab_size=v, text_vocab_size=text_rows, **llama(b, b.max_seq_len),
                     bos_token_id=ids[tok.bos_token], eos_token_id=ids[tok.eos_token],
                     pad_token_id=ids[AUDIO_TOKEN], audio_token_id=ids[AUDIO_TOKEN],
                     audio_eos_token_id=ids[AUDIO_EOS_TOKEN], codebook_eos_token_id=CODEC_EOS,
                     codebook_pad_token_id=v - 1, tie_codebooks_embeddings=True,
                     depth_decoder_config=depth.to_dict(), codec_config=codec_config.to_dict())


def _rope_rows(heads: int, head_dim: int):
    """torchtune rotates interleaved pairs (2i, 2i+1) of each head, transformers the halves (i, i + D/2):
    row i of a head in transformers' order is row 2i (first half) or 2(i - D/2) + 1 of torchtune's."""
    import torch

    half = torch.cat([torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)])
    return (torch.arange(heads)[:, None] * head_dim + half[None, :]).reshape(-1)


_RENAMES = (("attn.output_proj.", "self_attn.o_proj."), ("attn.", "self_attn."), ("mlp.w1.", "mlp.gate_proj."),
            ("mlp.w3.", "mlp.up_proj."), ("mlp.w2.", "mlp.down_proj."),
            ("sa_norm.scale", "input_layernorm.weight"), ("mlp_norm.scale", "post_attention_layernorm.weight"),
            ("norm.scale", "norm.weight"))
_TOP = {"text_embeddings.weight": "embed_text_tokens.weight",
        "audio_embeddings.weight": "backbone_model.embed_tokens.embed_audio_tokens.weight",
        "codebook0_head.weight": "lm_head.weight", "audio_head": "depth_decoder.codebooks_head.weight",
        "projection.weight": "depth_decoder.model.inputs_embeds_projector.weight"}


def to_transformers(weights: dict, layout: Layout, text_rows: int) -> dict:
    """Original names and q/k row order -> CsmForConditionalGeneration's state dict (codec excluded)."""
    import torch

    out = {}
    stacks = {"backbone": ("backbone_model", layout.backbone), "decoder": ("depth_decoder.model", layout.decoder)}
    for key, w in weights.items():
        if key.endswith(RUNTIME_BUFFERS):
            continue
        w = w.to(torch.float32)
        if key in _TOP:
            out[_TOP[key]] = w
            continue
        prefix, rest = key.split(".", 1)
        target, flavor = stacks[prefix]
        for old, new in _RENAMES:
            if old in rest:
                rest = rest.replace(old, new, 1)
                break
        if rest.endswith(("q_proj.weight", "k_proj.weight")):
            heads = flavor.heads if "q_proj" in rest else flavor.kv_heads
            w = w[_rope_rows(heads, flavor.head_dim)]
        out[f"{target}.{rest}"] = w
    text = out["embed_text_tokens.weight"]
    if text_rows > text.shape[0]:  # the audio positions added to the tokenizer: rows never read
        out["embed_text_tokens.weight"] = torch.cat([text, text.new_zeros(text_rows - text.shape[0], text.shape[1])])
    # the depth decoder embeds codes with the backbone's audio table (tied in transformers' model)
    out["depth_decoder.model.embed_tokens.weight"] = out["backbone_model.embed_tokens.embed_audio_tokens.weight"]
    return out


def load(path: Path, device: str = "cpu"):
    import torch
    from safetensors.torch import load_file
    from transformers import CsmForConditionalGeneration, MimiModel

    layout = read_layout(path, json.loads((path / "config.json").read_text()))
    tok, text_rows = text_tokenizer(tokenizer_dir(path), layout)
    codec = MimiModel.from_pretrained(path / CODEC_DIR, dtype=torch.float32)
    model = CsmForConditionalGeneration(build_config(layout, tok, text_rows, codec.config))
    weights = {}
    for f in sorted(path.glob("*.safetensors")):
        weights.update(load_file(str(f)))
    state = to_transformers(weights, layout, text_rows)
    state.update({f"codec_model.{k}": v for k, v in codec.state_dict().items()})
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def write_runtime_files(src: Path, dst: Path, names: tuple[str, str, str], template: str) -> None:
    """tokenizer.json from the tokenizer as loaded (added tokens included, audio positions added), the
    CSM chat template (the generators' prompt, not the text model's chat), and the turn markers."""
    tokenizer_file, template_file, special_file = names
    layout = read_layout(src, json.loads((src / "config.json").read_text()))
    tok, _ = text_tokenizer(tokenizer_dir(src), layout)
    tok.backend_tokenizer.save(str(dst / tokenizer_file))
    (dst / template_file).write_text(template)
    (dst / special_file).write_text(json.dumps({"bos_token": tok.bos_token, "eos_token": tok.eos_token}, indent=2))


def processor(path: Path, template: str):
    """transformers' CsmProcessor over the same tokenizer and template, for the parity cases."""
    from transformers import CsmProcessor, EncodecFeatureExtractor

    layout = read_layout(path, json.loads((path / "config.json").read_text()))
    tok, _ = text_tokenizer(tokenizer_dir(path), layout)
    fe = EncodecFeatureExtractor.from_pretrained(path / CODEC_DIR) if (path / CODEC_DIR / "preprocessor_config.json").is_file() \
        else EncodecFeatureExtractor(feature_size=1, sampling_rate=24000, padding_value=0.0)
    return CsmProcessor(feature_extractor=fe, tokenizer=tok, chat_template=template)
