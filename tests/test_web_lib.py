"""voxport-web as an app developer gets it: `npm pack` of web/, installed from the tarball into a fresh
app directory outside web/ (its dependencies from the npm cache `npm ci` filled), then
- a page of that app (import map, no bundler, served on 127.0.0.1 with COOP/COEP) speaks the tiny
  artifact with Python's greedy and seeded codes, streams, and stops on an AbortSignal;
- with no sampling options it samples as the manifest says, as `voxport speak` does by default: the same
  codes, and the WAV the page downloads holds exactly the samples of `voxport speak`'s WAV;
- a text past one utterance's context speaks as the same sentences with the same codes as `voxport speak`;
- Node, onnxruntime-node, speaks the same artifact with the same codes and the same float samples.
The page's float samples differ from native onnxruntime's by up to 1e-5 (wasm kernels), so its WAV is
checked for Python's rounding of its own samples, and against `voxport speak`'s to one 16-bit step."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.web_helpers import open_context, python_speech
from voxport.serve import WEB_ROOT

TEXT = "Hello from the browser."
LONG = ("The old lighthouse keeper watched the storm. Waves broke over the rocks below! "
        "Did the ship see the light? It turned away just in time. Everyone on board was safe.")
NPM_ENV = {**os.environ, "ONNXRUNTIME_NODE_INSTALL": "skip", "npm_config_update_notifier": "false"}

APP_HTML = """<!doctype html><html><head><meta charset="utf-8"><title>an app</title><link rel="icon" href="data:,">
<script type="importmap">{"imports": {
  "voxport-web": "./node_modules/voxport-web/dist/voxport-web.js",
  "onnxruntime-web/webgpu": "./node_modules/onnxruntime-web/dist/ort.webgpu.min.mjs"}}</script>
<script type="module" src="app.js"></script></head>
<body><button id="save">Save WAV</button></body></html>"""

# the app: the library's public API and nothing else (onnxruntime-web found through the import map)
APP_JS = """import { VoxportTTS, toWav } from 'voxport-web';
let tts = null, last = null;
window.app = {
  async load(url, opts) { tts = await VoxportTTS.load(url, opts); return { device: tts.device, dtype: tts.dtype, threads: tts.threads }; },
  async say(text, opts = {}) {
    last = await tts.generate(text, opts);
    return { codes: last.codes, utterances: last.utterances.map((u) => u.text), stats: last.stats, audio: Array.from(last.audio) };
  },
  async streamed(pieces, opts = {}) {
    async function* arriving() { for (const p of pieces) { await new Promise((r) => setTimeout(r, 5)); yield p; } }
    const chunks = [];
    const s = tts.stream(arriving(), opts);
    for await (const pcm of s) chunks.push(pcm.length);
    return { codes: s.codes, chunks, utterances: s.utterances.map((u) => u.text) };
  },
  async stopAfter(n, text, opts = {}) {
    const ac = new AbortController();
    const r = await tts.generate(text, { ...opts, signal: ac.signal, onAudio: () => { if (--n === 0) ac.abort(); } });
    return { codes: r.codes, stopped: r.stopped, samples: r.audio.length };
  },
};
document.getElementById('save').onclick = () => {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([toWav(last.audio, last.sampleRate)], { type: 'audio/wav' }));
  a.download = 'speech.wav';
  a.click();
};
window.ready = true;
"""

NODE_JS = """import { VoxportTTS } from 'voxport-web';
const [dir, text] = process.argv.slice(2);
const tts = await VoxportTTS.load(dir, { dtype: 'fp32', threads: 1 });
const greedy = await tts.generate(text, { temperature: 0, maxFrames: 8 });
const seeded = await tts.generate(text, { temperature: 0.9, topK: 40, seed: 1234, maxFrames: 8 });
console.log(JSON.stringify({ device: tts.device, greedy: greedy.codes, seeded: seeded.codes, audio: Array.from(greedy.audio) }));
"""


def _npm(*args, cwd):
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm missing")
    out = subprocess.run([npm, *args], cwd=cwd, env=NPM_ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"npm {' '.join(args)}: {out.stderr[-2000:]}"
    return out.stdout


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """A fresh app directory with the packed library installed from its tarball."""
    if not (WEB_ROOT / "node_modules" / "onnxruntime-node").is_dir():
        pytest.skip("web/node_modules missing (`make web` runs npm ci)")
    root = tmp_path_factory.mktemp("webapp")
    packed = json.loads(_npm("pack", "--json", "--pack-destination", str(root), cwd=WEB_ROOT))[0]
    names = {f["path"] for f in packed["files"]}
    assert {"dist/voxport-web.js", "src/index.js", "types/index.d.ts", "package.json"} <= names, names
    assert not {n for n in names if n.startswith(("demo/", "node_modules/")) or n in ("app.js", "index.html")}
    app = root / "app"
    app.mkdir()
    (app / "package.json").write_text(json.dumps({"name": "an-app", "private": True, "type": "module"}))
    # the tarball, and its dependencies from the cache that web/'s `npm ci` filled (the registry is asked
    # only for package metadata, which a lock-file install does not cache)
    _npm("install", "--prefer-offline", "--no-audit", "--no-fund", str(root / packed["filename"]), "onnxruntime-node@1.30.0",
         cwd=app)
    (app / "index.html").write_text(APP_HTML)
    (app / "app.js").write_text(APP_JS)
    (app / "speak.mjs").write_text(NODE_JS)
    return app


@pytest.fixture(scope="module")
def long_dir(tiny_dir, tmp_path_factory):
    """The tiny artifact with a short context (64 positions), so a few sentences need several utterances."""
    art = tmp_path_factory.mktemp("short-context") / "tiny-short"
    shutil.copytree(tiny_dir, art)
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["runtime"]["max_positions"] = 64
    (art / "manifest.json").write_text(json.dumps(manifest))
    return art


@pytest.fixture(scope="module")
def page(browser, app, tiny_dir, long_dir):
    from voxport.serve import make_server
    import threading

    srv = make_server([tiny_dir, long_dir], port=0, web_root=app, quiet=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    ctx, page, console = open_context(browser, f"http://127.0.0.1:{srv.server_address[1]}/", ready="window.ready")
    assert page.evaluate("crossOriginIsolated")
    yield page, console
    ctx.close()
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def runtime(tiny_dir):
    from voxport.runtime.runtime import Runtime

    return Runtime(tiny_dir)


def voxport_speak(art: Path, text: str, out: Path, *args: str) -> tuple[np.ndarray, dict]:
    """`voxport speak` itself: (codes, stats)."""
    cmd = [sys.executable, "-m", "voxport.cli", "speak", str(art), text, "-o", str(out), "--codes-out",
           str(out.with_suffix(".json")), "--stats-json", str(out.with_suffix(".stats.json")), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return np.array(json.loads(out.with_suffix(".json").read_text())), json.loads(out.with_suffix(".stats.json").read_text())


def test_app_page_speaks_python_codes_greedy_seeded_streamed_and_stopped(page, runtime):
    from voxport.runtime.sampling import Sampling

    page, console = page
    info = page.evaluate("app.load('/models/tiny/', {device: 'wasm', dtype: 'fp32', threads: 2})")
    assert info == {"device": "wasm", "dtype": "fp32", "threads": 2}
    r = page.evaluate("([t]) => app.say(t, {temperature: 0, maxFrames: 10})", [TEXT])
    greedy, _, _ = python_speech(runtime, TEXT, max_frames=10)
    assert np.array_equal(np.array(r["codes"]), greedy)
    s = r["stats"]
    assert s["frames"] == 10 and s["runtime_calls_per_frame"] == 1 and s["embed_calls"] == 1 and s["codec_calls"] == 10, s
    assert set(s["graph_ms"]) == {"embed", "frame", "mimi_decoder_stream"}, s  # no step graphs downloaded or run

    r = page.evaluate("([t, o]) => app.say(t, o)", [TEXT, {"temperature": 0.9, "topK": 40, "seed": 1234, "maxFrames": 8,
                                                          "chunkFrames": 3}])
    seeded, _, _ = python_speech(runtime, TEXT, max_frames=8, sampling=Sampling(0.9, 40), seed=1234)
    assert np.array_equal(np.array(r["codes"]), seeded) and not np.array_equal(seeded, greedy[:8])
    assert r["stats"]["codec_calls"] == 3  # 8 frames in chunks of 3

    # text arriving in pieces speaks sentence by sentence, as Python's Speech given the same sentences
    pieces = ["Hello the", "re. How are", " you? Fi", "ne."]
    r = page.evaluate("([p, o]) => app.streamed(p, o)", [pieces, {"temperature": 0, "maxFrames": 4}])
    assert r["utterances"] == ["Hello there.", "How are you?", "Fine."]
    from voxport.runtime.stream import Speech

    speech = Speech(runtime, "", sentences=iter(r["utterances"]), max_frames=4)
    pcm = list(speech)
    assert np.array_equal(np.array(r["codes"]), np.stack(speech.codes)) and r["chunks"] == [len(c) for c in pcm]

    r = page.evaluate("([t, o]) => app.stopAfter(3, t, o)", [TEXT, {"temperature": 0, "maxFrames": 40}])
    assert r["stopped"] and len(r["codes"]) == 3 and np.array_equal(np.array(r["codes"]), greedy[:3])
    assert r["samples"] == 3 * runtime.rt["frame_size"]

    # top-k 0 is refused as Python refuses it
    msg = page.evaluate("([t]) => app.say(t, {topK: 0}).then(() => null, (e) => e.message)", [TEXT])
    with pytest.raises(Exception) as e:
        python_speech(runtime, TEXT, sampling=Sampling(0.9, 0))
    assert msg == str(e.value)
    assert console.errors == []


def test_app_page_defaults_and_download_equal_voxport_speak(page, tiny_dir, tmp_path):
    from voxport.runtime.audio import pcm16
    from voxport.runtime.runtime import Runtime
    from voxport.runtime.sampling import Sampling

    page, console = page
    page.evaluate("app.load('/models/tiny/', {device: 'wasm', dtype: 'fp32', threads: 1})")
    codes, _ = voxport_speak(tiny_dir, TEXT, tmp_path / "speak.wav", "--max-frames", "12", "--seed", "7")
    r = page.evaluate("([t]) => app.say(t, {maxFrames: 12, seed: 7})", [TEXT])  # the model's sampling, as speak's
    assert np.array_equal(np.array(r["codes"]), codes)
    with page.expect_download() as dl:
        page.click("#save")
    got, rate = sf.read(dl.value.path(), dtype="int16")
    want, want_rate = sf.read(tmp_path / "speak.wav", dtype="int16")
    page_pcm = np.array(r["audio"], np.float32)
    ref = python_speech(Runtime(tiny_dir), TEXT, max_frames=12, sampling=Sampling(0.9, 50), seed=7)[1]
    print(f"float PCM page vs Python: max {np.abs(page_pcm - ref).max():.3g}; "
          f"16-bit samples differing: {int(np.sum(got != want))} of {got.size}, max {np.abs(got.astype(int) - want).max()}")
    assert rate == want_rate and got.shape == want.shape
    assert np.array_equal(got, np.frombuffer(pcm16(page_pcm), "<i2"))  # the page rounds as Python's pcm16
    # the same codes decode to floats within 1.05e-5 of native onnxruntime's (wasm kernels add in another
    # order), so about 1% of samples land one 16-bit step apart (measured: 236 of 23,040)
    assert np.abs(page_pcm - ref).max() < 5e-5 and np.abs(got.astype(int) - want).max() <= 1
    assert console.errors == []


def test_long_text_speaks_as_voxport_speaks_it(page, long_dir, tmp_path):
    page, console = page
    page.evaluate("app.load('/models/tiny-short/', {device: 'wasm', dtype: 'fp32', threads: 1})")
    codes, stats = voxport_speak(long_dir, LONG, tmp_path / "long.wav", "--max-frames", "6", "--greedy")
    assert len(stats["utterance_texts"]) >= 3, stats["utterance_texts"]  # past one utterance's context
    r = page.evaluate("([t]) => app.say(t, {maxFrames: 6, temperature: 0})", [LONG])
    assert r["utterances"] == stats["utterance_texts"]
    assert np.array_equal(np.array(r["codes"]), codes)
    assert console.errors == []


def test_node_speaks_python_codes_with_onnxruntime_node(app, tiny_dir, runtime):
    from voxport.runtime.sampling import Sampling

    out = subprocess.run([shutil.which("node"), "speak.mjs", str(tiny_dir), TEXT], cwd=app, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["device"] == "cpu"
    assert np.array_equal(np.array(r["greedy"]), python_speech(runtime, TEXT, max_frames=8)[0])
    assert np.array_equal(np.array(r["seeded"]), python_speech(runtime, TEXT, max_frames=8, sampling=Sampling(0.9, 40),
                                                               seed=1234)[0])
    ref = python_speech(runtime, TEXT, max_frames=8)[1]
    audio = np.array(r["audio"], np.float32)
    assert np.array_equal(audio, ref)  # onnxruntime-node runs the same native kernels: the same floats
