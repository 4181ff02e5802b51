"""The Llama flavours the original CSM layout names in its config.json (Sesame's models.py, Marvis's
flavors.py): torchtune llama3_2 decoders, as data.

Every flavour uses torchtune's Llama3ScaledRoPE with base 500000 and scale factor 32 (its other
arguments at their defaults: low-frequency factor 1, high-frequency factor 4, old context 8192),
RMSNorm eps 1e-5, SiLU gated MLP, no biases, and a head size of embed_dim / num_heads."""

from __future__ import annotations

from dataclasses import dataclass

ROPE_BASE = 500_000
ROPE_SCALE = 32
ROPE_LOW_FREQ, ROPE_HIGH_FREQ, ROPE_OLD_CONTEXT = 1, 4, 8192
NORM_EPS = 1e-5


@dataclass(frozen=True)
class Flavor:
    layers: int
    embed_dim: int
    heads: int
    kv_heads: int
    intermediate: int
    max_seq_len: int = 2048

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.heads


FLAVORS: dict[str, Flavor] = {
    "llama-1B": Flavor(layers=16, embed_dim=2048, heads=32, kv_heads=8, intermediate=8192),
    "llama-250M": Flavor(layers=6, embed_dim=1536, heads=12, kv_heads=3, intermediate=8192),
    "llama-100M": Flavor(layers=4, embed_dim=1024, heads=8, kv_heads=2, intermediate=8192),
    "llama-60M": Flavor(layers=4, embed_dim=1024, heads=8, kv_heads=2, intermediate=4096),
    # voxport's own, for tests only (no released checkpoint names them): heads of 16, a multiple of 8 as
    # the fused frame graph's attention needs
    "voxport-tiny": Flavor(layers=2, embed_dim=64, heads=4, kv_heads=2, intermediate=128, max_seq_len=512),
    "voxport-tiny-decoder": Flavor(layers=2, embed_dim=32, heads=2, kv_heads=1, intermediate=64, max_seq_len=64),
}


def rope_parameters(max_positions: int) -> dict:
    """transformers' llama3 rope parameters equal to torchtune's scaled RoPE.

    transformers warns when original_max_position_embeddings >= max_position_embeddings (the depth
    decoder has 33 positions, torchtune's old context is 8192). The llama3 rule only uses
    old_context / low_factor, old_context / high_factor and (old_context / wavelength - low) /
    (high - low), all unchanged when the three are divided by one power of two (exact in floating
    point): divide them down below max_positions."""
    div = 1
    while ROPE_OLD_CONTEXT // div >= max_positions:
        div *= 2
    return {"rope_type": "llama3", "rope_theta": float(ROPE_BASE), "factor": float(ROPE_SCALE),
            "original_max_position_embeddings": ROPE_OLD_CONTEXT // div,
            "low_freq_factor": ROPE_LOW_FREQ / div, "high_freq_factor": ROPE_HIGH_FREQ / div}
