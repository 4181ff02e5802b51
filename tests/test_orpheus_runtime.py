"""Orpheus from the graphs alone: speak with torch never imported, the prompt in canopy's format with
emotion tags as text, named voices, codec noise from the seed, streaming that returns every frame."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from voxport.cli import main
from voxport.errors import InputError
from voxport.runtime.batch import BatchStream, Scheduler
from voxport.runtime.codec_stream import CodecStream, codec_rng
from voxport.runtime.prompt import Utterance
from voxport.runtime.runtime import Runtime
from voxport.runtime.sampling import Sampling
from voxport.runtime.stream import Speech

NO_TORCH = """
import sys
from voxport.cli import main
rc = main(sys.argv[1:])
leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'snac'))
assert not leaked, f'speak imported {leaked[:5]}'
sys.exit(rc)
"""


def test_speak_never_imports_torch(orpheus_dir, tmp_path):
    wav, codes = tmp_path / "out.wav", tmp_path / "codes.json"
    proc = subprocess.run([sys.executable, "-c", NO_TORCH, "speak", str(orpheus_dir), "Hello <laugh> there.",
                           "--speaker", "tara", "--greedy", "--max-frames", "12", "-o", str(wav),
                           "--codes-out", str(codes)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    audio, sr = sf.read(wav)
    frames = np.array(json.loads(codes.read_text()))
    assert sr == 24000 and frames.shape == (12, 7) and frames.max() < 256
    assert audio.shape[0] == 12 * 2048 and np.abs(audio).max() > 1e-3


def test_prompt_is_canopys_format_with_tags_as_text(orpheus_dir):
    from tokenizers import Tokenizer

    rt = Runtime(orpheus_dir)
    tok = Tokenizer.from_file(str(orpheus_dir / "tokenizer.json"))
    ids = rt.prompts.build([Utterance("Well <sigh> okay.", "leo")])[0][0].tolist()
    base = tok.token_to_id("<custom_token_0>")
    text = tok.encode("leo: Well <sigh> okay.").ids  # BOS included, as the engine's tokenizer call
    assert ids == [base + 3, *text, tok.token_to_id("<|eot_id|>"), base + 4, base + 5, base + 1]
    assert text[0] == tok.token_to_id("<|begin_of_text|>") and "<sigh>" in tok.decode(text)


@pytest.mark.parametrize("args, message", [
    (["--speaker", "nobody"], "speaker 'nobody' is not one of this model's speakers: tara, leah"),
    (["--language", "german"], "takes no language option"),
    (["--instruct", "whisper"], "takes no instruction"),
])
def test_bad_voice_options_are_one_line_errors(orpheus_dir, tmp_path, capsys, args, message):
    out = tmp_path / "x.wav"
    assert main(["speak", str(orpheus_dir), "Hi.", "-o", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_manifest_carries_the_models_sampling_and_layout(orpheus_dir):
    rt = Runtime(orpheus_dir).rt
    g = rt["generation"]
    assert g["frame"]["steps"] == 7 and g["codebooks"] == 7 and g["noise_vocab"] == 257
    assert g["sampling"][0]["defaults"] == {"temperature": 0.6, "top_k": 257, "top_p": 0.8, "repetition_penalty": 1.3}
    assert g["stop"] == {"codebooks": [0, 1], "token": 256}
    assert rt["layout"]["levels"] == [0, 1, 2, 2, 1, 2, 2] and rt["frame_size"] == 2048


def test_sampling_reproducible_and_cache_grows_seven_per_frame(orpheus_dir):
    rt = Runtime(orpheus_dir)
    s = Sampling(0.6, 257, None, 0.8)

    def codes(seed):
        sp = Speech(rt, "Same text.", speaker="tara", max_frames=6, sampling=s, seed=seed)
        pcm = np.concatenate(list(sp))
        return np.stack(sp.codes), pcm

    a, pa = codes(5)
    b, pb = codes(5)
    assert np.array_equal(a, b) and np.array_equal(pa, pb)
    assert not np.array_equal(a, codes(6)[0])
    # a prompt that leaves room for 3 frames of 7 positions is given 3, not 21
    prepared = rt.prepare([Utterance("Hi.", "tara")], 10_000, s)
    assert prepared.max_frames == (rt.rt["max_positions"] - prepared.tokens) // 7


def test_codec_noise_follows_the_seed_and_the_stream_returns_every_frame(orpheus_dir):
    rt = Runtime(orpheus_dir)
    frames = np.random.default_rng(0).integers(0, 256, (9, 7))
    a, b = rt.decode(frames, seed=3), rt.decode(frames, seed=3)
    assert np.array_equal(a, b) and not np.allclose(a, rt.decode(frames, seed=4))
    stream = CodecStream(rt.graphs, rng=codec_rng(3))
    parts = [stream.decode(frames[i:i + 2]) for i in range(0, 9, 2)]
    assert parts[0].shape[0] == 0  # two frames of look-ahead: the first call's audio is held back
    streamed = np.concatenate([*parts, stream.flush()])
    assert streamed.shape == a.shape == (9 * 2048,)
    snr = 10 * np.log10(np.sum(a.astype(np.float64) ** 2) / np.sum((a - streamed) ** 2))
    assert snr >= 20  # the same noise per frame as the whole decode; measured 31.9 dB on tiny


def test_streams_batched_get_their_codes_and_audio_alone(orpheus_dir):
    """Two slots, three streams (the third joins when the shorter leaves): each row's cache advances
    by its input + 6 positions a call, each row its own settings, seen rows and codec noise."""
    rt = Runtime(orpheus_dir)
    streams = [BatchStream("Hello there, how are you?", "tara", 9, Sampling(0.6, 257, None, 0.8), seed=3, decode=True),
               BatchStream("A longer sentence, spoken at once.", "leah", 14, Sampling(0.0, 1), seed=4, decode=True),
               BatchStream("Third.", "tara", 6, Sampling(1.0, 40, 1.1, 0.9), seed=5, decode=True)]
    sched = Scheduler(rt, slots=2, capacity=160)
    sched.run(streams)
    assert max(rows for rows, _ in sched.timings) == 2
    for s in streams:
        alone = Speech(rt, s.text, speaker=s.speaker, max_frames=s.max_frames, sampling=s.sampling, seed=s.seed)
        pcm = np.concatenate(list(alone))
        assert s.done in ("stop", "frames") and len(s.codes) == len(alone.codes)
        assert np.array_equal(np.stack(s.codes), np.stack(alone.codes)), s.text
        assert np.array_equal(np.concatenate(s.pcm), pcm), s.text


def test_a_slot_too_short_for_the_frames_steps_is_refused(orpheus_dir):
    rt = Runtime(orpheus_dir)
    sched = Scheduler(rt, slots=1, capacity=60)
    with pytest.raises(InputError, match=r"and 10 frames of 7 positions do not fit a slot of 60 positions"):
        sched.join(BatchStream("Hi.", "tara", 10))
