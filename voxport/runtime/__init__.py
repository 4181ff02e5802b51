"""The reference runtime: onnxruntime + numpy + tokenizers + soundfile. Never imports torch."""

from __future__ import annotations

import importlib
from pathlib import Path

# manifest "family" -> the runtime class that speaks it ("module:Class", imported on use)
RUNTIMES = {"csm": "voxport.runtime.csm:CsmRuntime"}


def runtime_class(manifest: dict, where: Path | str = ""):
    """The runtime class that speaks a manifest's family (its class attributes describe it unloaded)."""
    from voxport.errors import ArtifactError

    family = manifest.get("family")
    if family not in RUNTIMES:
        raise ArtifactError(f"{where}: family {family!r} has no runtime here (known: {', '.join(RUNTIMES)})")
    module, cls = RUNTIMES[family].split(":")
    return getattr(importlib.import_module(module), cls)


def open_runtime(artifact_dir: Path, dtype: str = "fp32", threads: int = 0):
    """The runtime for an artifact directory, picked by its manifest's family."""
    from voxport import manifest as mf

    cls = runtime_class(mf.load(Path(artifact_dir)), artifact_dir)
    return cls(Path(artifact_dir), dtype=dtype, threads=threads)
