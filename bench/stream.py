"""Fused frame graph vs the step loop, same process, same prompt; first audio; where the time goes.

    python bench/stream.py ARTIFACT_DIR [--frames 20] [--threads 0] [--json out.json]

Per-frame times are medians over frames after warm-up (the prefill frame excluded). The onnxruntime
profile of the frame graph is summed per operator type to show what bounds a frame.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.csm import CsmRuntime, _empty_past, _kv_feeds  # noqa: E402
from runtime.sampling import Sampling, draw_noise  # noqa: E402
from runtime.stream import Speech  # noqa: E402

TEN_WORDS = "The old lighthouse keeper watched the storm roll in tonight."


def step_loop_times(rt: CsmRuntime, frames: int) -> list[float]:
    ids, codes, frames = rt.prepare(TEN_WORDS, 0, [], frames, Sampling())
    embeds = rt.graphs.run("embed", {"input_ids": ids, "audio_codes": codes})[0]
    past, pos, times, rng = _empty_past(rt.rt["backbone"]), 0, [], np.random.default_rng(0)
    audio_in = np.full((1, 1), rt.rt["audio_token_id"], np.int64)
    for _ in range(frames):
        t = time.perf_counter()
        seq = embeds.shape[1]
        out = rt.graphs.run("backbone", {"inputs_embeds": embeds, "attention_mask": np.ones((1, pos + seq), np.int64),
                                         "position_ids": np.arange(pos, pos + seq, dtype=np.int64)[None],
                                         **_kv_feeds(past)})
        past, pos = out[2:], pos + seq
        noise = draw_noise(rng, rt.rt["num_codebooks"], rt.rt["codebook_vocab"])[0]
        frame = rt._frame(out[0][:, -1], out[1][:, -1], Sampling(), noise)
        embeds = rt.graphs.run("embed", {"input_ids": audio_in, "audio_codes": frame[None, None]})[0]
        times.append(time.perf_counter() - t)
    return times


def fused_times(rt: CsmRuntime, frames: int) -> tuple[list[float], list[float]]:
    """(per-frame generation times, per-frame codec times) from the streaming path itself."""
    speech = Speech(rt, TEN_WORDS, max_frames=frames, chunk_frames=1)
    gen = speech._frames(TEN_WORDS, [], np.random.default_rng(0), {"prefill_s": 0, "frames_s": 0}, {"embed": 0, "frame": 0})
    from runtime.codec_stream import CodecStream

    codec, gen_t, codec_t = CodecStream(rt.graphs), [], []
    while True:
        t = time.perf_counter()
        try:
            codes = next(gen)
        except StopIteration:
            break
        t1 = time.perf_counter()
        codec.decode(codes[None])
        gen_t.append(t1 - t)
        codec_t.append(time.perf_counter() - t1)
    return gen_t, codec_t


def first_audio(rt: CsmRuntime, repeats: int = 3) -> float:
    out = []
    for _ in range(repeats):
        speech = Speech(rt, TEN_WORDS, max_frames=2, chunk_frames=1)
        next(iter(speech))
        out.append(speech.stats["first_audio_s"])
    return statistics.median(out)


def profile_frame(artifact_dir: Path, frames: int, threads: int, dtype: str) -> list[tuple[str, float]]:
    import onnxruntime as ort

    from voxport.manifest import graph_path

    rt = CsmRuntime(artifact_dir, threads=threads, dtype=dtype)
    path = graph_path(artifact_dir, rt.graphs.manifest, "frame", dtype=dtype)
    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "frame")
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    rt.graphs._sessions["frame"] = sess
    fused_times(rt, frames)
    prof = json.loads(Path(sess.end_profiling()).read_text())
    by_op: Counter = Counter()
    for ev in prof:
        if ev.get("cat") == "Node" and ev["name"].endswith("_kernel_time"):
            by_op[ev["args"].get("op_name", "?")] += ev["dur"]
    total = sum(by_op.values())
    return [(op, round(us / total, 4)) for op, us in by_op.most_common(12)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=Path)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--dtype", default="fp32", help="precision variant of every graph (fp32, fp16, q8, q4, q4f16)")
    a = ap.parse_args()
    rt = CsmRuntime(a.dir, threads=a.threads, dtype=a.dtype)
    for g in ("embed", "backbone", "depth", "frame", "mimi_decoder_stream"):
        rt.graphs.session(g)
    fused_times(rt, 3)  # warm-up
    step = step_loop_times(rt, a.frames)[1:]
    fused, codec = fused_times(rt, a.frames)
    fused = fused[1:]
    r = {"artifact": str(a.dir), "dtype": a.dtype, "frames": a.frames, "threads": a.threads or "default",
         "step_loop_ms_per_frame": round(1000 * statistics.median(step), 2),
         "fused_ms_per_frame": round(1000 * statistics.median(fused), 2),
         "fused_spread_ms": [round(1000 * min(fused), 2), round(1000 * max(fused), 2)],
         "speedup": round(statistics.median(step) / statistics.median(fused), 2),
         "codec_stream_ms_per_frame": round(1000 * statistics.median(codec), 2),
         "rtf_fused_plus_codec": round((statistics.median(fused) + statistics.median(codec)) / 0.08, 3),
         "first_audio_ms_10_words": round(1000 * first_audio(rt), 1),
         "frame_graph_time_by_op": profile_frame(a.dir, min(a.frames, 10), a.threads, a.dtype)}
    print(json.dumps(r, indent=2))
    if a.json:
        a.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
