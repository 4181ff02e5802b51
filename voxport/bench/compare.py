"""Today's artifact against an earlier export of the same checkpoint, interleaved in one process.

This machine is shared and noisy (two-thread timings move 3-5x when another process takes a core), so
two variants timed minutes apart say little. Both runtimes are loaded in one process and run the same
greedy generation alternately (A, B, A, B, ...); each window gives a per-frame median, and the result
is the median over windows, with every window's figure kept. The codes of the two are compared too:
the same checkpoint exported twice must speak the same in fp32.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from voxport.bench.configs import TEN_WORDS
from voxport.bench.graph_stats import node_counts


def _one(rt, frames: int) -> dict:
    from voxport.runtime.stream import Speech

    s = Speech(rt, TEN_WORDS, max_frames=frames, chunk_frames=1)
    list(s)
    return {"frame_ms": 1e3 * statistics.median(s.timings["frame_s"][1:] or s.timings["frame_s"]),
            "prefill_ms": 1e3 * s.timings["frame_s"][0], "codec_ms": 1e3 * statistics.median(s.timings["codec_s"]),
            "first_audio_ms": 1e3 * s.stats["first_audio_s"], "codes": np.stack(s.codes)}


def interleaved(current: Path, baseline: Path, dtype: str, frames: int, windows: int, threads: int,
                providers: list[str] | None = None, progress=lambda m: None) -> dict:
    from voxport.runtime.runtime import Runtime

    dirs = {"current": Path(current), "baseline": Path(baseline)}
    rts = {k: Runtime(d, providers=providers, threads=threads, dtype=dtype) for k, d in dirs.items()}
    for rt in rts.values():
        _one(rt, 2)  # warm-up: sessions created, first-run allocations done
    runs: dict[str, list[dict]] = {k: [] for k in rts}
    for w in range(windows):
        for k, rt in (rts.items() if w % 2 == 0 else reversed(list(rts.items()))):  # A B, B A, ...
            runs[k].append(_one(rt, frames))
        progress(f"bench: interleaved {dtype} window {w + 1}/{windows}: " + ", ".join(
            f"{k} {runs[k][-1]['frame_ms']:.1f} ms/frame" for k in rts))
    out = {"dtype": dtype, "frames": frames, "windows": windows}
    for k, rs in runs.items():
        med = {m: round(statistics.median(r[m] for r in rs), 2) for m in ("frame_ms", "prefill_ms", "codec_ms",
                                                                         "first_audio_ms")}
        out[k] = {"artifact": str(dirs[k]), **med, "frame_ms_windows": [round(r["frame_ms"], 2) for r in rs],
                  "frame_graph_nodes": node_counts(dirs[k], [dtype])[dtype][rts[k].contract.graph]}
    out["speedup"] = round(out["baseline"]["frame_ms"] / out["current"]["frame_ms"], 3)
    a, b = runs["current"][0]["codes"], runs["baseline"][0]["codes"]
    out["codes_identical"] = bool(a.shape == b.shape and np.array_equal(a, b))
    return out
