"""Marvis / CSM in the original layout (torchtune names, flavours in config.json, no tokenizer or codec
beside the weights): exported with --tokenizer and --codec, parity against transformers, greedy codes
against the original model built from torchtune's llama3_2 (tests/csm_original.py), a fine-tune's
prosody markers kept whole, and every malformed checkpoint refused in one line before any work."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from tests.web_helpers import python_speech
from voxport.exporter.parity_kit import TEXT

MARKERS = ["[HAPPY]", "[EMPHASIS]", "[/EMPHASIS]", "[PAUSE:500ms]"]  # the middle two added as special tokens
MARKED = "Well [HAPPY] that is [EMPHASIS]great[/EMPHASIS] news.[PAUSE:500ms] Really."


@pytest.fixture(scope="module")
def runtime(marvis_dir):
    from voxport.runtime.runtime import Runtime

    return Runtime(marvis_dir)


def test_exports_from_the_bare_layout_and_passes_parity(marvis_dir):
    from voxport.validation.harness import run

    r = run(marvis_dir, frames=50, progress=lambda m: None)
    assert r["ok"], r["failures"]
    assert r["greedy"]["frames_reference"] == 50
    assert set(json.loads((marvis_dir / "manifest.json").read_text())["source"]["parts"]) == {"tokenizer", "codec"}


@pytest.mark.parametrize("text", [TEXT, MARKED])
def test_greedy_codes_equal_the_original_models_for_60_frames(runtime, marvis_bare, text):
    """The export against Sesame's model as torchtune builds it, on the checkpoint's own weights: the
    prompt as Sesame's generator builds it, then 60 frames, each code the argmax."""
    pytest.importorskip("torchtune")
    from tests.csm_original import OriginalCSM, text_segment
    from voxport.exporter.families.csm.flavors import FLAVORS
    from voxport.runtime.prompt import Utterance

    ref = OriginalCSM.from_dir(marvis_bare, {k: dataclasses.asdict(f) for k, f in FLAVORS.items()})
    tok = runtime.prompts.tokenizer
    tokens, mask = text_segment(tok, tok.token_to_id("<|im_start|>"), tok.token_to_id("<|im_end|>"), text, 0, 32)
    ids, _ = runtime.prompts.build([Utterance(text, 0)])
    assert ids[0].tolist() == tokens[:, -1].tolist()  # the chat template builds Sesame's text segment
    expected = ref.generate(tokens, mask, 60).numpy()
    codes, _, _ = python_speech(runtime, text, max_frames=60)
    assert codes.shape == (60, 32)
    assert np.array_equal(codes, expected), f"first differing frame {np.flatnonzero((codes != expected).any(1))[0]}"


def test_prosody_markers_stay_whole_tokens(runtime, cache_root):
    """The artifact's tokenizer.json (rewritten with the audio positions added) gives the source
    tokenizer's ids, each marker one id."""
    from transformers import AutoTokenizer

    from voxport.exporter.presets import materialize
    from voxport.runtime.prompt import Utterance

    source = AutoTokenizer.from_pretrained(materialize("marvis-tiny", cache_root) / "tokenizer")
    ids = runtime.prompts.build([Utterance(MARKED, 0)])[0][0].tolist()
    marker_ids = [source.convert_tokens_to_ids(m) for m in MARKERS]
    assert [i for i in ids if i in marker_ids] == marker_ids
    assert ids[1:-1] == source.encode(f"[0]{MARKED}", add_special_tokens=False)


def _checkpoint(tmp_path, marvis_bare, cache_root, config=None, weights=None, parts=("tokenizer", "codec")):
    """A copy of the tiny original-layout checkpoint with its tokenizer and codec, edited."""
    from safetensors.torch import load_file, save_file

    from voxport.exporter.presets import materialize

    d = tmp_path / "ckpt"
    d.mkdir()
    cfg = json.loads((marvis_bare / "config.json").read_text())
    (d / "config.json").write_text(json.dumps(config(cfg) if config else cfg))
    w = load_file(str(marvis_bare / "model.safetensors"))
    save_file(weights(w) if weights else w, str(d / "model.safetensors"))
    src = materialize("marvis-tiny", cache_root)
    for part in parts:
        shutil.copytree(src / part, d / part)
    return d


def _refused(d, tmp_path, capsys, *extra):
    from voxport.cli import main

    out = tmp_path / "out"
    assert main(["export", str(d), "-o", str(out), *extra]) == 2
    assert not out.exists()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def _drop(key):
    return lambda w: {k: v for k, v in w.items() if k != key}


def _cfg(**kw):
    return lambda c: {k: v for k, v in {**c, **kw}.items() if v is not None}


@pytest.mark.parametrize("config, weights, parts, expect", [
    (None, _drop("decoder.norm.scale"), ("tokenizer", "codec"), "missing weight 'decoder.norm.scale'"),
    (None, lambda w: {**w, "backbone.layers.7.attn.q_proj.weight": w["projection.weight"].clone()}, ("tokenizer", "codec"),
     "unexpected weight 'backbone.layers.7.attn.q_proj.weight'"),
    (None, lambda w: {**w, "text_embeddings.weight": w["text_embeddings.weight"][:10]}, ("tokenizer", "codec"),
     "text_embeddings.weight has shape [10, 64]"),
    (_cfg(decoder_flavor="llama-3B"), None, ("tokenizer", "codec"), "decoder_flavor 'llama-3B' is not a known flavour"),
    (_cfg(backbone_flavor="llama-60M"), None, ("tokenizer", "codec"), "audio_embeddings.weight has shape [65632, 64], backbone llama-60M"),
    (_cfg(audio_num_codebooks=None), None, ("tokenizer", "codec"), "missing 'audio_num_codebooks'"),
    (_cfg(tokenizer="gpt2"), None, ("tokenizer", "codec"), "tokenizer 'gpt2' is not known"),
    (None, None, ("codec",), "pass --tokenizer"),
    (None, None, ("tokenizer",), "pass --codec"),
])
def test_malformed_checkpoints_are_refused_in_one_line(tmp_path, capsys, marvis_bare, cache_root, config, weights,
                                                       parts, expect):
    d = _checkpoint(tmp_path, marvis_bare, cache_root, config, weights, parts)
    assert expect in _refused(d, tmp_path, capsys)


def test_a_token_outside_the_text_embeddings_is_named(tmp_path, capsys, marvis_bare, cache_root):
    """A fine-tune that added markers to its tokenizer but not rows to text_embeddings."""
    d = _checkpoint(tmp_path, marvis_bare, cache_root)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(d / "tokenizer")
    tok.add_tokens(["[WHISPER]"])
    tok.save_pretrained(d / "tokenizer")
    assert "token '[WHISPER]' has id" in _refused(d, tmp_path, capsys)


def test_bad_parts_are_named(tmp_path, capsys, marvis_bare, cache_root):
    d = _checkpoint(tmp_path, marvis_bare, cache_root, parts=())
    assert "--tokenizer /nonexistent/tok: not a directory or a hub id" in _refused(
        d, tmp_path, capsys, "--tokenizer", "/nonexistent/tok", "--codec", str(d))
    from voxport.exporter.presets import materialize

    tok = materialize("marvis-tiny", cache_root) / "tokenizer"
    # the weights' own directory passed as the codec: its config.json is not Mimi's
    assert "not a Mimi codec" in _refused(d, tmp_path, capsys, "--tokenizer", str(tok), "--codec", str(d))


def test_parts_are_refused_for_a_transformers_checkpoint(tmp_path, capsys, cache_root):
    from voxport.exporter.presets import materialize

    codec = materialize("marvis-tiny", cache_root) / "codec"
    materialize("tiny", cache_root)
    capsys.readouterr()  # the presets' progress bars
    assert "--codec is for the original layout" in _refused("tiny", tmp_path, capsys, "--codec", str(codec))


def test_a_bfloat16_checkpoint_loads(tmp_path, marvis_bare, cache_root):
    """Marvis's training saves bf16: the header check reads it (numpy has no bf16) and the model
    loads in fp32 with the original's values."""
    import torch

    from voxport.exporter import checkpoint

    d = _checkpoint(tmp_path, marvis_bare, cache_root, weights=lambda w: {k: v.to(torch.bfloat16) for k, v in w.items()})
    model, _ = checkpoint.load(checkpoint.resolve(str(d), cache_root))
    from safetensors.torch import load_file

    w = load_file(str(d / "model.safetensors"))
    assert torch.equal(model.lm_head.weight, w["codebook0_head.weight"].float())
