"""The reference every ratio is taken against: the family's own PyTorch `generate` (transformers' for
CSM, qwen-tts-hf's for Qwen3-TTS) for the model the artifacts were exported from, greedy, eager, the
same text and frame count as voxport (Family.reference_generate)."""

from __future__ import annotations

import time

from voxport.bench.configs import TEN_WORDS


def run(artifact_dir, frames: int, threads: int, device: str) -> dict:
    import torch
    from transformers.utils import logging

    logging.set_verbosity_error()  # per-run notices (unsupported stopping criteria) and load progress bars
    logging.disable_progress_bar()

    from voxport.exporter import checkpoint
    from voxport.validation.harness import source_checkpoint
    from voxport import manifest as mf

    if threads:
        torch.set_num_threads(threads)
    ckpt = source_checkpoint(mf.load(artifact_dir))
    t = time.perf_counter()
    model, family_cls = checkpoint.load(ckpt, device)
    load_s = time.perf_counter() - t
    family = family_cls(model, ckpt.path)
    family.reference_generate(TEN_WORDS, 3, device)  # warm-up
    codes, frame_s, decode = family.reference_generate(TEN_WORDS, frames, device)
    with torch.no_grad():
        decode(codes[:2])  # warm-up
        t = time.perf_counter()
        decode(codes[:1])
        _sync(device)
        codec_one = time.perf_counter() - t
        t = time.perf_counter()
        decode(codes)
        _sync(device)
        codec_all = time.perf_counter() - t
    return {"codes": codes.tolist(), "frame_s": frame_s, "load_s": load_s,
            # PyTorch has no streaming codec decoder: per frame is the batch decode of every frame / frames
            "codec_s_per_frame": codec_all / len(codes), "first_audio_s": frame_s[0] + codec_one}


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
