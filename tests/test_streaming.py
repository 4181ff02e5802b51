"""Streaming speech: one runtime call per frame, audio per chunk, clean early stops, long text."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from voxport.runtime.runtime import Runtime
from voxport.runtime.prompt import Utterance
from voxport.runtime.sampling import Sampling
from voxport.runtime.stream import Speech
from voxport.exporter.parity_kit import LONG_TEXT
from voxport.cli import main

TEXT = "Streaming speech arrives one frame at a time."


def _speak(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "voxport.cli", "speak", *map(str, args)],
                          capture_output=True, timeout=600)


def test_stream_cli_reports_one_call_per_frame_and_first_audio(tiny_dir, tmp_path):
    wav, stats, codes = tmp_path / "s.wav", tmp_path / "s.json", tmp_path / "c.json"
    proc = _speak(tiny_dir, TEXT, "--stream", "--greedy", "--max-frames", 20, "-o", wav,
                  "--stats-json", stats, "--codes-out", codes)
    assert proc.returncode == 0, proc.stderr.decode()
    s = json.loads(stats.read_text())
    assert s["frames"] == 20 and s["runtime_calls_per_frame"] == 1.0
    assert s["codec_calls"] == 20 and s["embed_calls"] == 1  # chunk of 1 frame: one codec call each
    assert 0 < s["first_audio_s"] < s["wall_s"]
    assert s["audio_s"] == pytest.approx(20 * 0.08)
    # wall_s and rtf are each rounded to 4 decimals: up to 5e-5 + 5e-5 / audio_s apart
    assert s["rtf"] == pytest.approx(s["wall_s"] / s["audio_s"], abs=5e-5 + 5e-5 / s["audio_s"] + 1e-9)
    assert set(s["stages"]) == {"prefill_s", "frames_s", "codec_s"} and all(v > 0 for v in s["stages"].values())
    audio, sr = sf.read(wav, dtype="float32")
    assert sr == 24000 and audio.shape == (20 * 1920,)

    # the same words through the step graphs: identical codes, and the same audio within 16-bit rounding
    wav2, codes2 = tmp_path / "steps.wav", tmp_path / "c2.json"
    proc = _speak(tiny_dir, TEXT, "--step-graphs", "--greedy", "--max-frames", 20, "-o", wav2, "--codes-out", codes2)
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(codes.read_text()) == json.loads(codes2.read_text())
    batch, _ = sf.read(wav2, dtype="float32")
    assert np.abs(batch - audio).max() <= 2 / 32768


def test_raw_pcm_on_stdout_matches_the_wav(tiny_dir, tmp_path):
    wav = tmp_path / "w.wav"
    assert _speak(tiny_dir, TEXT, "--greedy", "--max-frames", 6, "-o", wav).returncode == 0
    ref, _ = sf.read(wav, dtype="int16")
    for chunks in ("4", "1,2"):  # chunks of 4 frames; a schedule: one frame, then two at a time
        proc = _speak(tiny_dir, TEXT, "--greedy", "--max-frames", 6, "-o", "-", "--chunk-frames", chunks)
        assert proc.returncode == 0, proc.stderr.decode()
        pcm = np.frombuffer(proc.stdout, "<i2")
        assert pcm.shape == (6 * 1920,)
        # chunks of 4 frames and of 1 decode to floats up to 1.2e-5 apart (measured; 127 of 11520
        # samples then land one int16 step apart): the arithmetic is the same, the chunking is not
        assert np.abs(pcm.astype(int) - ref.astype(int)).max() <= 1, chunks


def test_reader_closing_the_pipe_stops_generation_cleanly(tiny_dir, tmp_path):
    stats = tmp_path / "s.json"
    p = subprocess.Popen([sys.executable, "-m", "voxport.cli", "speak", str(tiny_dir), TEXT, "--greedy",
                          "--max-frames", "400", "-o", "-", "--stats-json", str(stats)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = p.stdout.read(3 * 1920 * 2)  # three frames, then the reader goes away
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=300) == 0, err
    assert len(first) == 3 * 1920 * 2
    assert "Traceback" not in err and "output closed by the reader" in err
    assert json.loads(stats.read_text())["frames"] < 400


def test_generator_closed_early_ends_generation(tiny_dir):
    rt = Runtime(tiny_dir)
    speech = Speech(rt, TEXT, max_frames=50, sampling=Sampling(0.9, 50), seed=3, chunk_frames=2)
    chunks = iter(speech)
    first = next(chunks)
    chunks.close()
    assert first.shape == (2 * 1920,) and first.dtype == np.float32
    assert len(speech.codes) == 2 and speech.stats["frames"] == 2 and speech.stats["first_audio_s"] > 0


def test_long_text_is_spoken_as_consecutive_utterances(tiny_dir):
    rt = Runtime(tiny_dir)
    speech = Speech(rt, LONG_TEXT, max_frames=4, chunk_frames=3)
    audio = np.concatenate(list(speech))
    texts = [u["text"] for u in speech.utterances]
    assert len(texts) >= 2 and " ".join(texts) == " ".join(LONG_TEXT.split())
    assert all(t.endswith((".", "!", "?")) for t in texts)  # cut at sentence ends
    budget = rt.rt["max_positions"] // 2
    assert all(rt.prompts.build([Utterance(t)])[0].shape[1] + 4 <= budget for t in texts)
    assert audio.shape == (sum(u["frames"] for u in speech.utterances) * 1920,)


@pytest.mark.parametrize("flags, message", [
    (["--temperature", "-0.5"], "temperature must be >= 0"), (["--top-k", "0"], "top-k must be between 1"),
    (["--top-k", "2052"], "top-k must be between 1"),
    (["--stream", "--chunk-frames", "0"], "--chunk-frames must be frame counts >= 1 separated by commas (e.g. 1,4), got '0'")])
def test_bad_stream_settings_get_clear_errors(tiny_dir, tmp_path, capsys, flags, message):
    assert main(["speak", str(tiny_dir), TEXT, "-o", str(tmp_path / "x.wav"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.wav").exists()
