"""Codec chunk schedules side by side (Speech.chunk_frames): first audio, real-time factor, codec time
per frame, and stalls (audio a listener would wait for after playback began), interleaved in one
process so every schedule sees the same load.

    python -m voxport.bench.chunk_schedule ARTIFACT_DIR [--dtype q4] [--frames 48] [--repeats 5]

A chunk of n frames costs one codec call: larger chunks cost less per frame (Qwen3-TTS 0.6B q4,
2 cores: 8 frames per call 29% less than 1), but the first audio waits for the first chunk, and a
chunk must be ready before the audio before it has played out."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from voxport.bench.configs import TEN_WORDS

SCHEDULES = {"1": (1,), "2": (2,), "4": (4,), "8": (8,), "1,2,4": (1, 2, 4), "1,2,4,8": (1, 2, 4, 8),
             "1,4": (1, 4), "1,8": (1, 8)}


def one(rt, schedule, frames: int, seed: int) -> dict:
    from voxport.runtime.sampling import Sampling
    from voxport.runtime.stream import Speech

    speech = Speech(rt, TEN_WORDS, max_frames=frames, chunk_frames=schedule, sampling=Sampling(0.9, 50), seed=seed)
    t0, played, stall, first = time.perf_counter(), 0.0, 0.0, None
    for pcm in speech:
        now = time.perf_counter() - t0
        if first is None:
            first = now
        else:  # playback started at `first`; this chunk was due once everything before it had played
            stall += max(0.0, now - (first + stall + played))
        played += pcm.shape[0] / rt.rt["sample_rate"]
    s = speech.stats
    return {"frames": s["frames"], "first_audio_ms": 1000 * first, "rtf": s["rtf"], "stall_ms": 1000 * stall,
            "codec_ms_per_frame": 1000 * s["stages"]["codec_s"] / max(1, s["frames"]),
            "frame_ms": 1000 * s["stages"]["frames_s"] / max(1, s["frames"] - 1)}


def measure(artifact_dir: Path, dtype: str = "fp32", frames: int = 48, repeats: int = 5, threads: int = 2,
            seed: int = 7, schedules: dict | None = None) -> dict:
    from voxport.runtime.runtime import Runtime

    schedules = schedules or SCHEDULES
    rt = Runtime(artifact_dir, threads=threads, dtype=dtype)
    rt.load_streaming()
    one(rt, (1,), 4, seed)  # warm-up
    runs: dict[str, list[dict]] = {name: [] for name in schedules}
    names = list(schedules)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:  # interleaved, rotated
            runs[name].append(one(rt, schedules[name], frames, seed))
    rows = []
    for name, rs in runs.items():
        row = {"schedule": name, "frames": rs[0]["frames"]}
        row.update({k: round(statistics.median(x[k] for x in rs), 2) for k in rs[0] if k != "frames"})
        rows.append(row)
    return {"artifact": str(artifact_dir), "dtype": dtype, "threads": threads, "frames": frames,
            "repeats": repeats, "rows": rows}


def table(result: dict) -> str:
    keys = ["schedule", "frames", "first_audio_ms", "rtf", "stall_ms", "codec_ms_per_frame", "frame_ms"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in result["rows"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m voxport.bench.chunk_schedule")
    p.add_argument("artifact")
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="also write the result here")
    a = p.parse_args(argv)
    result = measure(Path(a.artifact), a.dtype, a.frames, a.repeats, a.threads)
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2))
    print(table(result))


if __name__ == "__main__":
    main()
