"""Browser benchmark: the demo page in headless Chromium (Debian's, via Playwright), per-frame time,
real-time factor and time to first audio for each artifact directory x backend x wasm threads.

    .venv/bin/python bench/web_bench.py artifacts/tiny artifacts/marvis-250m --q4 --threads 1 2 --frames 12

--q4 also measures a 4-bit copy of each directory (backbone and depth MatMuls to MatMulNBits, block 32,
symmetric; embed and Mimi stay fp32), written beside it as DIR-q4 with its own manifest. Each run
speaks once to warm up, then measures a second utterance. Results: a markdown table on stdout and
JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.web_helpers import CHROMIUM, FLAGS, serving  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog."


def q4_copy(src: Path) -> Path:
    """DIR -> DIR-q4: backbone and depth with 4-bit MatMul weights, manifest entries rewritten."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    from voxport.manifest import file_entry

    dst = src.parent / f"{src.name}-q4"
    if (dst / "manifest.json").is_file():
        return dst
    tmp = src.parent / f".{dst.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    manifest = json.loads((tmp / "manifest.json").read_text())
    for name in ("backbone", "depth"):
        files = manifest["graphs"][name]["files"]
        path = tmp / files[0]["path"]
        q = MatMulNBitsQuantizer(onnx.load(str(path)), block_size=32, is_symmetric=True)
        q.process()
        for f in files:
            (tmp / f["path"]).unlink()
        q.model.save_model_to_file(str(path), use_external_data_format=False)
        manifest["graphs"][name]["files"] = [file_entry(tmp, files[0]["path"])]
        print(f"q4: {name} {path.stat().st_size / 1e6:.1f} MB", file=sys.stderr)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    tmp.rename(dst)
    return dst


def run_one(browser, url: str, model: str, backend: str, threads: int, frames: int) -> dict:
    ctx = browser.new_context()
    page = ctx.new_page()
    try:
        page.goto(url)
        page.evaluate("window.voxport.ready")
        t = time.perf_counter()
        page.evaluate("(o) => window.voxport.load(o)", {"url": f"/models/{model}/", "backend": backend,
                                                         "threads": threads})
        load_s = time.perf_counter() - t
        speak = "async (o) => (await window.voxport.speak(o)).stats"
        page.evaluate(speak, {"text": TEXT, "maxFrames": 2})  # warm-up: kernels compiled, buffers allocated
        s = page.evaluate(speak, {"text": TEXT, "maxFrames": frames})
        s["load_s"] = load_s
        return s
    finally:
        ctx.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", type=Path)
    p.add_argument("--q4", action="store_true", help="also measure a 4-bit copy of each directory")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--webgpu-frames", type=int, default=0, help="also run WebGPU (software adapter here) for N frames")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    dirs = [d.resolve() for d in a.dirs]
    if a.q4:
        dirs += [q4_copy(d) for d in list(dirs)]
    from playwright.sync_api import sync_playwright

    rows = []
    with serving(dirs) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        runs = [(d.name, "wasm", t, a.frames) for d in dirs for t in a.threads]
        if a.webgpu_frames:
            runs += [(d.name, "webgpu", 1, a.webgpu_frames) for d in dirs]
        for model, backend, threads, frames in runs:
            try:
                s = run_one(browser, url, model, backend, threads, frames)
            except Exception as e:  # keep the other rows (e.g. out of memory on a large fp32 model)
                s = {"error": str(e).splitlines()[0][:200]}
            row = {"model": model, "backend": backend, "threads": threads, **s}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
        browser.close()
    print("| model | backend | threads | frames | ms/frame | RTF | first audio ms | load s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | {r['backend']} | {r['threads']} | error: {r['error']} | | | | |")
            continue
        print(f"| {r['model']} | {r['backend']} | {r['threads']} | {r['frames']} | {r['ms_per_frame']:.0f} | "
              f"{r['rtf']:.2f} | {r['first_audio_ms']:.0f} | {r['load_s']:.1f} |")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
