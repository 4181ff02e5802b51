"""How many GPU dispatches one call of a graph costs on WebGPU (onnxruntime-web in headless Chromium):
session profiling on, one warm-up call, then `--runs` calls; the profile's GPU events ("Api") per call,
per operator. Chromium here has only SwiftShader (a CPU-backed adapter), so this counts, it does not time.

    .venv/bin/python -m voxport.bench.webgpu_dispatches artifacts/tiny/onnx/frame.onnx [--runs 2]

Inputs are zeros of the declared shapes (named axes: batch 1, seq 2, past 0, frames 1), temperature 0
(greedy), int64 ones. Output: {"graph", "dispatches_per_call", "cpu_kernels_per_call", "by_op"}.
"""

from __future__ import annotations

import argparse
import collections
import functools
import http.server
import json
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np

WEB = Path(__file__).resolve().parents[2] / "web"
AXES = {"batch": 1, "seq": 2, "past": 0, "past_seq": 2, "frames": 1, "capacity": 8}
PAGE = """<!doctype html><script type="module">
import * as ort from './node_modules/onnxruntime-web/dist/ort.webgpu.min.mjs';
ort.env.wasm.wasmPaths = new URL('./node_modules/onnxruntime-web/dist/', import.meta.url).href;
window.profile = async (feeds, runs) => {
  const s = await ort.InferenceSession.create('./graph.onnx', { executionProviders: ['webgpu'], enableProfiling: true });
  const f = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, new ort.Tensor(v.type,
    v.type === 'int64' ? BigInt64Array.from(v.data.map(BigInt)) : Float32Array.from(v.data), v.dims)]));
  for (let i = 0; i <= runs; i++) await s.run(f);
  s.endProfiling();  // onnxruntime-web prints the profile as JSON lines on the console
};
window.ready = true;
</script>"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _feeds(graph: Path) -> dict:
    import onnxruntime as ort

    out = {}
    for i in ort.InferenceSession(str(graph)).get_inputs():
        shape = [AXES.get(d, 1) if isinstance(d, str) else d for d in i.shape]
        kind = "int64" if "int64" in i.type else "float32"
        value = 1 if kind == "int64" else 0.0
        out[i.name] = {"type": kind, "dims": shape, "data": [value] * int(np.prod(shape))}
    return out


def count(graph: Path, runs: int = 2) -> dict:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="voxport-webgpu-") as tmp:
        root = Path(tmp)
        (root / "node_modules").symlink_to(WEB / "node_modules")
        (root / "index.html").write_text(PAGE)
        shutil.copy(graph, root / "graph.onnx")  # one-file graphs (no external data)
        handler = functools.partial(_Quiet, directory=str(root))
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        lines: list[str] = []
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                            args=["--no-sandbox", "--enable-unsafe-webgpu"])
                page = browser.new_page()
                page.on("console", lambda m: lines.append(m.text))
                page.goto(f"http://127.0.0.1:{srv.server_address[1]}/index.html")
                page.wait_for_function("window.ready")
                page.evaluate("([f, n]) => window.profile(f, n)", [_feeds(graph), runs])
                browser.close()
        finally:
            srv.shutdown()
    events = [json.loads(line.rstrip(",")) for line in lines if line.startswith('{"cat"')]
    runs_at = sorted(e["ts"] for e in events if e["cat"] == "Session" and e["name"] == "model_run")
    start = runs_at[1] if len(runs_at) > 1 else 0  # after the warm-up call
    gpu = [e for e in events if e["cat"] == "Api" and e["ts"] >= start]
    cpu = [e for e in events if e["cat"] == "Node" and e["ts"] >= start and e["name"].endswith("_kernel_time")]
    by_op = collections.Counter(e["name"].split("&")[1] if "&" in e["name"] else e["name"] for e in gpu)
    return {"graph": str(graph), "dispatches_per_call": len(gpu) / runs, "cpu_kernels_per_call": len(cpu) / runs,
            "by_op": {k: v / runs for k, v in by_op.most_common(12)}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("graph", type=Path)
    p.add_argument("--runs", type=int, default=2)
    print(json.dumps(count(p.parse_args().graph, p.parse_args().runs), indent=1))


if __name__ == "__main__":
    main()
