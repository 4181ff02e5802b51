"""SNAC 24 kHz (the `snac` package, hubertsiuzdak/snac_24khz) as Orpheus's codec: loading, a tiny
random config for tests, and the decoder in PyTorch with its noise as an explicit input.

SNAC's decoder adds `randn * conv1x1(x)` after each upsampling (NoiseBlock), so the package's decode is
random. Here each block's Gaussian noise [B, 1, T_i] is an argument: the same noise gives the package's
output (its NoiseBlock.forward with torch.randn replaced), and the runtime draws it from the request's
seed, so speech is reproducible. Noise lengths per frame are the decoder's upsampled lengths:
4 latent steps per frame (L0's stride) x the rates so far (24 kHz: 32, 256, 1024, 2048).

Frames arrive as the LM writes them, [B, 7, F] codes in in-frame order; `levels` redistributes them
to SNAC's three levels with the layout's position -> level map.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch
from torch import nn

from voxport.errors import CheckpointError
from voxport.exporter.families.orpheus.layout import LEVELS

# hubertsiuzdak/snac_24khz's config.json
FULL_SNAC = dict(sampling_rate=24000, encoder_dim=48, encoder_rates=[2, 4, 8, 8], decoder_dim=1024,
                 decoder_rates=[8, 8, 4, 2], attn_window_size=None, codebook_size=4096, codebook_dim=8,
                 vq_strides=[4, 2, 1], noise=True, depthwise=True)
# the same strides and hop (2,048 samples a frame), narrow channels and 256 codes
TINY_SNAC = {**FULL_SNAC, "encoder_dim": 8, "decoder_dim": 64, "codebook_size": 256}
SNAC_DIR = "snac"  # the codec's folder inside an Orpheus checkpoint directory


def build_snac(config: dict, seed: int):
    from snac import SNAC

    torch.manual_seed(seed)
    snac = SNAC(**config).eval()
    snac.config = dict(config)  # for `folded` (the package keeps no copy of its config)
    return snac


def randomize(snac, seed: int):
    """Snake's alphas start at 1 for every channel; a spread tests that each channel keeps its own."""
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in snac.named_parameters():
            if name.endswith("alpha"):
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
    return snac


def save(snac, config: dict, out: Path) -> None:
    """The hub layout: config.json + pytorch_model.bin (what SNAC.from_pretrained reads)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    torch.save(snac.state_dict(), out / "pytorch_model.bin")


def check_dir(path: Path) -> None:
    d = path / SNAC_DIR
    for need in ("config.json", "pytorch_model.bin"):
        if not (d / need).is_file():
            raise CheckpointError(f"{path}: no {SNAC_DIR}/{need}; put hubertsiuzdak/snac_24khz's config.json and "
                                  f"pytorch_model.bin in {d}")


def load(path: Path):
    from snac import SNAC

    d = Path(path) / SNAC_DIR
    snac = SNAC.from_pretrained(str(d)).float().eval()
    snac.config = json.loads((d / "config.json").read_text())
    return snac


def samples_per_frame(snac) -> int:
    return int(snac.hop_length) * int(snac.vq_strides[0])


def noise_per_frame(snac) -> list[int]:
    """Noise length per frame of each NoiseBlock, in decoder order."""
    steps, out = int(snac.vq_strides[0]), []
    for block in _blocks(snac):
        steps *= int(block.block[1].stride[0])
        if _noise(block) is not None:
            out.append(steps)
    return out


def _blocks(snac) -> list:
    return [m for m in snac.decoder.model if type(m).__name__ == "DecoderBlock"]


def _noise(block):
    return next((m for m in block.block if type(m).__name__ == "NoiseBlock"), None)


def levels(codes: torch.Tensor) -> list[torch.Tensor]:
    """[B, 7, F] frames -> SNAC's three levels [B, F], [B, 2F], [B, 4F] (positions in frame order)."""
    b, _, f = codes.shape
    out = []
    for level in range(max(LEVELS) + 1):
        pos = [p for p, lv in enumerate(LEVELS) if lv == level]
        out.append(codes[:, pos, :].transpose(1, 2).reshape(b, len(pos) * f))
    return out


def snake(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The package's snake (a TorchScript function there, which torch.export does not trace)."""
    return x + (alpha + 1e-9).reciprocal() * torch.sin(alpha * x).pow(2)


def _run(module: nn.Module, x: torch.Tensor, noise: list[torch.Tensor]) -> torch.Tensor:
    """SNAC's decoder modules, in order, with NoiseBlocks taking the next given noise tensor."""
    kind = type(module).__name__
    if kind == "Sequential":
        for m in module:
            x = _run(m, x, noise)
        return x
    if kind == "DecoderBlock":
        return _run(module.block, x, noise)
    if kind == "NoiseBlock":
        return x + noise.pop(0) * module.linear(x)
    if kind == "Snake1d":
        return snake(x, module.alpha)
    if kind == "ResidualUnit":
        y = _run(module.block, x, noise)
        pad = (x.shape[-1] - y.shape[-1]) // 2
        return (x[..., pad:-pad] if pad > 0 else x) + y
    return module(x)  # convs (weight norm folded or not), Tanh


def split_noise(snac, noise: torch.Tensor) -> list[torch.Tensor]:
    """Per-frame noise [B, F, sum(noise_per_frame)] -> each NoiseBlock's [B, 1, F * n] (frame-major, so a
    frame's noise is the same slice of the sequence whatever window it is decoded in)."""
    b, f, _ = noise.shape
    parts = torch.split(noise, noise_per_frame(snac), dim=-1)
    return [p.reshape(b, 1, -1) for p in parts]


def decode(snac, codes: torch.Tensor, noise: torch.Tensor, latent_mask: torch.Tensor | None = None) -> torch.Tensor:
    """[B, 7, F] frames + noise [B, F, sum(noise_per_frame)] -> audio [B, 1, F * 2048]. latent_mask
    [B, 1, 4F] (1 keep, 0 zero) blanks latent steps (an empty streaming context)."""
    z = snac.quantizer.from_codes(levels(codes))
    if latent_mask is not None:
        z = z * latent_mask
    return _run(snac.decoder.model, z, split_noise(snac, noise))


@contextlib.contextmanager
def given_noise(snac, noise: torch.Tensor):
    """The package's own decoder with this per-frame noise in place of torch.randn (the parity reference)."""
    blocks = [_noise(b) for b in _blocks(snac)]
    queue = split_noise(snac, noise)

    def forward(self, x):
        return x + queue.pop(0) * self.linear(x)

    for nb in blocks:
        nb.forward = forward.__get__(nb)
    try:
        yield
    finally:
        for nb in blocks:
            del nb.forward


def folded(snac):
    """A copy with weight norm folded into plain weights (export: the graph holds one weight per conv;
    equal to the package's decode to float rounding). Rebuilt from the config: deepcopy of weight-norm
    parametrizations loses their originals."""
    from snac import SNAC
    from torch.nn.utils import parametrize

    copy = SNAC(**snac.config).eval()
    copy.load_state_dict(snac.state_dict())
    copy.config = snac.config
    for m in copy.modules():
        if parametrize.is_parametrized(m):
            for name in list(m.parametrizations):
                parametrize.remove_parametrizations(m, name, leave_parametrized=True)
    return copy
