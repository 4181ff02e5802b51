"""Codec chunk schedules side by side (Speech.chunk_frames): first audio, real-time factor, codec time
per frame, and stalls (audio a listener would wait for after playback began), interleaved in one
process so every schedule sees the same load.

    python -m voxport.bench.chunk_schedule ARTIFACT_DIR [--dtype q4] [--frames 48] [--repeats 5]
        [--modes serial:2 engine:1]

A chunk of n frames costs one codec call: larger chunks cost less per frame (Qwen3-TTS 0.6B q4,
2 cores: 8 frames per call 29% less than 1), but the first audio waits for the first chunk, and a
chunk must be ready before the audio before it has played out.

Modes (KIND:THREADS or KIND:THREADS+CODEC_THREADS, onnxruntime threads per session; the codec's
count defaults to the others'): `serial` decodes each chunk between frame calls (`Speech` alone);
`engine` makes the frames in an engine's thread (runtime/engine.py, one slot, as the server does)
while this thread decodes, so the codec overlaps the next frames: with one thread each, the frame
graph and the codec each keep one core.

Each row is the median over repeats; `best_rtf` is the least disturbed repeat, and `other_cores` the
cores other processes kept busy during a run (median): on a shared machine read a row with both."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from voxport.bench.configs import TEN_WORDS
from voxport.bench.machine import OtherCpu
from voxport.errors import InputError
from voxport.runtime.stream import parse_chunk_frames

SCHEDULES = {"1": (1,), "2": (2,), "4": (4,), "8": (8,), "1,2,4": (1, 2, 4), "1,2,4,8": (1, 2, 4, 8),
             "1,4": (1, 4), "1,8": (1, 8)}


def one(rt, schedule, frames: int, seed: int, engine=None) -> dict:
    from voxport.runtime.sampling import Sampling
    from voxport.runtime.stream import Speech

    speech = Speech(rt, TEN_WORDS, max_frames=frames, chunk_frames=schedule, sampling=Sampling(0.9, 50), seed=seed,
                    engine=engine)
    others = OtherCpu()
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
            "frame_ms": 1000 * s["stages"]["frames_s"] / max(1, s["frames"] - 1), "other_cores": others.cores() or 0.0}


def parse_mode(mode: str, threads: int) -> tuple[str, int, int]:
    """KIND[:THREADS[+CODEC_THREADS]] -> (kind, frame threads, codec threads)."""
    kind, _, n = mode.partition(":")
    counts = n.split("+") if n else []
    if kind not in ("serial", "engine") or len(counts) > 2 or any(not c.isdigit() or int(c) < 1 for c in counts):
        raise InputError(f"mode {mode!r}: expected serial or engine, optionally :THREADS or :THREADS+CODEC_THREADS "
                         "(e.g. engine:1, engine:2+1)")
    frame = int(counts[0]) if counts else threads
    return kind, frame, int(counts[1]) if len(counts) == 2 else frame


def measure(artifact_dir: Path, dtype: str = "fp32", frames: int = 48, repeats: int = 5, threads: int = 2,
            seed: int = 7, schedules: dict | None = None, modes: list[str] | None = None) -> dict:
    from voxport.runtime.engine import Engine
    from voxport.runtime.runtime import Runtime

    schedules = schedules or SCHEDULES
    modes = modes or [f"serial:{threads}"]
    kinds = {m: parse_mode(m, threads) for m in modes}  # every mode checked before anything loads
    runners = {}
    try:
        for m, (kind, n, codec_n) in kinds.items():
            rt = Runtime(artifact_dir, threads=n, dtype=dtype, codec_threads=codec_n)
            rt.load_streaming()
            runners[m] = rt, Engine(rt, 1) if kind == "engine" else None
            one(rt, (1,), 4, seed, runners[m][1])  # warm-up
        cases = [(m, name) for m in modes for name in schedules]
        runs: dict[tuple, list[dict]] = {c: [] for c in cases}
        for r in range(repeats):
            for m, name in cases[r % len(cases):] + cases[:r % len(cases)]:  # interleaved, rotated
                runs[m, name].append(one(runners[m][0], schedules[name], frames, seed, runners[m][1]))
    finally:
        for _, engine in runners.values():
            if engine is not None:
                engine.stop()
    rows = []
    for (m, name), rs in runs.items():
        row = {"mode": m, "schedule": name, "frames": rs[0]["frames"]}
        row.update({k: round(statistics.median(x[k] for x in rs), 2) for k in rs[0] if k != "frames"})
        row["best_rtf"] = round(min(x["rtf"] for x in rs), 2)  # the least disturbed repeat on a shared machine
        row["runs"] = [{k: round(v, 2) for k, v in x.items()} for x in rs]
        rows.append(row)
    return {"artifact": str(artifact_dir), "dtype": dtype, "threads": threads, "frames": frames,
            "repeats": repeats, "modes": modes, "rows": rows}


def table(result: dict) -> str:
    keys = ["mode", "schedule", "frames", "first_audio_ms", "rtf", "best_rtf", "stall_ms", "codec_ms_per_frame", "frame_ms",
            "other_cores"]
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
    p.add_argument("--modes", nargs="+", help="serial[:THREADS[+CODEC_THREADS]] and/or engine[:...] (default serial)")
    p.add_argument("--schedules", nargs="+", help="frames per call, e.g. 1,4 1,8 (default: the built-in set)")
    p.add_argument("--json", help="also write the result here")
    a = p.parse_args(argv)
    try:
        result = measure(Path(a.artifact), a.dtype, a.frames, a.repeats, a.threads, modes=a.modes,
                         schedules=a.schedules and {s: parse_chunk_frames(s, "a schedule") for s in a.schedules})
    except InputError as e:
        p.exit(2, f"error: {e}\n")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2))
    print(table(result))


if __name__ == "__main__":
    main()
