"""What one frame of speech costs on WebGPU through voxport-web (onnxruntime-web in headless Chromium),
per frame call: GPU buffers created (count and bytes), compute dispatches, queue submits, writeBuffer
uploads and mapAsync readbacks, counted by wrapping the WebGPU API on the page before onnxruntime runs;
and whether the codes equal the Python runtime's. Three ways of running the frame:

- `captured`: the library's WebGPU path: the manifest's capture graph (`frame.capture`, no `If`, every
  value on the GPU) replayed under onnxruntime-web's graph capture, every input and output in a GPU
  buffer made once (kv.js CapturedFrame); the prompt runs uncaptured. A frame call here is everything
  the runtime does for it: feeds copied into the bound buffers, the replay, the codes read back;
- `in_place`: the frame graph uncaptured, the static KV cache in GPU buffers made once per utterance and
  bound as both past and present, noise and logits feeds written into buffers made once (the library's
  path before capture, and where the adapter refuses it);
- `fed_back`: each present output comes back as a new GPU tensor and is fed in as the next past, noise
  and logits feeds uploaded from the CPU every call (the path before the cache was bound).

Chromium here has only SwiftShader (a CPU-backed adapter): this counts, it does not time.

    .venv/bin/python -m voxport.bench.webgpu_frames artifacts/tiny [--frames 6] [--seed 1234 --temperature 0.9]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

MODES = ("fed_back", "in_place", "captured")
COUNTERS = """(() => {
  const c = window.gpuCount = { buffers: 0, bytes: 0, dispatches: 0, submits: 0, writes: 0, readbacks: 0 };
  if (!globalThis.GPUDevice) return;
  const wrap = (proto, name, count) => {
    const f = proto[name];
    proto[name] = function (...a) { count(a); return f.apply(this, a); };
  };
  wrap(GPUDevice.prototype, 'createBuffer', (a) => { c.buffers += 1; c.bytes += a[0].size; });
  wrap(GPUComputePassEncoder.prototype, 'dispatchWorkgroups', () => { c.dispatches += 1; });
  wrap(GPUComputePassEncoder.prototype, 'dispatchWorkgroupsIndirect', () => { c.dispatches += 1; });
  wrap(GPUQueue.prototype, 'submit', () => { c.submits += 1; });
  wrap(GPUQueue.prototype, 'writeBuffer', () => { c.writes += 1; });
  wrap(GPUBuffer.prototype, 'mapAsync', () => { c.readbacks += 1; });
})();"""
SPEAK = """async ({ mode, text, opts }) => {
  const { VoxportTTS } = await import('/dist/voxport-web.js');
  const ort = await import('/node_modules/onnxruntime-web/dist/ort.webgpu.min.mjs');
  ort.env.wasm.wasmPaths = '/node_modules/onnxruntime-web/dist/';
  const adapter = await navigator.gpu?.requestAdapter();
  if (!adapter) return { error: 'no WebGPU adapter' };
  const url = (await (await fetch('/api/models')).json()).models[0].url;
  const t0 = performance.now();
  const tts = await VoxportTTS.load(url, { ort, device: 'webgpu', dtype: opts.dtype, threads: 1, warmup: false,
    capture: mode === 'captured' });
  const loadMs = performance.now() - t0;
  const rt = tts.runtime, graphs = rt.graphs, frame = rt.contract.graph, run = graphs.run.bind(graphs), perFrame = [];
  if (mode === 'fed_back') graphs.deviceBuffers = async () => null;  // the library's wasm path, on WebGPU
  let inside = false;  // a captured call runs the graph inside it: counted once
  const counted = async (f) => {
    if (inside) return f();
    inside = true;
    const before = { ...window.gpuCount };
    try { return await f(); } finally {
      inside = false;
      perFrame.push(Object.fromEntries(Object.keys(before).map((k) => [k, window.gpuCount[k] - before[k]])));
    }
  };
  graphs.run = (name, ...a) => (name === frame ? counted(() => run(name, ...a)) : run(name, ...a));
  if (rt.captured) {
    const crun = rt.captured.run.bind(rt.captured);
    rt.captured.run = (...a) => counted(() => crun(...a));
  }
  const t1 = performance.now();
  // one codec call at the end: the frames are what is counted
  let r;
  try { r = await tts.generate(text, { ...opts, chunkFrames: 1e6 }); } catch (e) {
    return { error: String(e.message || e).slice(0, 500), calls: rt.captured?.calls, perFrame };
  }
  await tts.release();
  return { codes: r.codes, perFrame, capture: rt.captureStatus, graph: frame, adapter: adapter.info?.description || adapter.info?.architecture || 'unknown',
    fallback: Boolean(adapter.info?.isFallbackAdapter), load_ms: Math.round(loadMs), speak_ms: Math.round(performance.now() - t1) };
}"""


def python_codes(artifact: Path, text: str, frames: int, dtype: str, temperature: float, top_k: int, seed: int) -> list:
    from voxport.runtime.runtime import Runtime
    from voxport.runtime.sampling import Sampling
    from voxport.runtime.stream import Speech

    speech = Speech(Runtime(artifact, dtype=dtype), text, max_frames=frames, sampling=Sampling(temperature, top_k), seed=seed)
    for _ in speech:
        pass
    return [c.tolist() for c in speech.codes]


def count(artifact: Path, frames: int = 6, text: str = "Hello there.", dtype: str = "fp32", temperature: float = 0.0,
          top_k: int = 1, seed: int = 0, modes=MODES) -> dict:
    """Per mode: every frame call's counts, the steady frame's (the last), and whether the codes equal
    Python's; {"error": ...} when the page has no WebGPU adapter."""
    from playwright.sync_api import sync_playwright

    from tests.web_helpers import CHROMIUM, FLAGS, build_library, serving

    build_library()
    want = python_codes(artifact, text, frames, dtype, temperature, top_k, seed)
    opts = {"dtype": dtype, "maxFrames": frames, "temperature": temperature, "topK": top_k, "seed": seed}
    out = {"artifact": str(artifact), "dtype": dtype, "frames": frames, "temperature": temperature, "modes": {}}
    codes = {}
    with serving([artifact]) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        for mode in modes:
            page = browser.new_page()  # a fresh page: each mode's counters and sessions start from nothing
            page.add_init_script(COUNTERS)
            page.goto(url)
            page.wait_for_function("document.body.dataset.ready === 'true'")
            r = page.evaluate(SPEAK, {"mode": mode, "text": text, "opts": opts})
            page.close()
            if "error" in r:
                return {**out, **r}
            out["adapter"], out["fallback_adapter"] = r["adapter"], r["fallback"]
            differ = [i for i, (a, b) in enumerate(zip(r["codes"], want)) if a != b]
            out["modes"][mode] = {"graph": r["graph"], "graph_capture": r["capture"],
                                  "codes_equal_python": r["codes"] == want, "first_frame_unlike_python":
                                  differ[0] if differ else None, "load_ms": r["load_ms"], "speak_ms": r["speak_ms"],
                                  "steady": r["perFrame"][-1], "per_frame": r["perFrame"]}
            codes[mode] = r["codes"]
        browser.close()
    out["modes_agree"] = len({json.dumps(c) for c in codes.values()}) == 1  # binding never changes a code
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("artifact", type=Path)
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--text", default="Hello there.")
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-k", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--modes", default=",".join(MODES), help=f"comma list of {', '.join(MODES)}")
    a = p.parse_args()
    modes = a.modes.split(",")
    if bad := [m for m in modes if m not in MODES]:
        p.error(f"unknown mode {bad[0]!r} (choose from {', '.join(MODES)})")
    print(json.dumps(count(a.artifact, a.frames, a.text, a.dtype, a.temperature, a.top_k, a.seed, modes), indent=1))


if __name__ == "__main__":
    main()
