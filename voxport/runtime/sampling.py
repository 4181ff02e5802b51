"""Token choice from logits: greedy, or Gumbel-max over top-k-masked logits / temperature.

The randomness is an explicit array of uniforms (one per logit), drawn per frame from a seeded
numpy generator. The fused frame graph takes the same array as its `noise` input and does the same
arithmetic (voxport/exporter/families/csm/frame.py), so the step loop, the fused graph and a PyTorch run
fed the same noise draw the same codes. Gumbel-max samples exactly softmax(masked logits / T).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voxport.errors import InputError


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0  # 0: greedy
    top_k: int = 1  # 1..vocab; 1 is greedy too
    # where the manifest declares one (generation.frame.logits); None: the model's own default
    repetition_penalty: float | None = None

    def validate(self, vocab: int) -> None:
        if not np.isfinite(self.temperature) or self.temperature < 0:
            raise InputError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if int(self.top_k) != self.top_k or not 1 <= self.top_k <= vocab:
            raise InputError(f"top-k must be between 1 and the codebook vocabulary {vocab}, got {self.top_k}")
        p = self.repetition_penalty
        if p is not None and not (np.isfinite(p) and p > 0):
            raise InputError(f"repetition penalty must be > 0 (1 = none), got {p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1


def draw_noise(rng: np.random.Generator, codebooks: int, vocab: int) -> np.ndarray:
    """Uniforms for one frame, [1, codebooks, vocab] float32."""
    return rng.random((1, codebooks, vocab), dtype=np.float32)


def choose(logits: np.ndarray, s: Sampling, noise: np.ndarray) -> np.ndarray:
    """logits [B, V], noise [B, V] uniforms -> token ids [B] (float32 arithmetic, as in the graph)."""
    logits = logits.astype(np.float32)
    if s.temperature == 0:
        return logits.argmax(-1).astype(np.int64)
    kth = -np.sort(-logits, axis=-1)[:, s.top_k - 1: s.top_k]
    kept = np.where(logits >= kth, logits, np.float32(-np.inf))
    u = np.clip(noise, np.float32(1e-20), np.float32(1.0 - 1e-7))
    gumbel = -np.log(-np.log(u))
    scores = kept / np.float32(max(s.temperature, 1e-6)) + gumbel
    return scores.argmax(-1).astype(np.int64)
