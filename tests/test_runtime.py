"""The torch-free runtime: speak from the graphs alone, prompt building, bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from voxport.runtime.runtime import Runtime
from voxport.runtime.prompt import Utterance
from voxport.runtime.sampling import Sampling
from voxport.cli import main
from voxport.errors import InputError

TEXTS = ["Hello, world!", "Numbers: 3.14, 42 and 1,000,000.", "Emoji 🎉🙂 and symbols #@%&*",
         "Привет, мир. 你好，世界。 こんにちは", "  spaces   and\ttabs\nnewline "]

NO_TORCH = """
import sys
from voxport.cli import main
rc = main(sys.argv[1:])
leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))
assert not leaked, f'speak imported {leaked[:5]}'
sys.exit(rc)
"""


def test_speak_cli_never_imports_torch(tiny_dir, tmp_path):
    wav, codes = tmp_path / "out.wav", tmp_path / "codes.json"
    ref = tmp_path / "ref.flac"  # 44.1 kHz stereo: exercises resampling and downmix
    t = np.arange(int(1.2 * 44100)) / 44100
    sf.write(ref, np.stack([0.3 * np.sin(2 * np.pi * 200 * t), 0.2 * np.sin(2 * np.pi * 310 * t)], 1), 44100)
    proc = subprocess.run([sys.executable, "-c", NO_TORCH, "speak", str(tiny_dir), "Hello there.", "-o", str(wav),
                           "--greedy", "--max-frames", "12", "--codes-out", str(codes),
                           "--ref-audio", str(ref), "--ref-text", "A reference."],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    audio, sr = sf.read(wav)
    frames = np.array(json.loads(codes.read_text()))
    assert sr == 24000 and frames.shape == (12, 32)
    assert audio.shape[0] == 12 * 1920 and np.abs(audio).max() > 1e-3


def test_greedy_is_deterministic_and_sampling_follows_seed(tiny_dir):
    rt = Runtime(tiny_dir)
    a = rt.generate("Same text.", max_frames=5).codes
    assert np.array_equal(a, rt.generate("Same text.", max_frames=5).codes)
    s = Sampling(temperature=1.0, top_k=20)
    x = rt.generate("Same text.", max_frames=5, sampling=s, seed=7).codes
    assert np.array_equal(x, rt.generate("Same text.", max_frames=5, sampling=s, seed=7).codes)
    assert not np.array_equal(x, rt.generate("Same text.", max_frames=5, sampling=s, seed=8).codes)


def test_prompt_token_ids_match_transformers_processor(tiny_dir, tiny_checkpoint):
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(tiny_checkpoint)
    rt = Runtime(tiny_dir)
    wave = np.sin(np.arange(24000 * 2) / 24000 * 2 * np.pi * 150).astype(np.float32) * 0.3
    codes = rt.encode_audio(wave)
    for text in TEXTS:
        conv = [{"role": "1", "content": [{"type": "text", "text": text}]}]
        ref = proc.apply_chat_template(conv, tokenize=True, return_dict=True)["input_ids"][0].tolist()
        ids, _ = rt.prompts.build([Utterance(text, 1)])
        assert ids[0].tolist() == ref, text
        ctx = [{"role": "0", "content": [{"type": "text", "text": "ref"}, {"type": "audio", "path": wave}]}]
        ref = proc.apply_chat_template(ctx + conv, tokenize=True, return_dict=True)["input_ids"][0].tolist()
        ids, audio = rt.prompts.build([Utterance("ref", 0, codes), Utterance(text, 1)])
        assert ids[0].tolist() == ref, text
        assert np.array_equal(audio[0][ids[0] == rt.rt["audio_token_id"]], codes)


def test_text_beyond_context_is_refused_with_the_limit(tiny_dir):
    rt = Runtime(tiny_dir)
    with pytest.raises(InputError, match=r"context is 512 positions"):
        rt.generate("word " * 600, max_frames=4)


@pytest.mark.parametrize("kind,message", [
    ("garbage", "cannot read audio"), ("silent", "silent"), ("short", "at least 0.5 s"), ("long", "at most"),
    ("missing", "not found")])
def test_bad_reference_audio(tiny_dir, tmp_path, kind, message):
    rt = Runtime(tiny_dir)
    path = tmp_path / "ref.wav"
    tone = lambda s: (0.3 * np.sin(np.arange(int(s * 16000)) / 16000 * 2 * np.pi * 200)).astype(np.float32)
    if kind == "garbage":
        path.write_bytes(b"RIFF\x00\x01garbage" * 100)
    elif kind == "silent":
        sf.write(path, np.zeros(16000 * 2, np.float32), 16000)
    elif kind == "short":
        sf.write(path, tone(0.2), 16000)
    elif kind == "long":
        sf.write(path, tone(30), 16000)  # tiny context: 512 positions / 2 / 12.5 Hz = 20.5 s
    with pytest.raises(InputError, match=message):
        rt.reference(path, "text", 0)


@pytest.mark.parametrize("args,message", [
    (["--temperature", "-1"], "temperature must be >= 0"), (["--top-k", "5000"], "top-k must be between")])
def test_bad_sampling_settings(tiny_dir, tmp_path, capsys, args, message):
    assert main(["speak", str(tiny_dir), "hi", "-o", str(tmp_path / "x.wav"), *args]) == 2
    assert message in capsys.readouterr().err


def test_tampered_artifact_is_refused(tiny_dir, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_dir, bad)
    graph = bad / "onnx" / "frame.onnx"  # speak's per-frame graph
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    assert main(["speak", str(bad), "hi", "-o", str(tmp_path / "x.wav"), "--greedy", "--max-frames", "2"]) == 2
    err = capsys.readouterr().err
    assert "onnx/frame.onnx: sha256 differs from the manifest" in err and not (tmp_path / "x.wav").exists()


def test_decode_cuts_where_the_contracts_stop_rule_ends(tiny_dir, qwen_dir):
    """Runtime.decode (the step path's waveform) ends on the same frame the frame loop stops on: CSM
    when every codebook but the last is eos, Qwen3-TTS when codebook 0 is; a frame that only looks
    like a stop to the other family's rule is audio."""
    for d in (tiny_dir, qwen_dir):
        rt = Runtime(d)
        a, b = rt.contract.stop["codebooks"]
        eos, k, fs = rt.contract.stop["token"], rt.rt["num_codebooks"], rt.rt["frame_size"]
        codes = np.random.default_rng(0).integers(1, 100, (6, k))
        near = codes[2].copy()
        near[a] = eos if b - a > 1 else near[a]  # part of the rule's codebooks only: not a stop (CSM)
        codes[2] = near
        codes[4, a:b] = eos  # the rule's codebooks all eos, the rest not: a stop
        assert rt.contract.is_stop(codes[4]) and not rt.contract.is_stop(codes[2])
        assert rt.decode(codes).shape[0] == 4 * fs
