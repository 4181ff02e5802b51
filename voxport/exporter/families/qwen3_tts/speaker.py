"""Qwen3-TTS Base's speaker encoder as one graph: 24 kHz mono waveform -> x-vector, log-mel included.

The reference (Qwen3TTSForConditionalGeneration.extract_speaker_embedding) computes a log-mel
spectrogram with torch.stft and feeds it to its ECAPA-TDNN (model.speaker_encoder). Here the front
end is written with plain ops so the graph is Pad + Conv + Mul/Add/Sqrt + MatMul + Log, which every
onnxruntime backend (web included) runs: the STFT is a strided Conv1d whose 2 x (n_fft/2 + 1)
filters are the Hann-windowed DFT basis (cos, sin), the mel filterbank a constant MatMul. Then the
reference's own speaker encoder module, with its weights.

What the reference computes, and this reproduces: reflect padding of (n_fft - hop) / 2 samples on
each side, frames of n_fft samples every hop samples with no further padding (center=False), a
periodic Hann window of win = n_fft samples, magnitude sqrt(re^2 + im^2 + 1e-9), librosa's slaney mel
filterbank (fmin 0, fmax 12 kHz), log(max(mel, 1e-5)). Frames: samples // hop.

Shortest input: the reflect paddings need more samples / frames than they pad. The encoder's widest
reflect padding is 4 frames (kernel 3, dilation 4), so at least 5 frames: MIN_SAMPLES = 5 * hop.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

# extract_speaker_embedding's fixed arguments (the reference asserts 24 kHz input)
SAMPLE_RATE, N_FFT, HOP, WIN, N_MELS, FMIN, FMAX = 24000, 1024, 256, 1024, 128, 0, 12000


def min_samples(encoder_config) -> int:
    """Fewest samples the graph (and the reference) accepts: every reflect padding needs a longer input."""
    widest = max(d * (k - 1) // 2 for k, d in zip(encoder_config.enc_kernel_sizes, encoder_config.enc_dilations))
    return max(widest + 1, 2) * HOP


class LogMel(nn.Module):
    """[B, samples] -> [B, frames, n_mels] log-mel, as the reference's mel_spectrogram(...).transpose(1, 2)."""

    def __init__(self, n_fft=N_FFT, hop=HOP, win=WIN, n_mels=N_MELS, sample_rate=SAMPLE_RATE, fmin=FMIN, fmax=FMAX):
        super().__init__()
        from librosa.filters import mel as librosa_mel  # the filterbank the reference uses

        if win != n_fft:
            raise ValueError("the reference uses win == n_fft (torch.stft would centre a shorter window)")
        self.n_fft, self.hop, self.bins = n_fft, hop, n_fft // 2 + 1
        # basis in float64, rounded once: cos and -sin of 2 pi k n / N, times the periodic Hann window
        n = torch.arange(n_fft, dtype=torch.float64)
        k = torch.arange(self.bins, dtype=torch.float64)
        angle = 2 * math.pi * torch.outer(k, n) / n_fft
        window = torch.hann_window(win, periodic=True, dtype=torch.float64)
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window  # [2 * bins, n_fft]
        self.register_buffer("dft", basis.unsqueeze(1).float(), persistent=False)  # Conv1d weight [2F, 1, N]
        fb = librosa_mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)  # [n_mels, bins]
        self.register_buffer("mel_basis", torch.from_numpy(fb).float().t().contiguous(), persistent=False)

    def forward(self, waveform):
        pad = (self.n_fft - self.hop) // 2
        x = F.pad(waveform.unsqueeze(1), (pad, pad), mode="reflect")  # [B, 1, samples + 2 pad]
        spec = F.conv1d(x, self.dft, stride=self.hop)  # [B, 2F, frames]
        re, im = spec[:, : self.bins], spec[:, self.bins:]
        magnitude = torch.sqrt(re * re + im * im + 1e-9)
        mel = torch.matmul(magnitude.transpose(1, 2), self.mel_basis)  # [B, frames, n_mels]
        return torch.log(torch.clamp(mel, min=1e-5))


class SpeakerEncode(nn.Module):
    """input_values [1, samples] (24 kHz mono, resampled as the reference does, librosa.resample) ->
    speaker_embedding [1, D]: extract_speaker_embedding's x-vector, with a batch axis."""

    def __init__(self, model):
        super().__init__()
        if model.speaker_encoder is None:
            raise ValueError("only Base checkpoints have a speaker encoder")
        if model.config.speaker_encoder_config.mel_dim != N_MELS:
            raise ValueError(f"speaker encoder mel_dim {model.config.speaker_encoder_config.mel_dim} != {N_MELS}")
        self.mel = LogMel()
        self.encoder = model.speaker_encoder

    def forward(self, input_values):
        return self.encoder(self.mel(input_values))
