"""What every family's end-to-end parity cases share: the test texts, a voice-like reference signal,
the per-frame comparison of two code sequences, and the streaming path's cases (fused-path codes,
the streaming codec decoder against a batch decode, utterance joins). Families call these from their
parity.py; voxport/validation only drives them and reports."""

from __future__ import annotations

import numpy as np

from voxport.runtime.codec_stream import CodecStream
from voxport.runtime.prompt import Utterance
from voxport.runtime.runtime import Runtime
from voxport.runtime.sampling import Sampling
from voxport.runtime.stream import Speech
from voxport.exporter.spec import ParityRow


TEXT = "The quick brown fox jumps over the lazy dog."
REF_TEXT = "She sells sea shells by the sea shore."


def reference_wave(sample_rate: int, seconds: float = 1.6) -> np.ndarray:
    """A deterministic voice-like test signal: a gliding harmonic tone with a little noise."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    wave = sum(0.2 / h * np.sin(h * phase) for h in range(1, 6))
    wave += 0.01 * np.random.default_rng(0).standard_normal(t.shape)
    return wave.astype(np.float32)


def compare_codes(ref: np.ndarray, got: np.ndarray) -> dict:
    n = min(len(ref), len(got))
    per_frame = [float(np.mean(ref[i] == got[i])) for i in range(n)]
    bad = [i for i, a in enumerate(per_frame) if a < 1.0]
    return {"frames_reference": int(len(ref)), "frames_onnx": int(len(got)),
            "identical": bool(len(ref) == len(got) and not bad),
            "first_mismatch_frame": bad[0] if bad else None, "agreement_per_frame": per_frame}


STREAM_RTOL = 1e-4  # streaming vs batch decode, max |diff| / max |batch| (measured ~2e-6 on tiny)
CHUNKS = (1, 2, 3, 7)
LONG_TEXT = " ".join(["The first sentence is here.", "Then a second one follows it!", "Is this the third?",
                      "Numbers like 3.14 stay whole.", "And this one ends the paragraph."] * 12)


def fused_codes(rt: Runtime, frames: int, sampling: Sampling = Sampling(), seed: int = 0,
                text: str = TEXT) -> np.ndarray:
    speech = Speech(rt, text, max_frames=frames, sampling=sampling, seed=seed, chunk_frames=frames)
    for _ in speech:
        pass
    return np.stack(speech.codes)


def stream_decode_case(rt: Runtime, reference_decode, codebook_size: int, frames: int = 320) -> dict:
    """Streaming decode in chunks of 1, 2, 3, 7 frames vs PyTorch's batch decode of the same codes
    (reference_decode: codes [K, frames] -> waveform), past the codec transformer's window (Mimi: 250
    steps, 2 per frame; Qwen3-TTS's 12 Hz codec: 72 frames)."""
    k = rt.rt["num_codebooks"]
    codes = np.random.default_rng(0).integers(0, codebook_size, (frames, k))
    ref = reference_decode(codes.T)
    scale, fs = float(np.abs(ref).max()), rt.rt["frame_size"]
    rows = {}
    for chunk in CHUNKS:
        codec = CodecStream(rt.graphs)
        got = np.concatenate([codec.decode(codes[i:i + chunk]) for i in range(0, frames, chunk)])
        diff = np.abs(got.astype(np.float64) - ref)
        rows[str(chunk)] = {"max_abs": float(diff.max()), "rel": float(diff.max()) / scale, "calls": codec.calls,
                            "max_abs_per_frame": [float(diff[i * fs:(i + 1) * fs].max()) for i in range(frames)]}
    worst = max(r["rel"] for r in rows.values())
    return {"frames": frames, "scale": scale, "allowed_rel": STREAM_RTOL, "worst_rel": worst,
            "ok": bool(worst <= STREAM_RTOL), "chunks": rows}


def join_case(rt: Runtime, frames_per_utterance: int = 8) -> dict:
    """Long text in consecutive utterances, one Mimi stream throughout. The step across each join
    (|x[j] - x[j-1]|) must be no larger than the largest step inside the utterances; restarting the
    codec at the join instead is measured beside it."""
    speech = Speech(rt, long_text(rt, frames_per_utterance), max_frames=frames_per_utterance, chunk_frames=3)
    wave = np.concatenate(list(speech))
    fs = rt.rt["frame_size"]
    joins, offset = [], 0
    for u in speech.utterances[:-1]:
        offset += u["frames"] * fs
        joins.append(offset)
    step = np.abs(np.diff(wave.astype(np.float64)))
    at_join = [float(step[j - 1]) for j in joins]
    inside = np.delete(step, [j - 1 for j in joins])
    reset = _reset_jumps(rt, speech)
    return {"utterances": len(speech.utterances), "joins": len(joins),
            "join_step_max": max(at_join) if at_join else None, "inside_step_max": float(inside.max()),
            "inside_step_p99": float(np.percentile(inside, 99)), "reset_join_step_max": reset,
            "ok": bool(at_join) and max(at_join) <= float(inside.max())}


def long_text(rt: Runtime, frames: int) -> str:
    """LONG_TEXT repeated until it no longer fits one utterance of this model's context."""
    text = LONG_TEXT
    while rt.prompts.build([Utterance(text)])[0].shape[1] + frames <= rt.rt["max_positions"]:
        text = f"{text} {LONG_TEXT}"
    return text


def _reset_jumps(rt: Runtime, speech: Speech) -> float | None:
    """The same codes decoded with a fresh codec state per utterance (what carrying the state avoids)."""
    steps = []
    prev = None
    for u in speech.utterances:
        codes = np.stack(speech.codes[u["first_frame"]:u["first_frame"] + u["frames"]])
        w = CodecStream(rt.graphs).decode(codes)
        if prev is not None:
            steps.append(abs(float(w[0]) - float(prev)))
        prev = w[-1]
    return max(steps) if steps else None


def same(case: dict) -> str:
    """A compare_codes result in words."""
    return "identical" if case["identical"] else f"DIFFER at frame {case['first_mismatch_frame']}"


def stream_decode_row(sd: dict) -> ParityRow:
    chunks = ", ".join(f"{c}: {v['rel']:.1e}" for c, v in sd["chunks"].items())
    return ParityRow("stream_decode", sd["ok"], f"streaming decode vs batch, {sd['frames']} frames, relative error "
                     f"per chunk size {chunks} (allowed {sd['allowed_rel']:.0e})", sd,
                     f"streaming decode: relative error {sd['worst_rel']:.3g} > {sd['allowed_rel']}")


def join_row(j: dict) -> ParityRow:
    def g(x):
        return "n/a" if x is None else f"{x:.3g}"

    return ParityRow("joins", j["ok"], f"{j['joins']} utterance joins: largest sample step at a join / inside / "
                     f"with codec reset {g(j['join_step_max'])} / {g(j['inside_step_max'])} / "
                     f"{g(j['reset_join_step_max'])}", j,
                     f"utterance join: step {j['join_step_max']} > largest step inside {j['inside_step_max']}")
