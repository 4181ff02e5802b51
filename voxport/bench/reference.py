"""The reference every ratio is taken against: transformers' own `generate` for the model the
artifacts were exported from, greedy, PyTorch eager, the same prompt and frame count as voxport."""

from __future__ import annotations

import time

from voxport.bench.configs import TEN_WORDS


class _FrameClock:
    """A transformers streamer that only notes when each frame arrives. generate() puts the prompt
    first, then one [batch, K] tensor per frame."""

    def __init__(self):
        self.marks: list[float] = []

    def put(self, value):
        self.marks.append(time.perf_counter())

    def end(self):
        pass


def run(artifact_dir, frames: int, threads: int, device: str) -> dict:
    import torch
    from transformers import AutoProcessor
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
    model, _ = checkpoint.load(ckpt, device)
    load_s = time.perf_counter() - t
    processor = AutoProcessor.from_pretrained(ckpt.path)
    conv = [{"role": "0", "content": [{"type": "text", "text": TEN_WORDS}]}]
    inputs = processor.apply_chat_template(conv, tokenize=True, return_dict=True).to(device)

    def generate(n):
        clock = _FrameClock()
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=n, do_sample=False, depth_decoder_do_sample=False,
                                 streamer=clock)
        _sync(device)
        marks = [t0, *clock.marks[1:]]  # the first put is the prompt, not a frame
        return out[0].cpu().numpy(), [b - a for a, b in zip(marks, marks[1:])]

    generate(3)  # warm-up
    codes, frame_s = generate(frames)
    audio = torch.as_tensor(codes).T[None].to(device).clamp(0, 2047)
    with torch.no_grad():
        model.codec_model.decode(audio[..., :2])  # warm-up
        t = time.perf_counter()
        model.codec_model.decode(audio[..., :1])
        _sync(device)
        codec_one = time.perf_counter() - t
        t = time.perf_counter()
        model.codec_model.decode(audio)
        _sync(device)
        codec_all = time.perf_counter() - t
    return {"codes": codes.tolist(), "frame_s": frame_s, "load_s": load_s,
            # PyTorch has no streaming Mimi decoder: per frame is the batch decode of every frame / frames
            "codec_s_per_frame": codec_all / len(codes), "first_audio_s": frame_s[0] + codec_one}


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()

