"""Speech-API benchmark: `voxport serve` in its own process, N clients at once streaming
/v1/audio/speech (raw PCM) over loopback; time to first byte and streams per second per level.

    python -m voxport.bench.serve_bench artifacts/tiny [artifacts/marvis-250m] [--dtype q4] \\
        [--streams 1 2 4] [--requests 6] [--frames 10] [--modes batched solo] [--json out.json]

Each mode is a server of its own, all started before the first level and measured in turn at every
level (the order rotating), so a machine whose load changes affects them alike: `batched` (the
default server: one frame call per step for every stream, and one codec call for every stream with a
chunk due), `frames` (`--no-codec-batching`: frames batched, each stream its own codec calls), `solo`
(`--no-batching`: each stream its own batch-1 frame loop); `MODE:T` gives that server T onnxruntime
threads instead of `--threads` (`MODE:T/C`: and C for its codec session, `--codec-threads`),
`MODE~1,4` serves that chunk schedule (`--chunk-frames`), and
`MODE@DTYPE` serves that precision instead of `--dtype` (`batched@q4 batched@q8`: precisions compared
in one run).

`run(dirs, dtype, streams, requests, frames) -> list[dict]`, one dict per directory x level x mode:
    model, dtype        served name and precision
    mode, threads       the server's mode and onnxruntime threads per session
    codec_threads       the codec session's threads where the mode gives them (MODE:T/C), else None
    chunk_frames        the chunk schedule where the mode gives one (MODE~1,4: serve --chunk-frames)
    mean_rows           batched: streams per frame call at this level (the engine's steps)
    codec_rows          batched: streams per codec call at this level
    engine_busy         batched: the share of the level's wall time the engine spent in frame calls
    step_ms             batched: the engine's mean step (joins and the frame call) at this level, ms
    streams             clients at once (each sends `requests` requests, one after another)
    requests            requests completed at this level
    ttfb_ms             {p50, p95}: request sent -> first audio byte (prompt + one frame + codec)
    stream_ms           {p50, p95}: request sent -> last byte (`frames` frames of audio)
    streams_per_s       completed requests / wall time of the level
    x_realtime          seconds of audio made per second of wall time, all clients together
    load_s              server start (spawn -> listening: imports, hash checks, sessions)
    session_load_s      of which: hash check + session creation of the runtime (the server's figure)
    rss_mb              the server's resident memory after the level
    load_avg            the machine's 1-minute load average when the level started
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from voxport import dtypes as dt

TEXT = "The quick brown fox jumps over the lazy dog near the riverbank."  # ten-ish words, as bench/


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def _one(port: int, model: str, seed: int, frames: int) -> tuple[float, float, int]:
    body = json.dumps({"model": model, "input": TEXT, "response_format": "pcm", "seed": seed,
                       "max_frames": frames})
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t = time.perf_counter()
    c.request("POST", "/v1/audio/speech", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {r.read()[:200]!r}")
    first = r.read(1)
    ttfb = time.perf_counter() - t
    n = len(first) + len(r.read())
    c.close()
    return ttfb, time.perf_counter() - t, n


class _Server:
    def __init__(self, artifact: Path, dtype: str, max_streams: int, threads: int, mode: str = "batched",
                 codec_threads: int | None = None, chunk_frames: tuple | None = None):
        self.voices = tempfile.TemporaryDirectory()
        t = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voxport.cli", "serve", str(artifact), "--port", "0", "--dtype", dtype,
             "--max-streams", str(max_streams), "--threads", str(threads), "--voices-dir", self.voices.name, "--quiet",
             *{"batched": [], "frames": ["--no-codec-batching"], "solo": ["--no-batching"]}[mode],
             *([] if codec_threads is None else ["--codec-threads", str(codec_threads)]),
             *([] if chunk_frames is None else ["--chunk-frames", ",".join(map(str, chunk_frames))])],
            stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
        line = ""
        while "serving on" not in line:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError(f"server did not start: {self.proc.stderr.read()[-500:]}")
        self.load_s = time.perf_counter() - t
        self.port = int(re.search(r":(\d+)/ ", line).group(1))
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # keep the log pipe drained

    def health(self) -> dict:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request("GET", "/healthz")
        return json.loads(c.getresponse().read())

    def rss_mb(self) -> float:
        return int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{self.proc.pid}/status").read_text()).group(1)) / 1024

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.voices.cleanup()


def _modes(modes: tuple[str, ...], threads: int, dtype: str) -> list[tuple]:
    """"batched", "solo:1", "batched@q8", "solo:2@q4", "batched:2/1", "batched~1,4" -> (mode, threads,
    codec threads, precision, chunk schedule or None)."""
    from voxport.errors import InputError
    from voxport.runtime.stream import parse_chunk_frames

    out = []
    for m in modes:
        spec, _, sched = m.partition("~")
        head, _, precision = spec.partition("@")
        name, _, t = head.partition(":")
        t, _, c = t.partition("/")
        try:
            counts = parse_chunk_frames(sched) if "~" in m else ()
        except InputError:
            counts = None
        if (name not in ("batched", "frames", "solo") or (t and not t.isdigit()) or ("/" in head and not c.isdigit())
                or ("@" in spec and precision not in dt.DTYPES) or counts is None):
            raise ValueError(f"mode {m!r}: batched, frames or solo, optionally :THREADS[/CODEC_THREADS], @DTYPE "
                             f"({', '.join(dt.DTYPES)}) and ~CHUNK_FRAMES (e.g. ~1,4)")
        out.append((name, int(t) if t else threads, int(c) if c else None, precision or dtype,
                    counts or None))
    return out


def _level(srv: _Server, model: str, n: int, requests: int, frames: int) -> tuple[list, float]:
    results: list[tuple[float, float, int]] = []
    lock = threading.Lock()

    def client(i):
        for r in range(requests):
            out = _one(srv.port, model, 1000 * i + r, frames)
            with lock:
                results.append(out)

    t = time.perf_counter()
    workers = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t
    if len(results) != n * requests:
        raise RuntimeError(f"{model}: {n * requests - len(results)} requests failed at {n} streams")
    return results, wall


def run(dirs: list[Path], dtype: str = "q4", streams: tuple[int, ...] = (1, 2, 4), requests: int = 6,
        frames: int = 10, threads: int = 1, progress=lambda m: None,
        modes: tuple[str, ...] = ("batched",)) -> list[dict]:
    rows, variants = [], _modes(modes, threads, dtype)
    for d in dirs:
        d = Path(d).resolve()
        model, servers = d.name, []
        try:
            for mode, t, c, precision, chunks in variants:
                servers.append(_Server(d, precision, max(streams), t, mode, c, chunks))
                _one(servers[-1].port, model, 0, 2)  # warm-up: first-run allocations, not counted
            for k, n in enumerate(streams):
                for j in range(len(servers)):
                    i = (j + k) % len(servers)  # rotate which mode goes first
                    (mode, t, c, precision, chunks), srv = variants[i], servers[i]
                    load_avg = os.getloadavg()[0]
                    before = srv.health()["batches"].get(f"{model}:{precision}")
                    results, wall = _level(srv, model, n, requests, frames)
                    after = srv.health()["batches"].get(f"{model}:{precision}")
                    ttfb, total = [r[0] * 1e3 for r in results], [r[1] * 1e3 for r in results]
                    audio_s = sum(r[2] for r in results) / 2 / 24000
                    steps = after["steps"] - before["steps"] if after else 0
                    mean_rows = round((after["rows"] - before["rows"]) / steps, 2) if steps else None
                    busy = round((after["busy_s"] - before["busy_s"]) / wall, 2) if after else None
                    step_ms = round((after["busy_s"] - before["busy_s"]) / steps * 1e3, 1) if steps else None
                    calls = after.get("codec_calls", 0) - before.get("codec_calls", 0) if after else 0
                    codec_rows = round((after["codec_rows"] - before["codec_rows"]) / calls, 2) if calls else None
                    row = {"model": model, "dtype": precision, "mode": mode, "threads": t, "codec_threads": c,
                           "chunk_frames": list(chunks) if chunks else None, "streams": n,
                           "requests": len(results), "frames": frames, "mean_rows": mean_rows,
                           "engine_busy": busy, "step_ms": step_ms, "codec_rows": codec_rows,
                           "ttfb_ms": {"p50": round(statistics.median(ttfb), 1), "p95": round(_pct(ttfb, 0.95), 1)},
                           "stream_ms": {"p50": round(statistics.median(total), 1), "p95": round(_pct(total, 0.95), 1)},
                           "streams_per_s": round(len(results) / wall, 2), "x_realtime": round(audio_s / wall, 2),
                           "load_s": round(srv.load_s, 2),
                           "session_load_s": srv.health()["loaded"].get(f"{model}:{precision}"),
                           "rss_mb": round(srv.rss_mb()), "load_avg": round(load_avg, 2)}
                    progress(markdown([row]).splitlines()[-1])
                    rows.append(row)
        finally:
            for srv in servers:
                srv.close()
    return rows


def markdown(rows: list[dict]) -> str:
    out = ["| model | dtype | mode (threads) | streams | rows per call | step ms | codec rows | requests | TTFB p50 ms | TTFB p95 ms | "
           "stream p50 ms | streams/s | x real time | load s (sessions) | RSS MB | load avg |", "|" + "---|" * 16]
    for r in rows:
        threads = r["threads"] if r.get("codec_threads") is None else f"{r['threads']}/{r['codec_threads']}"
        threads = f"{threads}, chunks {','.join(map(str, r['chunk_frames']))}" if r.get("chunk_frames") else threads
        out.append(f"| {r['model']} | {r['dtype']} | {r['mode']} ({threads}) | {r['streams']} | "
                   f"{r['mean_rows'] or '-'} | {r.get('step_ms') or '-'} | {r['codec_rows'] or '-'} | {r['requests']} | {r['ttfb_ms']['p50']} | "
                   f"{r['ttfb_ms']['p95']} | {r['stream_ms']['p50']} | {r['streams_per_s']} | {r['x_realtime']} | "
                   f"{r['load_s']} ({r['session_load_s']}) | {r['rss_mb']} | {r['load_avg']} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m voxport.bench.serve_bench", description=__doc__.splitlines()[0])
    p.add_argument("dirs", nargs="+", type=Path)
    p.add_argument("--dtype", default="q4")
    p.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--requests", type=int, default=6, help="per client, one after another")
    p.add_argument("--frames", type=int, default=10, help="frames per request (80 ms each)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads per session in the server "
                   "(serve's default 1; 0: all cores)")
    p.add_argument("--modes", nargs="+", default=["batched"],
                   help="servers to compare, measured in turn at each level: batched, frames "
                   "(--no-codec-batching), solo (--no-batching), "
                   "each optionally :THREADS and @DTYPE (default: batched)")
    p.add_argument("--json", type=Path, help="also write the rows as JSON")
    a = p.parse_args(argv)
    missing = [str(d) for d in a.dirs if not (d / "manifest.json").is_file()]
    if missing:
        print(f"serve_bench: not artifact directories: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        _modes(tuple(a.modes), a.threads, a.dtype)  # every mode checked before a server starts
    except ValueError as e:
        print(f"serve_bench: {e}", file=sys.stderr)
        return 2
    rows = run(a.dirs, a.dtype, tuple(a.streams), a.requests, a.frames, a.threads,
               progress=lambda m: print(m, file=sys.stderr, flush=True), modes=tuple(a.modes))
    print(markdown(rows))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
