"""End-to-end helpers every family's parity cases share: the test text, a voice-like reference
signal, and the per-frame comparison of two code sequences."""

from __future__ import annotations

import numpy as np


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
