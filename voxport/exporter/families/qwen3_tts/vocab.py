"""The released text vocabulary for the full-size presets: Qwen2's byte-level BPE (151,643 tokens and
151,387 merges) plus the specials the released Qwen3-TTS tokenizer adds (ids 151643-151675).

The BPE comes from llama.cpp's models/ggml-vocab-qwen2.gguf, which the llama-cpp-python sdist on
PyPI vendors: fetched once with pip into the cache (a 77 MB download), or read from a llama.cpp
source tree named by $VOXPORT_LLAMA_CPP. With neither, a full preset cannot be built: one line says
how to provide it. The tiny presets never come here (their stand-in tokenizer is trained offline).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from voxport.errors import CheckpointError

# the sdist whose vendor/llama.cpp ships the vocabulary (and the llama-tts the bench compares with)
LLAMA_CPP_PYTHON = "0.3.36"
VOCAB_FILE = "ggml-vocab-qwen2.gguf"
QWEN2_TOKENS = 151643  # the BPE's tokens, before the added ones
_MEMBER = f"llama_cpp_python-{LLAMA_CPP_PYTHON}/vendor/llama.cpp/models/{VOCAB_FILE}"
# Qwen2's pre-tokenizer split (single digits, contractions, letters with one leading non-letter)
_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# the released tokenizer's added tokens from id 151643 on, in id order: (content, special)
ADDED = [(t, True) for t in (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>")] + [
    ("<tool_call>", False), ("</tool_call>", False)] + [(t, True) for t in (
        "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>")] + [
    ("<tool_response>", False), ("</tool_response>", False), ("<think>", False), ("</think>", False)] + [
    (t, True) for t in ("<|audio_start|>", "<|audio_end|>", "<tts_pad>", "<tts_text_bos>", "<tts_text_eod>",
                        "<tts_text_bos_single>", "<|audio_pad|>")]


def vocab_file(cache: Path) -> Path:
    """ggml-vocab-qwen2.gguf: from $VOXPORT_LLAMA_CPP's models/, else the cache, else fetched into it."""
    tree = os.environ.get("VOXPORT_LLAMA_CPP")
    if tree and (Path(tree) / "models" / VOCAB_FILE).is_file():
        return Path(tree) / "models" / VOCAB_FILE
    out = cache / "vocab" / f"llama-cpp-python-{LLAMA_CPP_PYTHON}-{VOCAB_FILE}"
    if out.is_file():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        fetch = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps",
                                f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "-d", tmp], capture_output=True, text=True)
        sdists = list(Path(tmp).glob("*.tar.gz"))
        if fetch.returncode or not sdists:
            why = (fetch.stderr.strip().splitlines() or ["no sdist"])[-1][:200]
            raise CheckpointError(f"the full Qwen3-TTS presets carry the released Qwen2 vocabulary, read from "
                                  f"{VOCAB_FILE} in the llama-cpp-python {LLAMA_CPP_PYTHON} sdist, which pip could "
                                  f"not fetch ({why}); set VOXPORT_LLAMA_CPP to a llama.cpp source tree instead")
        out.parent.mkdir(parents=True, exist_ok=True)
        part = out.with_name(out.name + ".partial")
        with tarfile.open(sdists[0]) as tar:
            part.write_bytes(tar.extractfile(_MEMBER).read())
        part.replace(out)
    return out


def tokenizer_from_gguf(path: Path):
    """The released tokenizer: the GGUF's BPE (its NORMAL tokens and merges) with Qwen2's NFC
    normaliser and split, and the released added tokens at their ids."""
    import gguf
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    reader = gguf.GGUFReader(str(path))
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    merges = [tuple(m.split(" ", 1)) for m in reader.fields["tokenizer.ggml.merges"].contents()]
    vocab = {t: i for i, (t, kind) in enumerate(zip(tokens, types)) if kind == gguf.TokenType.NORMAL}
    if len(vocab) != len(tokens) - sum(1 for k in types if k != gguf.TokenType.NORMAL) or max(vocab.values()) + 1 != len(vocab):
        raise CheckpointError(f"{path}: its normal tokens are not ids 0..n-1; not Qwen2's vocabulary")
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    for content, special in ADDED:  # in id order: each lands at the next id
        token = AddedToken(content, special=special, normalized=False)
        tok.add_special_tokens([token]) if special else tok.add_tokens([token])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")


def bpe_size(path: Path) -> int:
    """The number of BPE tokens (added tokens not counted) of a checkpoint's tokenizer files; 0 if none."""
    import json

    if (path / "tokenizer.json").is_file():
        return len(json.loads((path / "tokenizer.json").read_text())["model"]["vocab"])
    if (path / "vocab.json").is_file():
        return len(json.loads((path / "vocab.json").read_text()))
    return 0
