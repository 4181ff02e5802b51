"""The browser demo in a real Chromium (Debian's, driven by Playwright), built on voxport-web's public
API: what it speaks and downloads equals the Python runtime's fused path (voxport/runtime/stream.py);
token ids, codes and stats through the library on the same page (tests/web_helpers.py LIBRARY); voice
prompts; damaged artifacts named on the page. The page's state is #stats[data-state]."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from tests.web_helpers import (SCREENSHOTS, check_download, copy_artifact, load_via_ui, open_page,
                               python_speech, serving, speak_via_ui, use_library, wait_state)

TEXTS = ["Hello, world!", "Numbers: 3.14, 42 and 1,000,000.", "Emoji 🎉🙂 and symbols #@%&*",
         "Привет, мир. 你好，世界。 こんにちは", "  spaces   and\ttabs\nnewline ", "¿Qué tal? «Ça va» — ok…"]
TEXT = "Hello from the browser."
FRAMES = 16  # wasm; the WebGPU adapter here is a slow software one


def assert_fused_stats(s, codes, rt, chunk=1):
    """One frame call per frame, one embed call for the prompt, one codec call per chunk of audio
    (the eos frame, if any, is not audio), and no step graph run."""
    frames = len(codes)
    audible = frames - int(bool(np.all(np.array(codes[-1][:-1]) == rt["codebook_eos_token_id"])))
    assert s["runtime_calls_per_frame"] == 1 and s["graph_ms"]["frame"]["calls"] == frames, s
    assert s["embed_calls"] == 1 and s["chunk_frames"] == [chunk], s  # a schedule, as Python's stats
    assert s["codec_calls"] == -(-audible // chunk) == s["graph_ms"]["mimi_decoder_stream"]["calls"], s
    assert set(s["graph_ms"]) == {"embed", "frame", "mimi_decoder_stream"}, s  # no step graphs


@pytest.fixture(scope="module")
def site(tiny_dir):
    with serving([tiny_dir]) as url:
        yield url


@pytest.fixture(scope="module")
def runtime(tiny_dir):
    from voxport.runtime.runtime import Runtime

    return Runtime(tiny_dir)


def test_page_speaks_the_python_codes_and_streams(browser, site, runtime):
    ctx, page, console = open_page(browser, site)
    assert page.locator("#model option").all_text_contents() == ["tiny"]
    assert load_via_ui(page) == "ready", page.text_content("#error")
    assert page.text_content("#s-backend") == "wasm, 2 thread(s), fp32"
    assert speak_via_ui(page, TEXT, FRAMES)["frames"] == FRAMES
    _, pcm, _ = python_speech(runtime, TEXT, max_frames=FRAMES)
    # streaming: the page heard its first audio before generation finished
    first, total = (float(page.text_content(i).split()[0]) for i in ("#s-first", "#s-total"))
    assert 0 < first < total, (first, total)
    # Download gives what was spoken: the Python runtime's streamed waveform as 16-bit PCM
    check_download(page, pcm)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / "after-speaking.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    # the library on the same page: Python's codes, one call a frame
    assert use_library(page, threads=2) == {"device": "wasm", "dtype": "fp32", "threads": 2}
    r = page.evaluate("(o) => window.lib.speak(o)", {"text": TEXT, "maxFrames": FRAMES, "temperature": 0})
    codes, _, _ = python_speech(runtime, TEXT, max_frames=FRAMES)
    assert np.array_equal(np.array(r["codes"]), codes), "page codes differ from `voxport speak --greedy`"
    assert r["stats"]["frames"] == FRAMES and r["stats"]["device"] == "wasm" and r["stats"]["threads"] == 2
    assert_fused_stats(r["stats"], r["codes"], runtime.rt)
    assert console.errors == []
    ctx.close()


def test_sampled_codes_equal_python_for_the_same_seed(browser, site, runtime):
    """The library draws the noise uniforms with a port of numpy's default_rng (PCG64 + SeedSequence),
    so temperature + top-k sampling gives Python's codes for the same seed; chunks of 3 frames."""
    from voxport.runtime.sampling import Sampling

    frames, seed = 8, 1234
    ctx, page, console = open_page(browser, site)
    use_library(page)
    r = page.evaluate("(o) => window.lib.speak(o)", {
        "text": TEXT, "maxFrames": frames, "seed": seed, "chunkFrames": 3, "temperature": 0.9, "topK": 40})
    codes, _, _ = python_speech(runtime, TEXT, max_frames=frames, sampling=Sampling(0.9, 40), seed=seed)
    assert np.array_equal(np.array(r["codes"]), codes)
    assert_fused_stats(r["stats"], r["codes"], runtime.rt, chunk=3)
    greedy, _, _ = python_speech(runtime, TEXT, max_frames=frames)
    assert not np.array_equal(codes, greedy)  # the noise mattered
    assert console.errors == []
    ctx.close()


def test_token_ids_equal_python(browser, site, runtime):
    from voxport.runtime.prompt import Utterance

    ctx, page, console = open_page(browser, site)
    use_library(page)
    codes = np.arange(3 * 32).reshape(3, 32) % 2048  # a 3-frame voice prompt: <|AUDIO|> expansion
    turns, expected = [], []
    for text in TEXTS:
        turns.append([{"text": text, "speaker": 1}])
        expected.append(runtime.prompts.build([Utterance(text, 1)])[0][0].tolist())
        turns.append([{"text": "ref", "speaker": 0, "codes": codes.tolist()}, {"text": text, "speaker": 0}])
        expected.append(runtime.prompts.build([Utterance("ref", 0, codes), Utterance(text, 0)])[0][0].tolist())
    got = page.evaluate("(turns) => window.lib.tokenize(turns)", turns)
    for text, g, e in zip([t for t in TEXTS for _ in (0, 1)], got, expected):
        assert g == e, text
    assert console.errors == []
    ctx.close()


def _fill_url_and_load(page, url):
    return load_via_ui(page, backend="wasm", threads="1", url=url)


def test_damaged_and_missing_files_are_named_on_the_page(browser, tiny_dir, tmp_path):
    damaged = copy_artifact(tiny_dir, tmp_path / "damaged")
    data = bytearray((damaged / "onnx/frame.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    (damaged / "onnx/frame.onnx").write_bytes(bytes(data))
    missing = copy_artifact(tiny_dir, tmp_path / "missing")
    (missing / "onnx/mimi_decoder_stream.onnx").unlink()
    with serving([damaged, missing]) as url:
        ctx, page, console = open_page(browser, url, allowed=("Failed to load resource",))
        assert _fill_url_and_load(page, "/models/damaged/") == "error"
        assert page.is_visible("#error")
        assert page.text_content("#error") == "onnx/frame.onnx: damaged (sha256 differs from the manifest)"
        assert _fill_url_and_load(page, "/models/missing/") == "error"
        assert page.text_content("#error") == (
            f"onnx/mimi_decoder_stream.onnx: missing (HTTP 404 for {url}models/missing/onnx/mimi_decoder_stream.onnx)")
        assert page.is_disabled("#speak")
        assert console.errors == []
        ctx.close()


def test_default_precision_is_the_fastest_measured_per_backend(browser, site):
    """wasm: fp32 (marvis-250m, 2 threads: 362 ms/frame against q8 526 and q4 3,204); WebGPU without
    shader-f16 (SwiftShader here): q4, whose 4-bit MatMuls have WebGPU kernels."""
    ctx, page, console = open_page(browser, site)
    for backend, want in (("wasm", "fp32"), ("webgpu", "q4")):
        page.select_option("#backend", backend)
        page.wait_for_function(f"document.querySelector('#precision').dataset.backend === '{backend}'")
        assert page.input_value("#precision") == want, backend
    assert console.errors == []
    ctx.close()


def test_q4_runs_on_wasm(browser, site, tiny_dir):
    """q4 keeps its embedding tables in a form wasm has (int8 Gather + DequantizeLinear, not
    GatherBlockQuantized): the 4-bit variant loads and speaks on wasm, one call a frame."""
    from voxport.runtime.runtime import Runtime

    ctx, page, console = open_page(browser, site)
    page.select_option("#backend", "wasm")
    page.wait_for_function("[...document.querySelectorAll('#precision option')].some((o) => o.value === 'q4')")
    page.select_option("#precision", "q4")
    page.fill("#threads", "1")
    page.click("#load")
    assert wait_state(page, ["ready", "error"]) == "ready", page.text_content("#error")
    assert page.text_content("#s-backend").endswith(", q4")
    use_library(page, dtype="q4")
    r = page.evaluate("(o) => window.lib.speak(o)", {"text": TEXT, "maxFrames": 6, "temperature": 0, "audio": True})
    q4 = Runtime(tiny_dir, dtype="q4")
    assert_fused_stats(r["stats"], r["codes"], q4.rt)
    # Codes are not compared: onnxruntime's CPU kernel runs MatMulNBits on int8 activations
    # (accuracy_level 4) where wasm computes in fp32, and tiny's flat random logits flip argmaxes
    # (measured: 32% of codes equal). The page's audio is compared instead: the Python q4 codec on
    # the page's own codes.
    from voxport.runtime.codec_stream import CodecStream

    codec = CodecStream(q4.graphs)
    pcm = np.concatenate([codec.decode(np.array(f)[None]) for f in r["codes"]])
    audio = np.array(r["audio"], np.float32)
    snr = 10 * np.log10(np.sum(pcm ** 2) / np.sum((audio - pcm) ** 2))
    print(f"q4 wasm page audio vs Python q4 codec on the same codes: SNR {snr:.1f} dB")
    assert audio.shape == pcm.shape and snr > 40, snr
    assert console.errors == []
    ctx.close()


def test_files_come_from_the_cache_and_a_changed_file_is_fetched_again(browser, tiny_dir, tmp_path):
    art = copy_artifact(tiny_dir, tmp_path / "cached")
    with serving([art]) as url:
        ctx, page, console = open_page(browser, url)
        fetched = []  # artifact files the page requested (the manifest is always fetched fresh)
        page.on("request", lambda r: "/models/" in r.url and not r.url.endswith("manifest.json")
                and fetched.append(r.url.rsplit("/models/cached/", 1)[1]))
        assert _fill_url_and_load(page, "/models/cached/") == "ready"
        assert "onnx/frame.onnx" in fetched
        assert not {"onnx/backbone.onnx", "onnx/depth.onnx", "onnx/mimi_decoder.onnx"} & set(fetched)  # step graphs: Python only
        fetched.clear()
        assert _fill_url_and_load(page, "/models/cached/") == "ready"
        assert fetched == []  # every graph and tokenizer file came from Cache Storage
        # a new version of one file (manifest updated): only that file crosses the network again
        tpl = art / "chat_template.jinja"
        tpl.write_text(tpl.read_text() + "{# a new revision #}\n")
        manifest = json.loads((art / "manifest.json").read_text())
        from voxport.manifest import file_entry
        manifest["files"] = [file_entry(art, e["path"]) for e in manifest["files"]]
        (art / "manifest.json").write_text(json.dumps(manifest))
        fetched.clear()
        assert _fill_url_and_load(page, "/models/cached/") == "ready"
        assert fetched == ["chat_template.jinja"]
        assert console.errors == []
        ctx.close()


def test_webgpu_gives_the_same_codes(browser, site, runtime):
    """WebGPU on Chromium's software adapter (SwiftShader): slow, so a few frames prove the loop
    (KV, next input and codec state kept on the GPU between calls) gives the Python codes and audio."""
    frames = 3
    ctx, page, console = open_page(browser, site)
    if not page.evaluate("navigator.gpu.requestAdapter().then((a) => a !== null)"):
        pytest.skip("no WebGPU adapter in this Chromium")
    assert load_via_ui(page, backend="webgpu") == "ready", page.text_content("#error")
    speak_via_ui(page, TEXT, frames)
    codes, pcm, _ = python_speech(runtime, TEXT, max_frames=frames)
    check_download(page, pcm, steps=40)  # another device's float arithmetic (1e-3)
    use_library(page, device="webgpu")
    r = page.evaluate("(o) => window.lib.speak(o)", {"text": TEXT, "maxFrames": frames, "temperature": 0})
    assert r["stats"]["device"] == "webgpu"
    assert np.array_equal(np.array(r["codes"]), codes)
    assert_fused_stats(r["stats"], r["codes"], runtime.rt)
    assert console.errors == []
    ctx.close()


def _tone(seconds, amp=0.3, rate=24000):
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * 180 * t) + amp / 2 * np.sin(2 * np.pi * 470 * t)).astype(np.float32)


def test_voice_prompt_from_a_file_gives_the_python_codes(browser, site, runtime, tmp_path):
    from voxport.runtime.prompt import Utterance

    frames, ref_text = 10, "A short reference."
    path = tmp_path / "voice.wav"
    sf.write(path, _tone(1.3), 24000, subtype="PCM_16")  # at the codec rate: no resampler in the way
    ctx, page, console = open_page(browser, site)
    assert load_via_ui(page) == "ready"
    page.set_input_files("#voice-file", str(path))
    page.wait_for_function("document.querySelector('#voice-status').dataset.frames")
    assert "voice.wav, 17 frames" in page.text_content("#voice-status")
    page.fill("#voice-text", ref_text)
    ref = runtime.reference(path, ref_text, 0)
    speak_via_ui(page, TEXT, frames)
    codes, pcm, _ = python_speech(runtime, TEXT, context=[ref], max_frames=frames)
    check_download(page, pcm)
    use_library(page)
    got = page.evaluate("([b, n, t]) => window.lib.clone(b, n, t)", [list(path.read_bytes()), "voice.wav", ref_text])
    assert np.array_equal(np.array(got["codes"]), ref.codes)
    r = page.evaluate("(o) => window.lib.speak(o)", {"text": TEXT, "maxFrames": frames, "temperature": 0, "voice": "cloned"})
    assert np.array_equal(np.array(r["codes"]), codes)
    assert runtime.prompts.build([ref, Utterance(TEXT, 0)])[0].shape[1] < runtime.rt["max_positions"]
    assert console.errors == []
    ctx.close()


def test_bad_voice_prompts_are_explained_on_the_page(browser, site, tmp_path):
    """Python's read_reference messages (voxport/runtime/audio.py), named by the file."""
    cases = {
        "short.wav": (_tone(0.3), "short.wav: reference audio is 0.30 s; at least 0.5 s is needed"),
        "silent.wav": (np.zeros(24000, np.float32), "silent.wav: reference audio is silent (RMS below 0.0001)"),
        "long.wav": (_tone(21.0), "long.wav: reference audio is 21.0 s; at most 20.5 s fits this model's "
                                  "context with room to speak"),
        "notes.wav": (None, "notes.wav: unsupported or damaged audio; the browser could not decode it "
                            "(try WAV or MP3)"),
    }
    ctx, page, console = open_page(browser, site)
    assert load_via_ui(page, threads="1") == "ready"
    for name, (audio, message) in cases.items():
        path = tmp_path / name
        if audio is None:
            path.write_text("these are not audio samples\n")
        else:
            sf.write(path, audio, 24000, subtype="PCM_16")
        page.set_input_files("#voice-file", str(path))
        page.wait_for_function("(m) => document.querySelector('#error').textContent === m", arg=message)
        assert page.is_visible("#error")
        assert page.get_attribute("#voice-status", "data-frames") == ""
        page.set_input_files("#voice-file", [])
    assert console.errors == []
    ctx.close()


def test_keyboard_alone_speaks_and_stops_at_phone_width(browser, site, runtime):
    ctx, page, console = open_page(browser, site)
    page.set_viewport_size({"width": 375, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 375  # nothing wider than a phone
    unlabelled = page.evaluate("""[...document.querySelectorAll('input, select, textarea, button')]
        .filter((e) => !(e.labels?.length || e.textContent.trim() || e.getAttribute('aria-label'))).map((e) => e.id)""")
    assert unlabelled == []
    assert load_via_ui(page, threads="1") == "ready"
    page.fill("#max-frames", "300")
    page.focus("#text")
    order = []
    for _ in range(6):  # text -> max frames -> temperature -> top-k -> top-p -> seed -> Speak
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id"))
    assert order == ["max-frames", "temperature", "top-k", "top-p", "seed", "speak"]
    page.keyboard.press("Enter")
    page.wait_for_function("Number(document.querySelector('#s-frames').textContent) >= 3")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "stop"
    page.keyboard.press("Enter")
    assert wait_state(page, ["done", "error"]) == "done"
    n = int(page.text_content("#s-frames"))
    assert 3 <= n < 300
    # the form's empty sampling fields: the model's settings (temperature 0.9, top-k 50), seed 0
    from voxport.runtime.sampling import Sampling

    check_download(page, python_speech(runtime, TEXT, max_frames=n, sampling=Sampling(0.9, 50))[1])
    assert console.errors == []
    ctx.close()
