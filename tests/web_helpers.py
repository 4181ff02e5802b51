"""Browser test plumbing: the demo server on a free port and Debian's Chromium driven by Playwright
(the `browser` fixture is in conftest.py), the library's public API on a page (`use_library`), the
Python runtime's fused path to compare with."""

from __future__ import annotations

import io
import shutil
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voxport.serve import WEB_ROOT, make_server

CHROMIUM = "/usr/bin/chromium"
# Playwright's own browser download does not work here (no CDN); Debian's Chromium does.
FLAGS = ["--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--enable-unsafe-webgpu",
         "--autoplay-policy=no-user-gesture-required"]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"


def require_browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing (`make test` installs it with apt)")
    if not (WEB_ROOT / "node_modules" / "onnxruntime-web").is_dir():
        pytest.skip("web/node_modules missing (`make test` runs npm ci)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.skip("python playwright missing (pip install -e .[test])")
    build_library()


_built = []


def build_library():
    """web/dist/voxport-web.js from the current web/src (npm ci builds it too; a test must not run an
    older bundle than the source beside it). Once per test process: about 0.3 s."""
    if not _built:
        out = subprocess.run(["node", "build.mjs"], cwd=WEB_ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        _built.append(True)


@contextmanager
def serving(dirs: list[Path]):
    srv = make_server(dirs, port=0, quiet=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/"
    finally:
        srv.shutdown()
        srv.server_close()


def copy_artifact(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


class Console:
    """Console errors and uncaught exceptions of a page (a clean page has none)."""

    def __init__(self, page, allowed: tuple[str, ...] = ()):
        self.errors: list[str] = []
        self.allowed = allowed
        page.on("console", lambda m: m.type == "error" and self._add(m.text))
        page.on("pageerror", lambda e: self._add(f"uncaught: {e}"))

    def _add(self, text: str):
        if not any(a in text for a in self.allowed):
            self.errors.append(text)


def open_context(browser, url, allowed=(), ready="document.body.dataset.ready === 'true'"):
    """A fresh context per page: its own Cache Storage, so every test starts with an empty cache."""
    ctx = browser.new_context(viewport={"width": 1000, "height": 900}, accept_downloads=True)
    page = ctx.new_page()
    console = Console(page, allowed)
    page.goto(url)
    page.wait_for_function(ready)
    return ctx, page, console


def open_page(browser, url, allowed=()):
    """The demo page, ready (its device detected, its model list and precisions filled)."""
    return open_context(browser, url, allowed)


def wait_state(page, states, timeout=240_000):
    sel = ",".join(f"#stats[data-state={s}]" for s in states)
    page.wait_for_selector(sel, state="attached", timeout=timeout)
    return page.get_attribute("#stats", "data-state")


def load_via_ui(page, backend="wasm", threads="2", url=None, dtype="fp32"):
    """Python's fp32 codes are the reference: fp32 unless a test asks for another precision."""
    page.select_option("#backend", backend)
    page.fill("#threads", threads)
    if url:
        page.fill("#model-url", url)
    page.wait_for_function(f"document.querySelector('#precision').dataset.backend === '{backend}'")
    page.select_option("#precision", dtype)
    page.click("#load")
    return wait_state(page, ["ready", "error"])


def speak_via_ui(page, text, frames, temperature="0"):
    """Speak from the form (greedy unless told otherwise); the page's readouts."""
    page.fill("#text", text)
    page.fill("#max-frames", str(frames))
    page.fill("#temperature", temperature)
    page.click("#speak")
    assert wait_state(page, ["done", "error"]) == "done", page.text_content("#error")
    return {"frames": int(page.text_content("#s-frames"))}


# voxport-web's public API on the demo page's main thread (the page itself runs it in a worker): what a
# test reads that the page does not show (codes, prompt ids, stats)
LIBRARY = """async () => {
  if (window.lib) return;
  const { VoxportTTS } = await import('/dist/voxport-web.js');
  const ort = await import('/node_modules/onnxruntime-web/dist/ort.webgpu.min.mjs');
  ort.env.wasm.wasmPaths = '/node_modules/onnxruntime-web/dist/';
  let tts = null;
  const plain = (v) => (v == null ? v : Array.from(v));
  window.lib = {
    async load({ url, device = 'wasm', dtype = 'fp32', threads = 1 } = {}) {
      url ??= (await (await fetch('/api/models')).json()).models[0].url;
      await tts?.release();
      tts = await VoxportTTS.load(url, { ort, device, dtype, threads });
      return { device: tts.device, dtype: tts.dtype, threads: tts.threads };
    },
    async speak({ text, audio = false, ...opts }) {
      if (opts.voice === 'cloned') opts.voice = window.lib.voice;
      const r = await tts.generate(text, opts);
      return { codes: r.codes, stats: r.stats, timings: r.timings, audio: audio ? Array.from(r.audio) : null };
    },
    prompt: (turns) => turns.map((t) => { const p = tts.runtime.prompts;
      return { ...p.build(t), trailing: p.trailing(t), vectors: p.vectors(t).map(([r, v]) => [r, plain(v)]) }; }),
    tokenize: (turns) => turns.map((t) => tts.runtime.prompts.build(t).ids),
    async clone(bytes, name, text) {
      window.lib.voice = await tts.cloneVoice(new Uint8Array(bytes), { name, text });
      return { codes: window.lib.voice.codes, vector: plain(window.lib.voice.vector) };
    },
  };
}"""


def node_library(script: str, *args: str, stdin: str | None = None) -> str:
    """Runs `script` as an ES module under Node with the library's entry as its first argument (`lib`,
    then `args`), `require` defined; returns its stdout. Skips where Node or onnxruntime-node is missing."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node missing")
    if not (WEB_ROOT / "node_modules" / "onnxruntime-node").is_dir():
        pytest.skip("web/node_modules/onnxruntime-node missing (`make test` runs npm ci)")
    prelude = "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);"
    out = subprocess.run([node, "--input-type=module", "-e", prelude + script, (WEB_ROOT / "src" / "index.js").as_uri(),
                          *args], input=stdin, capture_output=True, text=True, timeout=300, cwd=WEB_ROOT)
    assert out.returncode == 0, out.stderr
    return out.stdout


def use_library(page, **load):
    """window.lib on the page, its model loaded (wasm, fp32, one thread unless told otherwise)."""
    page.evaluate(LIBRARY)
    return page.evaluate("(o) => window.lib.load(o)", load)


def python_speech(runtime, text, **kw):
    """The Python runtime's fused path (what `voxport speak` runs): codes [frames, K], PCM, stats."""
    from voxport.runtime.stream import Speech

    speech = Speech(runtime, text, **kw)
    pcm = [c for c in speech]
    return np.stack(speech.codes), (np.concatenate(pcm) if pcm else np.zeros(0, np.float32)), speech.stats


def download(page):
    """The page's Download WAV: 16-bit samples and rate."""
    with page.expect_download() as dl:
        page.click("#download")
    return sf.read(io.BytesIO(open(dl.value.path(), "rb").read()), dtype="int16")


def check_download(page, pcm, steps=1):
    """The page's WAV against Python's float PCM rounded by Python's pcm16: at most `steps` 16-bit steps
    apart (the page's wasm kernels give floats within about 1e-5 of native onnxruntime's)."""
    from voxport.runtime.audio import pcm16

    audio, sr = download(page)
    want = np.frombuffer(pcm16(pcm), "<i2")
    assert sr == 24000 and audio.shape == want.shape
    assert np.abs(audio.astype(int) - want).max() <= steps
