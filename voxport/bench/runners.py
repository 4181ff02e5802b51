"""One configuration, measured in a process of its own: the peak memory (RSS) is then that
configuration's, and one runtime's allocator cannot slow the next. Every runner returns the same
keys: codes, frame_s (every frame, the first includes the prompt), codec_s_per_frame,
first_audio_s, load_s, calls_per_frame."""

from __future__ import annotations

import multiprocessing as mp
import resource
import statistics
import time
import traceback
from pathlib import Path

import numpy as np

from voxport.bench import reference
from voxport.bench.configs import FIRST_AUDIO_REPEATS, TEN_WORDS, Config


def _runtime(artifact_dir: Path, dtype: str, threads: int, device: str, load: str | None = "fused"):
    """A runtime with the sessions of the fused path (`load="steps"`: of the step loop; None: none yet)
    created: hash check and session creation are load time, not frame time."""
    from voxport.runtime.runtime import Runtime
    from voxport.validation.harness import onnx_providers

    t = time.perf_counter()
    rt = Runtime(artifact_dir, providers=onnx_providers(device), threads=threads, dtype=dtype)
    if load == "steps":
        for role in rt.rt["generation"]["steps"].values():
            rt.graphs.session(role["graph"])
        rt.graphs.session(rt.codec["stream"])
    elif load == "fused":
        rt.load_streaming()
    return rt, time.perf_counter() - t


def fused(artifact_dir: Path, dtype: str, frames: int, threads: int, device: str) -> dict:
    from voxport.runtime.stream import Speech

    rt, load_s = _runtime(artifact_dir, dtype, threads, device)
    list(Speech(rt, TEN_WORDS, max_frames=3))  # warm-up
    speech = Speech(rt, TEN_WORDS, max_frames=frames, chunk_frames=1)
    list(speech)
    first = []
    for _ in range(FIRST_AUDIO_REPEATS):
        s = Speech(rt, TEN_WORDS, max_frames=1)
        list(s)
        first.append(s.stats["first_audio_s"])
    return {"codes": np.stack(speech.codes).tolist(), "frame_s": speech.timings["frame_s"],
            "codec_s_per_frame": statistics.median(speech.timings["codec_s"]),
            "first_audio_s": statistics.median(first), "load_s": load_s,
            "calls_per_frame": speech.stats["runtime_calls_per_frame"]}


def streamed(artifact_dir: Path, dtype: str, frames: int, threads: int, device: str) -> dict:
    """One request as the server streams it: the frames in an engine's thread (runtime/engine.py, one
    slot), the manifest's codec chunk schedule decoded beside them in this thread, one onnxruntime
    thread per session (the server's default: the frame graph and the codec each keep a core). Wall
    time over audio time (the prompt and every codec call included) and first audio, the median of
    FIRST_AUDIO_REPEATS runs; and the cores other processes kept busy meanwhile, without which a
    timing on a shared machine cannot be read."""
    from voxport.bench.machine import OtherCpu
    from voxport.runtime.engine import Engine
    from voxport.runtime.stream import Speech

    rt, load_s = _runtime(artifact_dir, dtype, 1, device)
    engine = Engine(rt, 1)
    try:
        list(Speech(rt, TEN_WORDS, max_frames=3, engine=engine))  # warm-up
        runs = []
        for _ in range(FIRST_AUDIO_REPEATS):
            others, s = OtherCpu(), Speech(rt, TEN_WORDS, max_frames=frames, engine=engine)
            list(s)
            runs.append((s.stats["rtf"], s.stats["first_audio_s"], others.cores()))
    finally:
        engine.stop()
    rtf, first, busy = (statistics.median(x) if None not in x else None for x in zip(*runs))
    return {"rtf": rtf, "first_audio_s": first, "chunk_frames": s.stats["chunk_frames"], "other_cores": busy,
            "frames": s.stats["frames"], "load_s": load_s}


def steps(artifact_dir: Path, dtype: str, frames: int, threads: int, device: str) -> dict:
    from voxport.runtime.codec_stream import CodecStream

    rt, load_s = _runtime(artifact_dir, dtype, threads, device, load="steps")
    rt.generate(TEN_WORDS, max_frames=3, decode=False)  # warm-up
    res = rt.generate(TEN_WORDS, max_frames=frames, decode=False)
    codec, codec_s = CodecStream(rt.graphs), []
    for frame in res.codes:
        t = time.perf_counter()
        codec.decode(frame[None])
        codec_s.append(time.perf_counter() - t)
    first = [rt.generate(TEN_WORDS, max_frames=1, decode=False).stats["first_frame_s"]
             for _ in range(FIRST_AUDIO_REPEATS)]
    return {"codes": res.codes.tolist(), "frame_s": res.stats["frame_s"],
            "codec_s_per_frame": statistics.median(codec_s),
            # the step loop is not a streaming path: its first audio is its first frame plus one codec call
            "first_audio_s": statistics.median(first) + codec_s[0], "load_s": load_s,
            "calls_per_frame": res.stats["runtime_calls_per_frame"]}


def profile(artifact_dir: Path, dtype: str, frames: int, threads: int, device: str) -> dict:
    """Where a fused frame's time goes: onnxruntime's per-node profile summed per operator type over
    the frames after the prefill (a separate run: profiling slows the frames it records)."""
    import json
    import tempfile
    from collections import Counter

    from voxport.runtime.stream import Speech

    rt, _ = _runtime(artifact_dir, dtype, threads, device, load=None)  # sessions made with profiling on
    rt.graphs.profile_dir = Path(tempfile.mkdtemp(prefix="voxport-profile-"))
    list(Speech(rt, TEN_WORDS, max_frames=frames, chunk_frames=1))

    def per_call(graph: str, skip: int) -> tuple[int, Counter, int]:
        """Kernel events of the calls after the first `skip` (the prefill frame): (calls, op -> us, kernels)."""
        events = json.loads(Path(rt.graphs.session(graph).end_profiling()).read_text())
        runs = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e["name"] == "model_run")
        by_op, kernels = Counter(), 0
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and len(runs) > skip and e["ts"] >= runs[skip]:
                by_op[e["args"].get("op_name", "?")] += e["dur"]
                kernels += 1
        return max(1, len(runs) - skip), by_op, kernels

    n, by_op, kernels = per_call(rt.contract.graph, 1)
    n_codec, _, codec_kernels = per_call(rt.codec["stream"], 0)
    total = sum(by_op.values()) or 1
    return {"frames": n, "kernel_ms_per_frame": total / 1e3 / n, "kernels_per_frame": round(kernels / n),
            "codec_kernels_per_call": round(codec_kernels / n_codec),
            "share_by_op": {op: round(us / total, 4) for op, us in by_op.most_common(10)}}


def pytorch(artifact_dir: Path, dtype: str, frames: int, threads: int, device: str) -> dict:
    return {**reference.run(artifact_dir, frames, threads, device), "calls_per_frame": None}


RUNNERS = {"pytorch": pytorch, "fused": fused, "steps": steps, "profile": profile, "streamed": streamed}


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not getrusage: ru_maxrss is inherited through fork and exec,
    so a spawned child would report its parent's peak when that was larger."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _child(conn, cfg: Config, artifact_dir: Path, frames: int, threads: int, device: str) -> None:
    base = peak_rss_mb()
    try:
        out = RUNNERS[cfg.engine](artifact_dir, cfg.dtype, frames, threads, device)
        out["peak_rss_mb"], out["base_rss_mb"] = peak_rss_mb(), base
        conn.send(out)
    except Exception as e:  # noqa: BLE001 - reported in the results, the run goes on
        conn.send({"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=4)})
    finally:
        conn.close()


def measure(cfg: Config, artifact_dir: Path, frames: int, threads: int, device: str) -> dict:
    """Run `cfg` in a fresh (spawned) interpreter and return its measurements, or {'error': ...}."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(child, cfg, Path(artifact_dir), frames, threads, device))
    p.start()
    child.close()
    try:
        out = parent.recv()
    except EOFError:
        out = {"error": f"the measuring process died (exit code {p.join() or p.exitcode}); out of memory?"}
    p.join()
    return out
