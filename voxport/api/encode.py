"""Audio out of the API: float32 PCM chunks -> bytes of one response format, as they come.

- pcm: raw 16-bit little-endian mono, and wav: the same after a header whose sizes are the maximum
  (voxport/runtime/audio.py, the code of `voxport speak -o -`): both stream per chunk.
- opus (Ogg): libsndfile writes to our buffer as it goes; it releases an Ogg page about once a
  second (measured: every 12-13 frames of 80 ms), so opus streams in ~1 s steps.
- flac, mp3: encoded as they come but sent when the utterance ends: libsndfile rewrites their headers
  at close (FLAC STREAMINFO, the MP3 Xing frame), and what was sent before that rewrite does not
  decode with libsndfile (measured: FLAC unreadable; MP3 48888 of 288000 samples).
- aac: libsndfile has no encoder.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from voxport.runtime.audio import pcm16, wav_stream_header

# response_format -> (soundfile format, subtype, media type, streams per chunk)
SOUNDFILE = {"opus": ("OGG", "OPUS", "audio/ogg", True), "flac": ("FLAC", "PCM_16", "audio/flac", False),
             "mp3": ("MP3", "MPEG_LAYER_III", "audio/mpeg", False)}
OPENAI_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")


def formats() -> list[str]:
    """The response formats this machine's libsndfile can make, in OpenAI's order."""
    have = {"wav", "pcm"} | {k for k, (f, s, _, _) in SOUNDFILE.items() if sf.check_format(f, s)}
    return [f for f in OPENAI_FORMATS if f in have]


def media_type(fmt: str) -> str:
    return {"pcm": "audio/pcm", "wav": "audio/wav"}.get(fmt) or SOUNDFILE[fmt][2]


class _Tap(io.RawIOBase):
    """A seekable in-memory file for libsndfile; `take()` returns what was appended since last time.
    Rewrites of bytes already taken (header fix-ups at close) are dropped: the formats that need them
    are only taken at the end."""

    def __init__(self):
        super().__init__()
        self.buf, self.pos, self.sent = bytearray(), 0, 0

    def readable(self):
        return True

    def writable(self):
        return True

    def seekable(self):
        return True

    def write(self, b) -> int:
        b = bytes(b)
        self.buf[self.pos:self.pos + len(b)] = b
        self.pos += len(b)
        return len(b)

    def read(self, n: int = -1) -> bytes:
        end = len(self.buf) if n is None or n < 0 else self.pos + n
        data = bytes(self.buf[self.pos:end])
        self.pos += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset if whence == 0 else self.pos + offset if whence == 1 else len(self.buf) + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def take(self) -> bytes:
        data = bytes(self.buf[self.sent:])
        self.sent = len(self.buf)
        return data


class Encoder:
    def __init__(self, fmt: str, sample_rate: int):
        self.fmt, self.sample_rate = fmt, sample_rate
        self.file = self.tap = None
        if fmt in SOUNDFILE:
            kind, subtype, _, self.streams = SOUNDFILE[fmt]
            self.tap = _Tap()
            self.file = sf.SoundFile(self.tap, "w", sample_rate, 1, format=kind, subtype=subtype)
        else:
            self.streams = True

    def start(self) -> bytes:
        return wav_stream_header(self.sample_rate) if self.fmt == "wav" else b""

    def feed(self, pcm: np.ndarray) -> bytes:
        if self.file is None:
            return pcm16(pcm)
        # the int16 samples of pcm/wav, so FLAC decodes to exactly them (from float, libsndfile's
        # FLAC path rounds differently: one step off in about half the samples)
        self.file.write(np.frombuffer(pcm16(pcm), "<i2"))
        if not self.streams:
            return b""
        self.file.flush()
        return self.tap.take()

    def finish(self) -> bytes:
        if self.file is None:
            return b""
        self.file.close()
        return bytes(self.tap.buf) if not self.streams else self.tap.take()

    def close(self) -> None:
        """Abandon (client gone): release libsndfile's handle without caring for the bytes."""
        if self.file is not None and not self.file.closed:
            self.file.close()
