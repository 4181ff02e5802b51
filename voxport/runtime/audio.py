"""Reference audio in (any common format -> mono 24 kHz float32), WAV out."""

from __future__ import annotations

import contextlib
import io
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from voxport.errors import InputError
from voxport.fsutil import AtomicFile, atomic_file

MIN_SECONDS = 0.5
MAX_CHANNELS = 8  # 7.1 surround; a reference clip is a voice, mixed to mono
MAX_RATE = 384_000  # the highest rate audio interfaces record
BLOCK_SECONDS = 1.0  # decoded at a time: 1 s of 8-channel 384 kHz float32 is 12 MB
SILENCE_RMS = 1e-4
WRITABLE = ("WAV", "FLAC", "OGG", "MP3")  # named in errors; output_format() probes the real list


def read_reference(path: Path, sample_rate: int, max_seconds: float) -> np.ndarray:
    """A reference clip (any format libsndfile reads) -> mono float32 at `sample_rate`, for both
    `voxport speak --ref-audio` and the API's voice upload. Its header (duration, channels, rate) is
    checked before any audio is decoded, and decoding goes in blocks of BLOCK_SECONDS, mixed to
    mono as it goes, stopping once past `max_seconds` whatever the header said: memory stays at
    about the mono clip's size, whatever the file claims (a 62 KB FLAC can hold minutes of
    8-channel 192 kHz audio, 18 GB as float32)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: reference audio not found")
    try:
        info = sf.info(str(path))
    except Exception as e:  # noqa: BLE001 - libsndfile's errors mean "not audio it reads"
        raise _unreadable(path, e) from None
    if not (1 <= info.channels <= MAX_CHANNELS and 1 <= info.samplerate <= MAX_RATE):
        raise InputError(f"{path}: {info.channels} channels at {info.samplerate} Hz; reference audio must have "
                         f"1-{MAX_CHANNELS} channels at up to {MAX_RATE} Hz")
    if 0 < info.frames < 2 ** 62:  # a length the header states (some formats state none)
        _check_seconds(path, info.frames / info.samplerate, max_seconds)
    limit = int(max_seconds * info.samplerate) + 1  # decoded frames past this: refused, header or not
    block = max(1, int(BLOCK_SECONDS * info.samplerate))
    mono, total = [], 0
    try:
        with sf.SoundFile(str(path)) as f:
            while total <= limit:
                data = f.read(min(block, limit + 1 - total), dtype="float32", always_2d=True)
                if not len(data):
                    break
                mono.append(data.mean(axis=1, dtype=np.float32))
                total += len(data)
    except Exception as e:  # noqa: BLE001
        raise _unreadable(path, e) from None
    if total > limit:
        raise InputError(f"{path}: reference audio is over {max_seconds:.1f} s; at most {max_seconds:.1f} s fits "
                         "this model's context with room to speak")
    wave = np.concatenate(mono) if mono else np.zeros(0, np.float32)
    _check_seconds(path, len(wave) / info.samplerate, max_seconds)
    if info.samplerate != sample_rate:
        wave = soxr.resample(wave, info.samplerate, sample_rate, quality="HQ").astype(np.float32)
    if float(np.sqrt(np.mean(wave.astype(np.float64) ** 2))) < SILENCE_RMS:
        raise InputError(f"{path}: reference audio is silent (RMS below {SILENCE_RMS})")
    return wave


def _check_seconds(path: Path, seconds: float, max_seconds: float) -> None:
    if seconds < MIN_SECONDS:
        raise InputError(f"{path}: reference audio is {seconds:.2f} s; at least {MIN_SECONDS} s is needed")
    if seconds > max_seconds:
        raise InputError(f"{path}: reference audio is {seconds:.1f} s; at most {max_seconds:.1f} s fits this "
                         "model's context with room to speak")


def _unreadable(path: Path, e: Exception) -> InputError:
    formats = ", ".join(sorted(sf.available_formats()))
    first = (str(e).splitlines() or [type(e).__name__])[0][:120]
    return InputError(f"{path}: cannot read audio ({first}); accepted formats: {formats}")


def subtype_for(fmt: str) -> str:
    """16-bit PCM where the container takes it (WAV, FLAC, ...), else the format's own codec (OGG, MP3)."""
    return "PCM_16" if sf.check_format(fmt, "PCM_16") else sf.default_subtype(fmt)


def output_format(path: Path) -> str:
    """The soundfile format that a file name asks for (by extension); InputError when it cannot write it.
    Probed by opening a writer on a memory buffer: some listed formats only read."""
    fmt = Path(path).suffix.lstrip(".").upper()
    if fmt in sf.available_formats():
        try:
            sf.SoundFile(io.BytesIO(), "w", 24000, 1, format=fmt, subtype=subtype_for(fmt)).close()
            return fmt
        except Exception:
            pass
    ok = ", ".join(f".{f.lower()}" for f in WRITABLE)
    raise InputError(f"{path}: cannot write audio with extension {Path(path).suffix or '(none)'!r}; use one of {ok}")


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write audio in the format the file name asks for (16-bit PCM WAV for .wav), beside the target
    and renamed over it at the end: a failure leaves an existing file as it was."""
    fmt = Path(path).suffix.lstrip(".").upper() or "WAV"
    with atomic_file(Path(path)) as f:
        sf.write(f, np.asarray(audio, dtype=np.float32).reshape(-1), sample_rate, format=fmt,
                 subtype=subtype_for(fmt))


def pcm16(pcm: np.ndarray) -> bytes:
    """float32 -> 16-bit little-endian bytes as libsndfile makes them for a PCM_16 WAV (to 32 bits,
    rounded, then the top 16: floor(x * 32768)), so raw PCM equals the WAV's samples. Measured on
    1e6 uniform samples: 0 differ; rint(x * 32768) differs in 50% of them by one step."""
    wide = np.clip(np.rint(np.asarray(pcm, np.float64).reshape(-1) * 2.0 ** 31), -2.0 ** 31, 2.0 ** 31 - 1)
    return np.floor_divide(wide, 65536).astype("<i2").tobytes()


def wav_stream_header(sample_rate: int) -> bytes:
    """A 16-bit mono WAV header for a stream whose length is not known yet: the RIFF and data sizes
    are the maximum (0xFFFFFFFF), which players read as "until the end of the stream"."""
    return (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate,
            sample_rate * 2, 2, 16) + b"data" + struct.pack("<I", 0xFFFFFFFF))


class PcmSink:
    """Where streamed audio goes: a file written progressively beside its target (`.NAME.*.partial`,
    renamed over the target by close(), removed by abort(): a failed run leaves an existing file as it
    was), or raw 16-bit little-endian mono PCM on a binary stream (`-o -`: stdout)."""

    def __init__(self, target, sample_rate: int):
        self.raw = target if hasattr(target, "write") else None
        self.file = self.wav = None
        if self.raw is None:
            fmt = Path(target).suffix.lstrip(".").upper() or "WAV"
            self.file = AtomicFile(Path(target))
            try:
                self.wav = sf.SoundFile(self.file, "w", sample_rate, 1, format=fmt, subtype=subtype_for(fmt))
            except BaseException:
                self.abort()
                raise

    def write(self, pcm: np.ndarray) -> None:
        if self.raw is not None:  # BrokenPipeError propagates: the caller stops generating
            self.raw.write(pcm16(pcm))  # so stdout equals the WAV
            self.raw.flush()
        else:
            try:
                self.wav.write(np.asarray(pcm, np.float32))
            except Exception:  # soundfile reports a short write its own way; the cause is the file's
                self.file.raise_error()
                raise
            self.file.raise_error()

    def close(self) -> None:
        """The audio is complete: put the file in place (OutputError when it could not be written)."""
        if self.file is not None:
            try:
                self.wav.close()
            except Exception:
                self.file.discard()
                self.file.raise_error()
                raise
            self.file.commit()

    def abort(self) -> None:
        """The run failed: remove the partial file; the target stays as it was."""
        if self.file is not None:
            if self.wav is not None and not self.wav.closed:
                with contextlib.suppress(Exception):
                    self.wav.close()
            self.file.discard()
