"""Token choice from logits: greedy, or Gumbel-max over top-k- and top-p-masked logits / temperature.

The randomness is an explicit array of uniforms (one per logit), drawn per frame from a seeded
numpy generator. The fused frame graph takes the same array as its `noise` input and does the same
arithmetic (voxport/exporter/families/csm/frame.py), so the step loop, the fused graph and a PyTorch run
fed the same noise draw the same codes. Gumbel-max samples exactly softmax(masked logits / T).

The masks follow transformers' warper order (temperature, top-k, top-p): top-p keeps the fewest
highest-probability ids, ranked by softmax(top-k logits / T), whose probability reaches p; an id is
kept when the probability of the ids ranked above it is below p (the same set as TopPLogitsWarper
keeps). p = 1 masks nothing: the arithmetic is skipped, so rounding at the tail cannot drop an id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voxport.errors import InputError


@dataclass(frozen=True)
class Sampling:
    """A request's settings. Sampling() is greedy; None in a field means the model's own default for
    each sampling group, which only the manifest's contract knows (FrameContract.resolve)."""

    temperature: float | None = 0.0  # 0: greedy
    top_k: int | None = 1  # 1..vocab; 1 is greedy too
    # where the manifest declares one (generation.frame.logits); None: the model's own default
    repetition_penalty: float | None = None
    top_p: float | None = None  # (0, 1]; None: each sampling group's default (the model's), else 1

    def validate(self, vocab: int) -> None:
        if self.temperature is not None and (not np.isfinite(self.temperature) or self.temperature < 0):
            raise InputError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k is not None and (int(self.top_k) != self.top_k or not 1 <= self.top_k <= vocab):
            raise InputError(f"top-k must be between 1 and the codebook vocabulary {vocab}, got {self.top_k}")
        p = self.repetition_penalty
        if p is not None and not (np.isfinite(p) and p > 0):
            raise InputError(f"repetition penalty must be > 0 (1 = none), got {p}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise InputError(f"top-p must be in (0, 1] (1 = none), got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1


def draw_noise(rng: np.random.Generator, codebooks: int, vocab: int) -> np.ndarray:
    """Uniforms for one frame, [1, codebooks, vocab] float32."""
    return rng.random((1, codebooks, vocab), dtype=np.float32)


def choose(logits: np.ndarray, s: Sampling, noise: np.ndarray, top_p: float = 1.0) -> np.ndarray:
    """logits [B, V], noise [B, V] uniforms -> token ids [B] (float32 arithmetic, as in the graph).
    top_p: the value in force (Sampling.top_p resolved against the sampling group's default)."""
    logits = logits.astype(np.float32)
    if s.temperature == 0:
        return logits.argmax(-1).astype(np.int64)
    kth = -np.sort(-logits, axis=-1)[:, s.top_k - 1: s.top_k]
    kept = np.where(logits >= kth, logits, np.float32(-np.inf))
    u = np.clip(noise, np.float32(1e-20), np.float32(1.0 - 1e-7))
    gumbel = -np.log(-np.log(u))
    scaled = kept / np.float32(max(s.temperature, 1e-6))
    if top_p < 1:
        scaled = np.where(top_p_keep(scaled, np.float32(top_p)), scaled, np.float32(-np.inf))
    return (scaled + gumbel).argmax(-1).astype(np.int64)


def top_p_keep(scaled: np.ndarray, top_p: np.float32) -> np.ndarray:
    """[B, V] bool: ids whose higher-ranked ids' probability (an exclusive cumulative sum of the softmax,
    in descending order) is below top_p."""
    order = np.argsort(-scaled, axis=-1, kind="stable")
    ranked = np.take_along_axis(scaled, order, -1)
    e = np.exp(ranked - ranked[:, :1])
    p = e / e.sum(-1, keepdims=True, dtype=np.float32)
    above = np.zeros_like(p)  # an exclusive cumulative sum, as ONNX CumSum(exclusive=1)
    above[:, 1:] = np.cumsum(p[:, :-1], axis=-1, dtype=np.float32)
    keep = np.empty_like(above, dtype=bool)
    np.put_along_axis(keep, order, above < top_p, -1)
    return keep
