"""Qwen3-TTS through the whole contract on its tiny preset: export (five precisions), `voxport parity`
(every graph at shapes other than the export's, the runtime's prompt recipe against the reference's,
greedy codes equal to the reference generate), fidelity gates, torch-free speech, one-line errors for
options the model does not take, and CSM unaffected in the same process."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from voxport.cli import main

FRAMES = 50


def test_parity_passes(qwen_dir, capsys):
    assert main(["parity", str(qwen_dir), "--frames", str(FRAMES)]) == 0
    r = json.loads((qwen_dir / "parity.json").read_text())
    assert r["ok"] and not r["failures"]
    assert {c["graph"] for c in r["graphs"]} == {"prompt_embed", "talker", "code_predictor", "frame", "frame_capture",
                                                 "codec_decoder", "codec_decoder_stream", "codec_encoder"}
    assert all(c["max_abs"] <= c["allowed"] for c in r["graphs"])
    g = r["greedy"]
    assert g["identical"] and g["frames_reference"] >= FRAMES and g["agreement_per_frame"] == [1.0] * g["frames_onnx"]
    # the runtime's prompt recipe (manifest data) equals the reference's embeddings, per variant
    assert set(r["prompt"]) >= {"speaker_language", "dialect_speaker"}
    assert all(c["ok"] and c["max_abs"] <= c["allowed"] for c in r["prompt"].values())
    assert "parity PASS" in capsys.readouterr().out


def test_base_parity_clones_a_voice_like_the_reference(qwen_base_dir):
    """Base: the reference clip through the runtime's codec encoder and speaker encoder, in context;
    greedy codes equal to the reference's encode + x-vector + generate."""
    assert main(["parity", str(qwen_base_dir), "--frames", str(FRAMES)]) == 0
    r = json.loads((qwen_base_dir / "parity.json").read_text())
    assert r["ok"] and not r["failures"]
    assert "speaker_encoder" in {c["graph"] for c in r["graphs"]}
    v = r["voice_prompt"]
    assert v["identical"] and v["frames_onnx"] >= FRAMES and v["encoder_codes_identical"], v
    assert v["context_frames"] > 0 and v["speaker_vector_max_abs"] < 1e-5


def test_fidelity_gates_pass(qwen_dir):
    from voxport.validation.fidelity import run

    res = run(qwen_dir, "all", frames=12, progress=lambda m: None)
    assert res["ok"], res["failures"]
    assert res["agreement"]["fp32"]["mean"] == 1.0
    assert res["sizes"]["q4"] < res["sizes"]["fp32"]


def test_speaks_without_torch(qwen_dir, tmp_path):
    """`voxport speak` in a process where importing torch fails: the runtime needs none of it."""
    out, codes = tmp_path / "q.wav", tmp_path / "codes.json"
    guard = ("import sys; sys.modules['torch'] = None; from voxport.cli import main; "
             f"sys.exit(main(['speak', {str(qwen_dir)!r}, 'Hello there, how are you?', '-o', {str(out)!r}, "
             f"'--speaker', 'ryan', '--language', 'english', '--greedy', '--max-frames', '12', "
             f"'--codes-out', {str(codes)!r}]))")
    run = subprocess.run([sys.executable, "-c", guard], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    wave, rate = sf.read(out)
    manifest = json.loads((qwen_dir / "manifest.json").read_text())
    assert rate == manifest["runtime"]["sample_rate"] == 24000
    frames = np.array(json.loads(codes.read_text()))
    stop = manifest["runtime"]["generation"]["stop"]["token"]
    assert frames.shape[1] == 16 and len(wave) == (len(frames) - int(frames[-1, 0] == stop)) * 1920
    assert np.abs(wave).max() > 1e-4


@pytest.mark.parametrize("args,message", [
    (["--speaker", "nobody"], "speaker 'nobody' is not one of this model's speakers: aiden, dylan, eric, ryan, serena, "
     "uncle_fu, vivian"),
    (["--language", "klingon"], "language 'klingon' is not one this model speaks; languages: auto, beijing_dialect"),
    (["--instruct", "whisper"], "this model takes no instruction (--instruct)"),
    # checked before the clip is read (it does not exist)
    (["--ref-audio", "missing.wav", "--ref-text", "Hi."], "this model does not take a reference clip: it speaks as "
     "its named speakers (aiden, dylan, eric, ryan, serena, uncle_fu, vivian) and clones no voice"),
    (["--top-p", "1.5"], "top-p must be in (0, 1] (1 = none), got 1.5"),
])
def test_unsupported_options_are_one_line_errors(qwen_dir, tmp_path, capsys, args, message):
    out = tmp_path / "x.wav"
    assert main(["speak", str(qwen_dir), "Hi.", "-o", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_csm_options_are_checked_the_same_way(tiny_dir, tmp_path, capsys):
    assert main(["speak", str(tiny_dir), "Hi.", "-o", str(tmp_path / "x.wav"), "--speaker", "vivian"]) == 2
    assert "speaker 'vivian': this model's speakers are integers" in capsys.readouterr().err
    assert main(["speak", str(tiny_dir), "Hi.", "-o", str(tmp_path / "x.wav"), "--language", "english"]) == 2
    assert "this model takes no language option" in capsys.readouterr().err


def test_csm_exports_after_qwen_in_the_same_process(qwen_dir, tmp_path):
    """The reference's RoPE registry entry exists only inside its block: after a Qwen3-TTS export in
    this process, CSM's graphs that use rotary embeddings (the frame graph, the Mimi stream's
    transformer) export and match PyTorch at every check size."""
    import onnxruntime as ort
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from voxport.exporter.export import export_graph
    from voxport.exporter.families.csm import CsmFamily
    from voxport.exporter.families.csm.presets import PRESETS, build_model, build_tokenizer
    from voxport.validation.graphs import check_graph

    assert "default" not in ROPE_INIT_FUNCTIONS
    model = build_model(PRESETS["tiny"], build_tokenizer(512))
    (tmp_path / "onnx").mkdir()
    for spec in CsmFamily(model).graphs():
        if spec.name in ("frame", "mimi_decoder_stream"):
            sess = ort.InferenceSession(str(tmp_path / export_graph(spec, tmp_path)[0]))
            checks = check_graph(spec, sess)
            assert checks and all(c.ok for c in checks), [c.describe() for c in checks if not c.ok]


def test_frame_graph_is_written_with_fused_ops(qwen_dir):
    """Both stacks as GroupQueryAttention layers with q/k normed per head, readable node names; a
    config the blocks cannot take (here a sliding window) says why, and is traced instead."""
    from types import SimpleNamespace

    import onnx

    from voxport.exporter.kernels import unfusable
    from voxport.exporter.checkpoint import resolve

    tc = json.loads((resolve("qwen3-tts-tiny").path / "config.json").read_text())["talker_config"]
    pc = tc["code_predictor_config"]
    graph = onnx.load(str(qwen_dir / "onnx" / "frame.onnx")).graph
    ops = [n.op_type for n in graph.node]
    steps = tc["num_code_groups"] - 1
    assert ops.count("GroupQueryAttention") == tc["num_hidden_layers"] + steps * pc["num_hidden_layers"]
    assert ops.count("If") == tc["num_code_groups"]  # one sampling per group
    names = {n.name for n in graph.node}
    assert {"/talker/layers.1/attn/qkv/MatMul", "/talker/layers.0/attn/q_norm/SkipSimplifiedLayerNormalization",
            "/talker/codec_head/MatMul",
            f"/predictor/step{steps - 1}/layers.1/attn/k_norm/SkipSimplifiedLayerNormalization",
            "/predictor/step0/projection/MatMul", "/predictor/step3/head/MatMul"} <= names
    assert "no sliding window" in unfusable(SimpleNamespace(head_dim=16, num_attention_heads=4, num_key_value_heads=2,
                                                            hidden_act="silu", sliding_window=8))
