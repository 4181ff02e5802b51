"""Built-in models with random weights, from every family: tiny ones for tests, full-size dimensions
for benchmarks. A preset is materialised once as a real checkpoint directory in its family's released
layout, so presets, local checkpoints and hub checkpoints all load through one path."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from voxport import __version__


def all_presets() -> dict:
    """name -> (family class, preset), over every registered family."""
    from voxport.exporter.families import families

    out = {}
    for fam in families():
        for name, preset in fam.presets.items():
            out[name] = (fam, preset)
    return out


def fingerprint(preset) -> str:
    blob = json.dumps([preset.__dict__, __version__], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def materialize(name: str, cache_root: Path | None = None) -> Path:
    """The checkpoint directory of a preset, built once (seeded, so identical every time)."""
    fam, preset = all_presets()[name]
    from voxport.fsutil import cache_root as default_root

    root = Path(cache_root or default_root())
    out = root / "presets" / f"{name}-{fingerprint(preset)}"
    if (out / ".complete").exists():
        return out
    from voxport.fsutil import atomic_dir

    with atomic_dir(out) as tmp:
        fam.build_preset(preset, tmp)
        (tmp / ".complete").write_text(name)
    return out
