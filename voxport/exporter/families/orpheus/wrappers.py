"""Export wrappers: plain tensors in, plain tensors out, on the reference modules (the LM's embedding
table; a SNAC copy with weight norm folded, which computes what the package computes to ~1e-7)."""

from __future__ import annotations

import torch
from torch import nn

from voxport.exporter.families.orpheus import codec


class Embed(nn.Module):
    """Prompt ids -> the LM's input embeddings."""

    def __init__(self, lm):
        super().__init__()
        self.table = lm.get_input_embeddings()

    def forward(self, input_ids):
        return self.table(input_ids)


class SnacDecode(nn.Module):
    """A whole utterance: frames [B, 7, F] + each NoiseBlock's noise -> audio [B, 1, F * 2048]."""

    def __init__(self, snac):
        super().__init__()
        self.snac = codec.folded(snac)

    def forward(self, audio_codes, codec_noise):
        return codec.decode(self.snac, audio_codes, codec_noise)


class SnacWindow(nn.Module):
    """canopy's streaming decode, one window: the last `frames` frames decoded, samples of frame `keep`
    returned (frames 4, keep 1: samples 2048:4096 of 28 tokens, as its decoder.py)."""

    def __init__(self, snac, frames: int = 4, keep: int = 1):
        super().__init__()
        self.snac = codec.folded(snac)
        self.frames, self.keep = frames, keep
        self.frame_size = codec.samples_per_frame(snac)

    def forward(self, audio_codes, codec_noise):
        audio = codec.decode(self.snac, audio_codes, codec_noise)
        return audio[..., self.keep * self.frame_size:(self.keep + 1) * self.frame_size]


class SnacStream(nn.Module):
    """Streaming decode with explicit state: the previous `context + lookahead` frames' codes and noise.

    Each call appends its n new frames to the state, decodes that window once and returns n frames of
    audio ending `lookahead` frames before the newest (each emitted frame has `context` frames before it
    and `lookahead` after it in the window). A code of -1 is an empty frame: its latent steps are zero
    (what the whole-utterance decode's convolutions see past either end). The state starts as all -1
    (stored +1, so the runtime's all-zero start state means empty); the runtime skips the first
    `lookahead` frames of output and flushes the end with `lookahead` empty frames. Each frame's noise
    is drawn once, when the frame arrives, and carried with its codes: every window decodes a frame with
    the same noise, as one whole-utterance decode would."""

    def __init__(self, snac, context: int, lookahead: int):
        super().__init__()
        self.snac = codec.folded(snac)
        self.context, self.lookahead = context, lookahead
        self.steps = int(snac.vq_strides[0])  # latent steps per frame
        self.frame_size = codec.samples_per_frame(snac)

    @property
    def held(self) -> int:
        return self.context + self.lookahead

    def forward(self, audio_codes, codec_noise, held_codes, held_noise):
        window = torch.cat([held_codes - 1, audio_codes], dim=-1)  # [B, 7, held + n], -1 = empty
        noise = torch.cat([held_noise, codec_noise], dim=1)  # [B, held + n, N]
        n = audio_codes.shape[-1]
        full = (window[:, :1] >= 0).to(torch.float32)  # [B, 1, frames]
        mask = full.repeat_interleave(self.steps, dim=-1)
        audio = codec.decode(self.snac, window.clamp(min=0), noise, mask)
        start = self.context * self.frame_size
        out = audio[..., start:start + n * self.frame_size]
        keep = window.shape[-1] - self.held
        return out, window[..., keep:] + 1, noise[:, keep:]
