"""Reference audio in (any common format -> mono 24 kHz float32), WAV out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from voxport.errors import InputError

MIN_SECONDS = 0.5
SILENCE_RMS = 1e-4


def read_reference(path: Path, sample_rate: int, max_seconds: float) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: reference audio not found")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:
        formats = ", ".join(sorted(sf.available_formats()))
        raise InputError(f"{path}: cannot read audio ({str(e).splitlines()[0][:120]}); accepted formats: {formats}") from None
    mono = data.mean(axis=1)
    if sr != sample_rate:
        mono = soxr.resample(mono, sr, sample_rate, quality="HQ").astype(np.float32)
    seconds = mono.shape[0] / sample_rate
    if seconds < MIN_SECONDS:
        raise InputError(f"{path}: reference audio is {seconds:.2f} s; at least {MIN_SECONDS} s is needed")
    if seconds > max_seconds:
        raise InputError(f"{path}: reference audio is {seconds:.1f} s; at most {max_seconds:.1f} s fits this "
                         "model's context with room to speak")
    if float(np.sqrt(np.mean(mono ** 2))) < SILENCE_RMS:
        raise InputError(f"{path}: reference audio is silent (RMS below {SILENCE_RMS})")
    return mono


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    sf.write(str(path), np.asarray(audio, dtype=np.float32).reshape(-1), sample_rate, subtype="PCM_16")


class PcmSink:
    """Where streamed audio goes: a WAV file written progressively (its header is brought up to date
    after every chunk, so a reader sees the audio so far), or raw 16-bit little-endian mono PCM on a
    binary stream (`-o -`: stdout)."""

    def __init__(self, target, sample_rate: int):
        self.raw = target if hasattr(target, "write") else None
        self.wav = None if self.raw else sf.SoundFile(str(target), "w", sample_rate, 1, subtype="PCM_16")

    def write(self, pcm: np.ndarray) -> None:
        if self.raw is not None:  # BrokenPipeError propagates: the caller stops generating
            # libsndfile's float -> PCM_16 scaling (x 32768, clipped), so stdout equals the WAV
            pcm16 = np.clip(np.rint(np.asarray(pcm, np.float64) * 32768.0), -32768, 32767).astype("<i2")
            self.raw.write(pcm16.tobytes())
            self.raw.flush()
        else:
            self.wav.write(np.asarray(pcm, np.float32))
            self.wav.flush()

    def close(self) -> None:
        if self.wav is not None:
            self.wav.close()
