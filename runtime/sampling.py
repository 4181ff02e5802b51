"""Token choice from logits: greedy, or temperature + top-k with a seeded numpy generator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voxport.errors import InputError


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0  # 0: greedy
    top_k: int = 0  # 0: whole vocabulary

    def validate(self, vocab: int) -> None:
        if not np.isfinite(self.temperature) or self.temperature < 0:
            raise InputError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k < 0 or self.top_k > vocab:
            raise InputError(f"top-k must be between 1 and the codebook vocabulary {vocab} (0 = all), got {self.top_k}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1


def choose(logits: np.ndarray, s: Sampling, rng: np.random.Generator) -> np.ndarray:
    """logits [B, V] -> token ids [B]."""
    if s.greedy:
        return logits.argmax(-1).astype(np.int64)
    x = logits.astype(np.float64) / s.temperature
    if s.top_k:
        kth = np.partition(x, -s.top_k, axis=-1)[:, -s.top_k][:, None]
        x = np.where(x < kth, -np.inf, x)
    p = np.exp(x - x.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.array([rng.choice(p.shape[-1], p=row) for row in p], dtype=np.int64)
