"""Browser benchmark: voxport-web (the library) on a page in headless Chromium (Debian's, via Playwright),
speaking with the fused path (one `frame` call per frame, `mimi_decoder_stream` per chunk), for each artifact
directory x precision x backend x wasm thread count.

    .venv/bin/python voxport/bench/web_bench.py artifacts/tiny artifacts/marvis-250m --dtypes fp32 q4 \\
        --threads 1 2 --frames 20 [--backends wasm webgpu] [--json out.json] [--md out.md]

Precision variants are the ones `voxport export --dtypes` wrote (manifest format 3); a directory
without the asked variant gives an error row, not a failure. Each row is a fresh page (cold Cache
Storage) running the library on its main thread: load, speak 2 frames to warm up (buffers allocated, sessions' first
runs done), then speak TEXT (ten words) greedily for up to `frames` frames with one frame per codec call. V8 is
still moving onnxruntime's hot wasm functions from baseline to optimized code then (docs/design.md, "wasm: where
the page's time goes"): a row is a fresh page's first utterance, not the steady state of a page in use.

`run(dirs, dtypes, threads, frames, backends) -> list[dict]`, one dict per run with the keys
    model             the directory's name
    dtype, backend    precision variant; 'wasm' or 'webgpu'
    threads           wasm threads (1 for webgpu)
    frames            frames generated (fewer than asked if the model spoke its eos frame)
    ms_per_frame      median ms of one `frame` call, the prompt's first call excluded
    prefill_ms        the first `frame` call (the whole prompt through the backbone)
    codec_ms_per_frame  streaming-codec ms per audio frame (one call per frame here)
    rtf               wall time of the utterance / audio length (< 1: faster than real time)
    first_audio_ms    speak request -> first PCM chunk decoded in the worker (ten-word prompt)
    load_s            page load of the model: fetch, sha256 check, session creation
    download_mb       what the page downloads for this precision (shared files + the three graphs)
    load_avg          the machine's 1-minute load average when the run started
    warm_*            with warm_calls: ms_per_frame, codec_ms_per_frame, first_audio_ms and prefill_ms of an
                      utterance spoken after `warm_after_codec_calls` codec calls in the same page (V8's
                      optimized tier, as an app reaches it), beside the fresh page's first utterance above
    error             only on failure (e.g. out of memory); the other keys are then absent
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the page helpers live with the tests (tests/web_helpers.py)

from tests.web_helpers import CHROMIUM, FLAGS, LIBRARY, build_library, serving  # noqa: E402
from voxport import manifest as mf  # noqa: E402

TEXT = "The old lighthouse keeper watched the storm roll in tonight."  # the ten words of voxport/bench/stream.py
SPEAK = ("async (o) => { const r = await window.lib.speak(o); const t = r.timings; "
         "return { ...r.stats, frame_ms: t.frame_s.map((x) => x * 1000), codec_ms: t.codec_s.map((x) => x * 1000) }; }")


def _timed(s: dict, codec_stream: str) -> dict:
    """One utterance's figures from the library's stats and timings."""
    steady = s["frame_ms"][1:] or s["frame_ms"]
    audible = s["graph_ms"].get(codec_stream, {}).get("calls", 0)
    return {"frames": s["frames"], "ms_per_frame": round(statistics.median(steady), 1),
            "prefill_ms": round(s["frame_ms"][0], 1),
            "codec_ms_per_frame": round(sum(s["codec_ms"]) / audible, 1) if audible else None,
            "rtf": round(s["rtf"], 3) if s["rtf"] else None,
            "first_audio_ms": round(s["first_audio_s"] * 1000, 1)}


def _one(browser, url: str, model: str, dtype: str, backend: str, threads: int, frames: int,
         codec_stream: str, warm_calls: int = 0) -> dict:
    ctx = browser.new_context()
    page = ctx.new_page()
    try:
        page.goto(url)
        page.evaluate(LIBRARY)
        t = time.perf_counter()
        page.evaluate("(o) => window.lib.load(o)", {"url": f"/models/{model}/", "device": backend, "dtype": dtype,
                                                    "threads": threads})
        load_s = time.perf_counter() - t
        page.evaluate(SPEAK, {"text": TEXT, "maxFrames": 2, "temperature": 0})
        speak = {"text": TEXT, "maxFrames": frames, "chunkFrames": 1, "temperature": 0}
        s = page.evaluate(SPEAK, speak)
        row = {**_timed(s, codec_stream), "load_s": round(load_s, 1), "threads": s["threads"] if backend == "wasm" else 1}
        if warm_calls:
            # V8 runs a fresh page's wasm in its baseline tier until the kernels are hot (in Node, a codec call
            # took ~500 ms first, 100-150 ms for ~30 calls, then 28-35 ms): an app speaking its second minute
            # runs the optimized code. Speak on until `warm_calls` codec calls have run, then time one more.
            calls, utterances = s["graph_ms"].get(codec_stream, {}).get("calls", 0), 1
            while calls < warm_calls and utterances < 50:
                w = page.evaluate(SPEAK, speak)
                calls, utterances = calls + w["graph_ms"].get(codec_stream, {}).get("calls", 0), utterances + 1
            warm = _timed(page.evaluate(SPEAK, speak), codec_stream)
            row.update({f"warm_{k}": warm[k] for k in ("ms_per_frame", "codec_ms_per_frame", "first_audio_ms", "prefill_ms")},
                       warm_after_codec_calls=calls)
        return row
    finally:
        ctx.close()


def run(dirs: list[Path], dtypes=("fp32", "q4"), threads=(1, 2), frames: int = 20,
        backends=("wasm",), log=None, warm_calls: int = 0) -> list[dict]:
    """Every directory x dtype x backend (x threads on wasm); see the module docstring for the keys."""
    from playwright.sync_api import sync_playwright

    dirs = [Path(d).resolve() for d in dirs]
    names = [d.name for d in dirs]
    if len(set(names)) != len(names):
        raise SystemExit(f"artifact directories need distinct names (served as /models/NAME/): {names}")
    rows = []
    build_library()
    with serving(dirs) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            for d in dirs:
                manifest = mf.load(d)
                for dtype in dtypes:
                    for backend in backends:
                        for n in (threads if backend == "wasm" else (1,)):
                            row = {"model": d.name, "dtype": dtype, "backend": backend, "threads": n,
                                   "load_avg": round(os.getloadavg()[0], 2)}
                            try:
                                gen = manifest["runtime"]["generation"]
                                graphs = (gen["prompt"]["graph"], gen["frame"]["graph"], gen["codec"]["stream"])
                                files = [e for g in graphs for e in mf.variant(manifest, g, dtype, d)["files"]]
                                row["download_mb"] = round(sum(e["bytes"] for e in files + manifest.get("files", [])) / 1e6, 1)
                                row.update(_one(browser, url, d.name, dtype, backend, n, frames, gen["codec"]["stream"], warm_calls))
                            except Exception as e:  # keep the other rows (out of memory on a large fp32 model)
                                row["error"] = str(e).strip().splitlines()[0][:300]
                                if not browser.is_connected():  # a crashed browser: start another
                                    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
                            rows.append(row)
                            if log:
                                log(json.dumps(row))
        finally:
            browser.close()
    return rows


def markdown(rows: list[dict]) -> str:
    out = ["| model | dtype | download MB | backend | threads | frames | ms/frame (median) | codec ms/frame | RTF | "
           "first audio ms | prefill ms | load s | load avg |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        head = f"| {r['model']} | {r['dtype']} | {r.get('download_mb', '')} | {r['backend']} | {r['threads']} |"
        if "error" in r:
            out.append(f"{head} error: {r['error'].replace('|', '/')} | | | | | | | {r['load_avg']} |")
        else:
            warm = ("" if "warm_ms_per_frame" not in r else
                    f" (warm: {r['warm_ms_per_frame']} / {r['warm_codec_ms_per_frame']} / {r['warm_first_audio_ms']})")
            out.append(f"{head} {r['frames']} | {r['ms_per_frame']} | {r['codec_ms_per_frame']} | {r['rtf']} | "
                       f"{r['first_audio_ms']}{warm} | {r['prefill_ms']} | {r['load_s']} | {r['load_avg']} |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", type=Path, help="artifact directories (manifest format 3)")
    p.add_argument("--dtypes", nargs="+", default=["fp32", "q4"])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--warm-calls", type=int, default=0, metavar="N",
                   help="also time an utterance after N codec calls in the same page (V8's optimized tier)")
    p.add_argument("--backends", nargs="+", default=["wasm"], choices=["wasm", "webgpu"],
                   help="webgpu here is Chromium's software adapter (SwiftShader): slow, use few frames")
    p.add_argument("--json", type=Path)
    p.add_argument("--md", type=Path)
    a = p.parse_args()
    rows = run(a.dirs, a.dtypes, a.threads, a.frames, a.backends, log=lambda s: print(s, file=sys.stderr, flush=True),
               warm_calls=a.warm_calls)
    table = markdown(rows)
    print(table)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))
    if a.md:
        a.md.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
