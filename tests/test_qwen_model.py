"""Qwen3-TTS presets and checkpoints: the released layout round trip, one-line errors for what is not a
checkpoint, and the runtime's voice-clone prompt recipe against the reference's (no export needed:
the recipe is manifest data read by voxport/runtime/prompt.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

TEXT = "Hello there! The quick brown fox jumps over the lazy dog, one frame at a time."


@pytest.fixture(scope="module")
def tiny(cache_root):
    from voxport.exporter.families.qwen3_tts import presets
    from voxport.exporter.presets import materialize

    path = materialize("qwen3-tts-tiny", cache_root)
    return path, presets.load(path)


def test_presets_materialise_in_the_released_layout_and_load(tiny, cache_root):
    import torch

    from voxport.exporter.families.qwen3_tts import presets
    from voxport.exporter.presets import materialize

    path, model = tiny
    for f in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
              "speech_tokenizer/config.json", "speech_tokenizer/model.safetensors",
              "speech_tokenizer/preprocessor_config.json"):
        assert (path / f).is_file(), f
    assert materialize("qwen3-tts-tiny", cache_root) == path  # cached
    for name in ("qwen3-tts-tiny", "qwen3-tts-tiny-base"):  # the released files' class name, which converters read
        config = json.loads((materialize(name, cache_root) / "config.json").read_text())
        assert config["architectures"] == ["Qwen3TTSForConditionalGeneration"], name
    fresh = presets.build_model(presets.PRESETS["qwen3-tts-tiny"], presets.build_tokenizer())
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in fresh.state_dict().items())
    base = presets.load(materialize("qwen3-tts-tiny-base", cache_root))
    assert base.speaker_encoder is not None and base.config.tts_model_type == "base"
    assert base.speech_tokenizer.model is not None


def test_not_a_checkpoint_is_one_line(tiny, tmp_path):
    import shutil

    from voxport.errors import CheckpointError
    from voxport.exporter.checkpoint import validate_dir

    shutil.copytree(tiny[0], tmp_path / "ckpt")
    (tmp_path / "ckpt" / "generation_config.json").unlink()
    with pytest.raises(CheckpointError, match="missing generation_config.json; a Qwen3-TTS checkpoint has it"):
        validate_dir(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "speech_tokenizer" / "model.safetensors").unlink()
    (tmp_path / "ckpt" / "generation_config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="speech_tokenizer: no \\*.safetensors"):
        validate_dir(tmp_path / "ckpt")


def _builder(model, path):
    from voxport.exporter.families.qwen3_tts import Qwen3TtsFamily
    from voxport.runtime.prompt import PromptBuilder

    rt = {**Qwen3TtsFamily(model, path).runtime_config(), "tokenizer_file": "tokenizer.json"}
    return PromptBuilder(path, rt)


def _embed(model, text, codec):
    import torch

    from voxport.exporter.families.qwen3_tts.wrappers import PromptEmbed

    with torch.no_grad():
        return PromptEmbed(model)(torch.from_numpy(text), torch.from_numpy(codec))[0].numpy()


def test_voice_clone_prompt_recipe_equals_reference_prompt(cache_root):
    """Base voice clone (x-vector + reference text and codes in context), reference text longer and
    shorter than its codes: the runtime's prompt and per-frame text equal the reference's."""
    import torch

    from voxport.exporter.families.qwen3_tts import presets
    from voxport.exporter.families.qwen3_tts.parity import reference_prompt
    from voxport.exporter.presets import materialize
    from voxport.runtime.prompt import Utterance

    path = materialize("qwen3-tts-tiny-base", cache_root)
    model = presets.load(path)
    prompts = _builder(model, path)
    spec = prompts.spec
    gen = torch.Generator().manual_seed(0)
    xvec = torch.randn(model.config.talker_config.hidden_size, generator=gen)
    for frames in (4, 40):  # reference text longer than the codes, then shorter
        code = torch.randint(0, 64, (frames, 16), generator=gen)
        voice = Utterance(TEXT, None, code.numpy(), vector=xvec.numpy())
        turns = [voice, Utterance("Hello there!", None, language="english")]
        prompt = {"ref_spk_embedding": [xvec], "x_vector_only_mode": [False], "icl_mode": [True], "ref_code": [code]}
        ids = [torch.tensor([prompts._ids(spec["template"], "Hello there!")])]
        ref_ids = [torch.tensor([prompts._ids(spec["ref_template"], TEXT)])]
        ref, ref_trailing = reference_prompt(model, input_ids=ids, ref_ids=ref_ids, voice_clone_prompt=prompt,
                                              languages=["english"])
        ours = _embed(model, *prompts.build(turns))
        for row, vector in prompts.vectors(turns):
            ours[row] += vector
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)
        trailing = _embed(model, *(a for a in prompts.trailing_feeds(prompts.trailing(turns)).values()))
        # the runtime's per-frame text: the reference's trailing text, then the pad embedding
        np.testing.assert_allclose(trailing[: len(ref_trailing)], ref_trailing, rtol=0, atol=1e-6)
        assert len(trailing) == len(ref_trailing) + 1 or (frames == 40 and len(trailing) == 1)
