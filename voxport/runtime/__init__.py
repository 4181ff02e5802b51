"""The reference runtime: onnxruntime + numpy + tokenizers + soundfile. Never imports torch.

It knows no model family: what it runs, and how, comes from the manifest's generation contract."""

from __future__ import annotations

from pathlib import Path


def open_runtime(artifact_dir: Path, dtype: str = "fp32", threads: int = 0, context: int | None = None,
                 codec_threads: int | None = None):
    from voxport.runtime.runtime import Runtime

    return Runtime(Path(artifact_dir), dtype=dtype, threads=threads, context=context, codec_threads=codec_threads)
