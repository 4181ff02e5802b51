"""Qwen3-TTS LM graphs on the tiny presets: each graph against PyTorch, greedy frames against the
reference's generate, the checkpoint layout, and CSM unaffected in the same process."""

from __future__ import annotations

import numpy as np
import pytest

from voxport.errors import CheckpointError  # noqa: E402
from voxport.exporter.families.qwen3_tts.reference import reference  # noqa: E402

try:  # the reference is an optional extra
    with reference():
        pass
except CheckpointError as e:
    pytest.skip(str(e), allow_module_level=True)

FRAMES = 51  # generate completes FRAMES - 1 = 50 frames when no eos comes first
TEXT = "Hello there! The quick brown fox jumps over the lazy dog, one frame at a time."


@pytest.fixture(scope="module")
def tiny(cache_root):
    from voxport.exporter.families.qwen3_tts import presets

    path = presets.materialize("qwen3-tts-tiny", cache_root)
    return path, presets.load(path)


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory):
    from voxport.exporter.export import export_graph
    from voxport.exporter.families.qwen3_tts import Qwen3TtsFamily

    root = tmp_path_factory.mktemp("qwen-onnx")
    (root / "onnx").mkdir()
    family = Qwen3TtsFamily(tiny[1], {})
    specs = {s.name: s for s in family.graphs()}
    files = {name: root / export_graph(spec, root)[0] for name, spec in specs.items()}
    return family, specs, files


def _session(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("graph", ["prompt_embed", "talker", "code_predictor", "frame"])
def test_graph_matches_pytorch(exported, graph):
    from voxport.validation.graphs import check_graph

    _, specs, files = exported
    checks = check_graph(specs[graph], _session(files[graph]))
    assert checks and all(c.ok for c in checks), [c.describe() for c in checks if not c.ok]


def test_frame_graph_is_written_with_fused_ops(exported):
    """Both stacks as GroupQueryAttention layers with q/k normed per head, readable node names; a
    config the blocks cannot take (here a sliding window) says why, and is traced instead."""
    from types import SimpleNamespace

    import onnx

    from voxport.exporter.blocks import unfusable

    family, specs, files = exported
    tc = family.model.talker.config
    pc = tc.code_predictor_config
    graph = onnx.load(str(files["frame"])).graph
    ops = [n.op_type for n in graph.node]
    steps = tc.num_code_groups - 1
    assert ops.count("GroupQueryAttention") == tc.num_hidden_layers + steps * pc.num_hidden_layers
    assert ops.count("If") == tc.num_code_groups  # one sampling per group
    names = {n.name for n in graph.node}
    assert {"/talker/layers.1/attn/qkv/MatMul", "/talker/layers.0/attn/q_norm/SkipSimplifiedLayerNormalization",
            "/talker/codec_head/MatMul",
            f"/predictor/step{steps - 1}/layers.1/attn/k_norm/SkipSimplifiedLayerNormalization",
            "/predictor/step0/projection/MatMul", "/predictor/step3/head/MatMul"} <= names
    assert specs["frame"].build is not None
    assert "sliding_window" in unfusable(SimpleNamespace(head_dim=16, hidden_act="silu", sliding_window=8))


def _greedy_frames(family, files, ids: list[int], speaker: str, language: str, frames: int) -> np.ndarray:
    """PyTorch-free: the prompt through prompt_embed, then one frame graph call per frame."""
    rc = family.runtime_config()
    g, v, c, t = rc["num_code_groups"], rc["codec_vocab"], rc["codec_ids"], rc["text_ids"]
    embed, frame = _session(files["prompt_embed"]), _session(files["frame"])
    none = -1

    def prompt(text: list[int], codec: list[int]) -> np.ndarray:
        codec_ids = np.full((1, len(codec), g), none, np.int64)
        codec_ids[0, :, 0] = codec
        return embed.run(None, {"text_ids": np.array([text], np.int64), "codec_ids": codec_ids})[0]

    pad, bos, eos = t["tts_pad_token_id"], t["tts_bos_token_id"], t["tts_eos_token_id"]
    specials = [c["codec_think_id"], c["codec_think_bos_id"], rc["languages"][language], c["codec_think_eos_id"],
                rc["speakers"][speaker], c["codec_pad_id"]]
    embeds = prompt([*ids[:3], *[pad] * (len(specials) - 1), bos, ids[3]],
                    [none] * 3 + specials + [c["codec_bos_id"]])
    trailing = prompt([*ids[4:-5], eos, pad], [none] * (len(ids) - 9 + 2))[0]

    layers, kvh, hd = rc["talker"]["layers"], rc["talker"]["kv_heads"], rc["talker"]["head_dim"]
    past = {f"past_key_values.{i}.{kv}": np.zeros((1, kvh, 0, hd), np.float32)
            for i in range(layers) for kv in ("key", "value")}
    lo, hi = rc["suppressed_ids"]
    seen = np.zeros((1, v), np.float32)
    codes, total = [], 0
    for k in range(frames):
        bias = np.zeros((1, v), np.float32)
        bias[0, lo:hi] = -np.inf
        if k >= rc["min_new_tokens"]:
            bias[0, c["codec_eos_token_id"]] = 0.0
        seq = embeds.shape[1]
        out = frame.run(None, {
            "inputs_embeds": embeds, "attention_mask": np.ones((1, total + seq), np.int64),
            "position_ids": np.arange(total, total + seq, dtype=np.int64)[None],
            "text_embed": trailing[None, min(k, len(trailing) - 1)][:, None],
            "temperature": np.array(0.0, np.float32), "top_k": np.array(1, np.int64),
            "predictor_temperature": np.array(0.0, np.float32), "predictor_top_k": np.array(1, np.int64),
            "repetition_penalty": np.array(rc["sampling"]["repetition_penalty"], np.float32),
            "c0_seen": seen, "c0_bias": bias, "noise": np.zeros((1, g, v), np.float32), **past})
        frame_codes, embeds, presents = out[0], out[1], out[2:]
        if frame_codes[0, 0] == c["codec_eos_token_id"]:
            break
        codes.append(frame_codes[0])
        seen[0, frame_codes[0, 0]] = 1.0
        total += seq
        past = {name: p for name, p in zip(past, presents)}
    return np.array(codes)


def test_greedy_frames_equal_reference_generate(tiny, exported):
    import torch
    from tokenizers import Tokenizer

    path, model = tiny
    family, _, files = exported
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    text = f"<|im_start|>assistant\n{TEXT}<|im_end|>\n<|im_start|>assistant\n"
    ids = tok.encode(text).ids
    # the reference slices the prompt by position: a 3-token role prefix and a 5-token suffix
    assert [tok.decode(ids[:3], skip_special_tokens=False), tok.decode(ids[-5:], skip_special_tokens=False)] == \
        ["<|im_start|>assistant\n", "<|im_end|>\n<|im_start|>assistant\n"]
    ours = _greedy_frames(family, files, ids, "vivian", "english", FRAMES)
    ref, _ = model.generate(input_ids=[torch.tensor([ids])], languages=["english"], speakers=["vivian"],
                            max_new_tokens=FRAMES, do_sample=False, subtalker_dosample=False,
                            repetition_penalty=model.generate_config["repetition_penalty"])
    ref = ref[0].numpy()
    # generate's last new token is a group-0 code whose frame it never completes: FRAMES - 1 frames
    assert len(ref) >= 50, f"the reference stopped at frame {len(ref)}"
    if len(ref) == FRAMES - 1:  # ran to the budget (no eos): the frames it completed
        ours = ours[: len(ref)]
    assert ours.shape == ref.shape, f"{len(ours)} frames, the reference {len(ref)}"
    assert (ours == ref).all(), f"first differing frame {int(np.argmax((ours != ref).any(-1)))}"


def test_presets_materialise_in_the_released_layout_and_load(tiny, cache_root):
    import torch

    from voxport.exporter.families.qwen3_tts import presets

    path, model = tiny
    for f in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
              "speech_tokenizer/config.json", "speech_tokenizer/model.safetensors",
              "speech_tokenizer/preprocessor_config.json"):
        assert (path / f).is_file(), f
    assert presets.materialize("qwen3-tts-tiny", cache_root) == path  # cached
    fresh = presets.build_model(presets.PRESETS["qwen3-tts-tiny"], presets.build_tokenizer())
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in fresh.state_dict().items())
    base = presets.load(presets.materialize("qwen3-tts-tiny-base", cache_root))
    assert base.speaker_encoder is not None and base.config.tts_model_type == "base"
    assert base.speech_tokenizer.model is not None


def test_not_a_checkpoint_is_one_line(tmp_path):
    from voxport.errors import CheckpointError
    from voxport.exporter.families.qwen3_tts import presets

    with pytest.raises(CheckpointError, match="generation_config.json is missing"):
        (tmp_path / "config.json").write_text("{}")
        presets.load(tmp_path)


def test_csm_still_builds_and_exports_after_qwen(exported, tmp_path):
    """The reference's RoPE registry entry exists only inside its block: CSM's Mimi builds after it."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from voxport.exporter.export import export_graph
    from voxport.exporter.families.csm import CsmFamily
    from voxport.exporter.presets import PRESETS, build_model, build_tokenizer

    assert "default" not in ROPE_INIT_FUNCTIONS
    model = build_model(PRESETS["tiny"], build_tokenizer(512))
    frame = next(s for s in CsmFamily(model, {}).graphs() if s.name == "frame")
    (tmp_path / "onnx").mkdir()
    assert (tmp_path / export_graph(frame, tmp_path)[0]).stat().st_size > 0


class _Captured(Exception):
    pass


def _reference_prompt(model, **kwargs):
    """The talker prompt and trailing text the reference's generate builds (captured, not generated)."""
    seen = {}

    def capture(**kw):
        seen.update(kw)
        raise _Captured

    model.talker.generate = capture
    try:
        with pytest.raises(_Captured):
            model.generate(**kwargs)
    finally:
        del model.talker.generate
    return seen["inputs_embeds"][0].numpy(), seen["trailing_text_hidden"][0].numpy()


def _tracks(model, ids, language, speaker=None, instruct=None, ref_ids=None, ref_code=None):
    """The recipe of voxport.exporter.families.qwen3_tts's docstring -> (prompt tracks, trailing text ids)."""
    cfg, tc = model.config, model.config.talker_config
    g, none = tc.num_code_groups, -1
    pad, bos, eos = cfg.tts_pad_token_id, cfg.tts_bos_token_id, cfg.tts_eos_token_id
    lang = None if language == "auto" else tc.codec_language_id[language]
    if speaker and language in ("chinese", "auto") and tc.spk_is_dialect[speaker]:
        lang = tc.codec_language_id[tc.spk_is_dialect[speaker]]
    think = ([tc.codec_nothink_id, tc.codec_think_bos_id, tc.codec_think_eos_id] if lang is None else
             [tc.codec_think_id, tc.codec_think_bos_id, lang, tc.codec_think_eos_id])
    rows = [(t, [none] * g) for t in (instruct or [])] + [(t, [none] * g) for t in ids[:3]]
    specials = think + ([tc.spk_id[speaker]] if speaker else [none] if ref_code is not None else [])
    rows += [(pad, [s] + [none] * (g - 1)) for s in specials]
    rows += [(bos, [tc.codec_pad_id] + [none] * (g - 1))]
    if ref_code is None:
        return rows + [(ids[3], [tc.codec_bos_id] + [none] * (g - 1))], [*ids[4:-5], eos]
    text = [*ref_ids[3:-2], *ids[3:-5], eos]
    codec = [[tc.codec_bos_id] + [none] * (g - 1), *ref_code.tolist()]
    if len(text) > len(codec):
        return rows + list(zip(text, codec)), text[len(codec):]
    return rows + list(zip(text + [pad] * (len(codec) - len(text)), codec)), []


def _embed(model, rows):
    import torch

    from voxport.exporter.families.qwen3_tts.wrappers import PromptEmbed

    text = torch.tensor([[r[0] for r in rows]])
    codec = torch.tensor([[r[1] for r in rows]])
    with torch.no_grad():
        return PromptEmbed(model)(text, codec)[0].numpy()


@pytest.mark.parametrize("case", ["instruct_auto", "dialect"])
def test_prompt_recipe_equals_reference_prompt(tiny, case):
    import torch
    from tokenizers import Tokenizer

    path, model = tiny
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    ids = tok.encode(f"<|im_start|>assistant\n{TEXT}<|im_end|>\n<|im_start|>assistant\n").ids
    if case == "instruct_auto":
        instruct = tok.encode("<|im_start|>user\nSpeak slowly and warmly.<|im_end|>\n").ids
        kw = dict(instruct_ids=[torch.tensor([instruct])], languages=["auto"], speakers=["vivian"])
        rows, trailing = _tracks(model, ids, "auto", "vivian", instruct=instruct)
    else:
        kw = dict(languages=["chinese"], speakers=["dylan"])
        rows, trailing = _tracks(model, ids, "chinese", "dylan")
    ref, ref_trailing = _reference_prompt(model, input_ids=[torch.tensor([ids])], **kw)
    np.testing.assert_allclose(_embed(model, rows), ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(_embed(model, [(t, [-1] * 16) for t in trailing]), ref_trailing, rtol=0, atol=1e-6)


def test_voice_clone_prompt_recipe_equals_reference_prompt(cache_root):
    import torch
    from tokenizers import Tokenizer

    from voxport.exporter.families.qwen3_tts import presets

    path = presets.materialize("qwen3-tts-tiny-base", cache_root)
    model = presets.load(path)
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    ids = tok.encode("<|im_start|>assistant\nHello there!<|im_end|>\n<|im_start|>assistant\n").ids
    ref_ids = tok.encode(f"<|im_start|>assistant\n{TEXT}<|im_end|>\n").ids
    gen = torch.Generator().manual_seed(0)
    xvec = torch.randn(model.config.talker_config.hidden_size, generator=gen)
    for frames in (4, 40):  # reference text longer than the codes, then shorter
        code = torch.randint(0, 64, (frames, 16), generator=gen)
        prompt = {"ref_spk_embedding": [xvec], "x_vector_only_mode": [False], "icl_mode": [True], "ref_code": [code]}
        ref, ref_trailing = _reference_prompt(model, input_ids=[torch.tensor([ids])], ref_ids=[torch.tensor([ref_ids])],
                                              voice_clone_prompt=prompt, languages=["english"])
        rows, trailing = _tracks(model, ids, "english", ref_ids=ref_ids, ref_code=code)
        ours = _embed(model, rows)
        spk = next(i for i, r in enumerate(rows) if r[0] == model.config.tts_pad_token_id and r[1][0] == -1)
        ours[spk] += xvec.numpy()  # the x-vector position: both tracks NONE, the runtime adds the vector
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)
        if trailing:
            np.testing.assert_allclose(_embed(model, [(t, [-1] * 16) for t in trailing]),
                                       ref_trailing, rtol=0, atol=1e-6)
