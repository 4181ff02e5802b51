"""The page speaks a Qwen3-TTS artifact (the dual_track prompt format, text fed per frame, the talker's
logits processors, two sampling groups) with the Python runtime's codes: the tiny preset, greedy and
seeded, its prompt ids and voice errors equal to voxport/runtime/prompt.py's; the tiny Base preset
clones a voice from a reference clip (its codes and speaker vector) with the Python runtime's codes."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from tests.web_helpers import (check_download, copy_artifact, load_via_ui, open_page, python_speech, serving,
                               speak_via_ui, use_library, wait_state)

TEXT = "Hello there, how are you?"
FRAMES = 12
REF_TEXT = "A short reference clip."


@pytest.fixture(scope="module")
def site(qwen_dir):
    with serving([qwen_dir]) as url:
        yield url


@pytest.fixture(scope="module")
def runtime(qwen_dir):
    from voxport.runtime.runtime import Runtime

    return Runtime(qwen_dir)


def test_page_speaks_python_codes_greedy_and_seeded(browser, site, runtime):
    from voxport.runtime.sampling import Sampling

    ctx, page, console = open_page(browser, site)
    page.select_option("#backend", "wasm")
    page.fill("#threads", "1")
    page.wait_for_function("document.querySelector('#precision').dataset.backend === 'wasm'")
    page.select_option("#precision", "fp32")
    page.click("#load")
    assert wait_state(page, ["ready", "error"]) == "ready", page.text_content("#error")
    names = runtime.rt["generation"]["speakers"]["names"]
    assert page.locator("#speaker option").all_text_contents() == names
    assert page.input_value("#speaker") == names[0]  # the default speaker, as Runtime.default_speaker
    assert page.locator("#language option").all_text_contents() == ["auto", *runtime.rt["generation"]["prompt"]["languages"]]
    page.select_option("#speaker", "ryan")
    page.select_option("#language", "english")
    page.fill("#text", TEXT)
    page.fill("#max-frames", str(FRAMES))
    page.fill("#temperature", "0")
    page.click("#speak")
    assert wait_state(page, ["done", "error"]) == "done", page.text_content("#error")
    codes, pcm, _ = python_speech(runtime, TEXT, speaker="ryan", language="english", sampling=Sampling(),
                                  max_frames=FRAMES)
    assert page.text_content("#s-frames") == str(len(codes))
    check_download(page, pcm)  # the form's speaker and language reached the prompt

    use_library(page)
    r = page.evaluate("(o) => window.lib.speak(o)", {"text": TEXT, "voice": "ryan", "language": "english",
                                                     "maxFrames": FRAMES, "temperature": 0})
    assert np.array_equal(np.array(r["codes"]), codes), "page codes differ from `voxport speak --greedy`"
    s = r["stats"]
    assert s["graph_ms"]["frame"]["calls"] == len(codes) and s["runtime_calls_per_frame"] == 1, s
    assert s["embed_calls"] == 1 and s["graph_ms"]["prompt_embed"]["calls"] == 2, s  # the prompt, its trailing text

    r = page.evaluate("(o) => window.lib.speak(o)", {
        "text": TEXT, "voice": "dylan", "language": "auto", "maxFrames": FRAMES, "seed": 7, "temperature": 0.9, "topK": 50})
    sampled, _, _ = python_speech(runtime, TEXT, speaker="dylan", sampling=Sampling(0.9, 50), seed=7,
                                  max_frames=FRAMES)
    assert np.array_equal(np.array(r["codes"]), sampled)
    assert not np.array_equal(sampled, python_speech(runtime, TEXT, speaker="dylan", sampling=Sampling(),
                                                     max_frames=FRAMES)[0])  # the noise mattered
    # no sampling options: the manifest's (talker and code predictor groups, top-p, repetition penalty),
    # as `voxport speak` samples by default
    r = page.evaluate("(o) => window.lib.speak(o)", {"text": TEXT, "voice": "dylan", "maxFrames": FRAMES, "seed": 7})
    assert np.array_equal(np.array(r["codes"]), sampled)
    # a strong repetition penalty changes the greedy codes (the default, 1.05, seldom does in 12 frames)
    r = page.evaluate("(o) => window.lib.speak(o)", {
        "text": TEXT, "voice": "ryan", "language": "english", "maxFrames": FRAMES, "temperature": 0,
        "repetitionPenalty": 3.0})
    penalised, _, _ = python_speech(runtime, TEXT, speaker="ryan", language="english",
                                    sampling=Sampling(repetition_penalty=3.0), max_frames=FRAMES)
    assert np.array_equal(np.array(r["codes"]), penalised) and not np.array_equal(penalised, codes)
    # top-p from the page's field, on both sampling groups (talker and code predictor)
    page.fill("#top-p", "0.6")
    page.fill("#seed", "5")
    speak_via_ui(page, TEXT, FRAMES, temperature="1.2")
    nucleus, pcm, _ = python_speech(runtime, TEXT, speaker="ryan", language="english", seed=5, max_frames=FRAMES,
                                    sampling=Sampling(1.2, 50, top_p=0.6))
    check_download(page, pcm)
    r = page.evaluate("(o) => window.lib.speak(o)", {"text": TEXT, "voice": "ryan", "language": "english", "seed": 5,
                                                     "maxFrames": FRAMES, "temperature": 1.2, "topP": 0.6})
    assert np.array_equal(np.array(r["codes"]), nucleus)
    assert not np.array_equal(nucleus, python_speech(runtime, TEXT, speaker="ryan", language="english", seed=5,
                                                     max_frames=FRAMES, sampling=Sampling(1.2, 50))[0])
    assert console.errors == []
    ctx.close()


def test_webgpu_gives_the_same_codes(browser, site, runtime):
    """WebGPU on Chromium's software adapter (slow: a few frames): greedy, and sampled with top-k and
    top-p (the sampling branch's TopK, Softmax and CumSum on the GPU), equal to Python's codes."""
    from voxport.runtime.sampling import Sampling

    frames = 3
    ctx, page, console = open_page(browser, site)
    if not page.evaluate("navigator.gpu.requestAdapter().then((a) => a !== null)"):
        pytest.skip("no WebGPU adapter in this Chromium")
    use_library(page, device="webgpu")
    for sampling, hook in ((Sampling(), {"temperature": 0}),
                           (Sampling(0.9, 50, top_p=0.8), {"temperature": 0.9, "topK": 50, "topP": 0.8})):
        r = page.evaluate("(o) => window.lib.speak(o)", {
            "text": TEXT, "voice": "ryan", "language": "english", "maxFrames": frames, "seed": 3, **hook})
        codes, _, _ = python_speech(runtime, TEXT, speaker="ryan", language="english", sampling=sampling, seed=3,
                                    max_frames=frames)
        assert r["stats"]["device"] == "webgpu" and np.array_equal(np.array(r["codes"]), codes), hook
    assert console.errors == []
    ctx.close()


def test_prompt_ids_and_voice_errors_equal_python(browser, site, runtime):
    from voxport.errors import InputError
    from voxport.runtime.prompt import Utterance

    ctx, page, console = open_page(browser, site)
    use_library(page)
    # a dialect speaker with auto / chinese / another language, a plain one, no language
    cases = [("dylan", None), ("dylan", "chinese"), ("eric", "english"), ("ryan", "german"), ("vivian", "auto"),
             ("aiden", None)]
    texts = ["Hi.", "Numbers: 3.14 and 42!", "你好，世界。 Привет"]
    turns = [[{"text": t, "speaker": s, "language": lang}] for t in texts for s, lang in cases]
    got = page.evaluate("(turns) => window.lib.prompt(turns)", turns)
    for (turn,), g in zip(turns, got):
        u = Utterance(turn["text"], turn["speaker"], language=turn["language"])
        text, codec = runtime.prompts.build([u])
        assert g["ids"] == text[0].tolist() and g["codes"] == codec[0].tolist(), turn
        assert g["trailing"] == runtime.prompts.trailing([u]).tolist(), turn
    for bad in ({"speaker": "nobody"}, {"language": "klingon"}, {"instruct": "whisper"}):
        with pytest.raises(InputError) as e:
            runtime.check_voice(bad.get("speaker"), bad.get("language"), bad.get("instruct"))
        o = {"text": TEXT, "maxFrames": 1, "voice": bad.get("speaker"), **{k: v for k, v in bad.items() if k != "speaker"}}
        message = page.evaluate("(o) => window.lib.speak(o).then(() => null, (e) => e.message)", o)
        assert message == str(e.value), bad
    assert console.errors == []
    ctx.close()


def test_logits_processor_feeds_equal_python(browser, site, runtime):
    """The min-frames stop ban and the suppressed range, frame by frame (the tiny model's greedy codes
    never reach the stop token early, so speaking alone would not show them)."""
    from voxport.runtime.sampling import Sampling

    frames = [[5] * 16, [166] * 16, [5] * 16]
    state = runtime.contract.logits_state(Sampling())
    expected = []
    for f in frames:
        expected.append({k: np.array(v) for k, v in state.feeds().items()})
        state.update(np.array(f))
    ctx, page, console = open_page(browser, site)
    got = page.evaluate("""async ({rt, frames}) => {
        const { FrameContract } = await import('./src/runtime/contract.js');
        const ort = { Tensor: class { constructor(type, data, dims) { this.data = data; this.dims = dims; } } };
        const s = new FrameContract(rt).logitsState(ort, {});
        const nest = (t) => (t.dims.length ? [Array.from(t.data, (x) => (x === -Infinity ? '-inf' : x))] : t.data[0]);
        const out = [];
        for (const f of frames) {
          out.push(Object.fromEntries(Object.entries(s.feeds()).map(([k, t]) => [k, nest(t)])));
          s.update(f);
        }
        return out;
    }""", {"rt": runtime.rt, "frames": frames})
    def as_json(v):  # -inf as the page spells it; a scalar as a number
        v = np.asarray(v)  # the page nests every tensor with a shape as [data]: one row, as [1, V]
        return [["-inf" if x == -np.inf else float(x) for x in v.reshape(-1)]] if v.ndim else float(v)

    assert got == [{k: as_json(v) for k, v in e.items()} for e in expected]
    assert console.errors == []
    ctx.close()


def test_instruct_prompt_ids_equal_python(browser, qwen_dir, tmp_path):
    """An instruction's rows (a model that takes one: the tiny artifact's manifest says so here)."""
    import json

    from tests.web_helpers import copy_artifact
    from voxport.runtime.prompt import DualTrackPrompt, Utterance

    art = copy_artifact(qwen_dir, tmp_path / "instruct")
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["runtime"]["generation"]["prompt"]["instruct"] = True
    (art / "manifest.json").write_text(json.dumps(manifest))
    prompts = DualTrackPrompt(art, manifest["runtime"])
    turn = {"text": "Hi there.", "speaker": "ryan", "language": "english", "instruct": "Speak slowly, 轻声."}
    text, codec = prompts.build([Utterance(**turn)])
    with serving([art]) as url:
        ctx, page, console = open_page(browser, url)
        use_library(page, url=f"{url}models/instruct/")
        (got,) = page.evaluate("(turns) => window.lib.prompt(turns)", [[turn]])
        assert got["ids"] == text[0].tolist() and got["codes"] == codec[0].tolist()
        assert console.errors == []
        ctx.close()


@pytest.fixture(scope="module")
def base_site(qwen_base_dir):
    with serving([qwen_base_dir]) as url:
        yield url


@pytest.fixture(scope="module")
def base_runtime(qwen_base_dir):
    from voxport.runtime.runtime import Runtime

    return Runtime(qwen_base_dir)


def _chirp(path, seconds, rate=24000):
    """A rising tone with some noise, at the codec rate (no resampler in the way), 16-bit as a browser
    and soundfile both read it."""
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(0).standard_normal(t.size)
    sf.write(path, (0.3 * np.sin(2 * np.pi * (150 * t + 400 * t ** 2)) + 0.05 * noise).astype(np.float32), rate,
             subtype="PCM_16")
    return path


def test_clone_prompt_rows_equal_python(browser, base_site, base_runtime):
    """A reference turn's rows: its transcript longer than its codes (the rest is fed per frame) and
    shorter (the codes get the pad text id), with and without a speaker vector, a language, text with
    characters a JS replacement pattern would expand ($&, $')."""
    from voxport.runtime.prompt import Utterance

    gen = base_runtime.rt["generation"]
    rng = np.random.default_rng(1)
    hidden = base_runtime.graphs.manifest["graphs"][gen["prompt"]["graph"]]["outputs"][0]["shape"][-1]
    vector = rng.standard_normal(hidden).astype(np.float32)
    cases = [("A reference transcript a good deal longer than its clip of three frames.", 3, TEXT, None, vector),
             ("Hi.", 40, TEXT, "english", vector),
             ("Costs $& and $'5.", 6, "It is $' and $&.", "german", None)]
    turns = [[{"text": ref_text, "speaker": None, "codes": rng.integers(0, 2048, (n, gen["prompt"]["groups"])).tolist(),
               "vector": None if v is None else v.tolist()},
              {"text": text, "speaker": None, "language": lang}] for ref_text, n, text, lang, v in cases]
    ctx, page, console = open_page(browser, base_site)
    use_library(page)
    got = page.evaluate("(turns) => window.lib.prompt(turns)", turns)
    pad = gen["prompt"]["text_ids"]["pad"]
    for (ref, u), g in zip(turns, got):
        py = [Utterance(ref["text"], None, np.array(ref["codes"]), vector=None if ref["vector"] is None
                        else np.array(ref["vector"], np.float32)), Utterance(u["text"], None, language=u["language"])]
        text, codec = base_runtime.prompts.build(py)
        assert g["ids"] == text[0].tolist() and g["codes"] == codec[0].tolist(), ref["text"]
        assert g["trailing"] == base_runtime.prompts.trailing(py).tolist(), ref["text"]
        vectors = base_runtime.prompts.vectors(py)
        assert [r for r, _ in g["vectors"]] == [r for r, _ in vectors], ref["text"]
        assert all(np.array_equal(np.array(list(gv), np.float32), pv) for (_, gv), (_, pv) in zip(g["vectors"], vectors))
    # both branches: the long transcript leaves text to feed per frame, the short one pads the codes
    assert len(got[0]["trailing"]) > 1 and got[1]["trailing"] == [pad] and pad in got[1]["ids"][-40:]
    assert len(got[0]["vectors"]) == 1 and got[2]["vectors"] == []
    assert console.errors == []
    ctx.close()


def test_page_clones_a_voice_with_python_codes(browser, base_site, base_runtime, tmp_path):
    """A reference WAV through the page's voice prompt UI speaks as `voxport speak --ref-audio` does; through
    the library, its codes and speaker vector equal Runtime.reference's, and the cloned voice's codes equal
    Python's, greedy and seeded."""
    from voxport.runtime.prompt import Utterance
    from voxport.runtime.sampling import Sampling

    path = _chirp(tmp_path / "ref.wav", 1.5)
    ref = base_runtime.reference(path, REF_TEXT)
    ctx, page, console = open_page(browser, base_site)
    assert load_via_ui(page, threads="1") == "ready", page.text_content("#error")
    # a Base model: no speakers to pick, no instruction; it asks for the voice to clone
    assert page.is_hidden("#speaker-label") and page.is_hidden("#instruct-label")
    assert page.text_content("#voice-h") == "Voice to clone"
    page.set_input_files("#voice-file", str(path))
    page.wait_for_function("document.querySelector('#voice-status').dataset.frames")
    assert page.get_attribute("#voice-status", "data-frames") == str(len(ref.codes))
    page.click("#speak")  # no transcript yet: asked for, as `voxport speak --ref-audio` asks for --ref-text
    assert wait_state(page, ["done", "error"]) == "error"
    assert page.text_content("#error") == "give the transcript of ref.wav (what it says): the model reads it beside the clip"
    page.fill("#voice-text", REF_TEXT)
    speak_via_ui(page, TEXT, FRAMES)
    codes, pcm, _ = python_speech(base_runtime, TEXT, context=[ref], sampling=Sampling(), max_frames=FRAMES)
    check_download(page, pcm)

    use_library(page)
    got = page.evaluate("([b, n, t]) => window.lib.clone(b, n, t)", [list(path.read_bytes()), "ref.wav", REF_TEXT])
    assert np.array_equal(np.array(got["codes"]), ref.codes)
    vector = np.array(got["vector"], np.float32)
    # onnxruntime-web's wasm kernels against onnxruntime's CPU ones: 3.9e-7 measured on this clip (values
    # up to 0.09), 1.8e-6 on WebGPU's software adapter
    assert vector.shape == ref.vector.shape and np.abs(vector - ref.vector).max() <= 1e-5
    r = page.evaluate("(o) => window.lib.speak(o)", {"text": TEXT, "maxFrames": FRAMES, "temperature": 0, "voice": "cloned"})
    assert np.array_equal(np.array(r["codes"]), codes), "page codes differ from `voxport speak --ref-audio --greedy`"
    # the vector mattered: the same prompt without it speaks other codes
    unvoiced = Utterance(REF_TEXT, None, ref.codes)
    assert not np.array_equal(codes, python_speech(base_runtime, TEXT, context=[unvoiced], sampling=Sampling(),
                                                   max_frames=FRAMES)[0])

    r = page.evaluate("(o) => window.lib.speak(o)", {
        "text": TEXT, "maxFrames": FRAMES, "seed": 7, "temperature": 0.9, "topK": 50, "voice": "cloned"})
    sampled, _, _ = python_speech(base_runtime, TEXT, context=[ref], sampling=Sampling(0.9, 50), seed=7,
                                  max_frames=FRAMES)
    assert np.array_equal(np.array(r["codes"]), sampled) and not np.array_equal(sampled, codes)
    assert console.errors == []
    ctx.close()


def test_a_clip_too_short_for_the_speaker_encoder_gets_pythons_message(browser, qwen_base_dir, tmp_path):
    """The speaker encoder's minimum (the released encoder's, 1280 samples, is under the 0.5 s floor, so a
    test manifest raises it to 1 s) refuses a 0.75 s clip with the Python runtime's words."""
    import json

    from voxport.errors import InputError
    from voxport.runtime.runtime import Runtime

    art = copy_artifact(qwen_base_dir, tmp_path / "min1s")
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["runtime"]["generation"]["codec"]["speaker_encoder_min_samples"] = manifest["runtime"]["sample_rate"]
    (art / "manifest.json").write_text(json.dumps(manifest))
    path = _chirp(tmp_path / "short.wav", 0.75)
    with pytest.raises(InputError) as e:
        Runtime(art).reference(path, REF_TEXT)
    with serving([art]) as url:
        ctx, page, console = open_page(browser, url)
        assert load_via_ui(page, threads="1", url=f"{url}models/min1s/") == "ready", page.text_content("#error")
        page.set_input_files("#voice-file", str(path))
        page.wait_for_function("(m) => document.querySelector('#error').textContent === m", arg=str(e.value))
        assert page.get_attribute("#voice-status", "data-frames") == ""
        assert console.errors == []
        ctx.close()


def test_a_model_that_does_not_clone_refuses_a_clip_and_takes_an_instruction(browser, qwen_base_dir, tmp_path):
    """A test manifest with voice_clone false and instruct true: a reference clip gets Python's refusal,
    the instruction field shows and its text reaches the prompt as Python builds it."""
    import json

    from voxport.errors import InputError
    from voxport.runtime.prompt import Utterance
    from voxport.runtime.runtime import Runtime
    from voxport.runtime.sampling import Sampling

    art = copy_artifact(qwen_base_dir, tmp_path / "instruct")
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["runtime"]["generation"]["prompt"].update(voice_clone=False, instruct=True)
    (art / "manifest.json").write_text(json.dumps(manifest))
    runtime = Runtime(art)
    instruct = "Speak slowly, 轻声."
    with pytest.raises(InputError) as e:
        runtime.check_voice(None, reference=True)
    path = _chirp(tmp_path / "ref.wav", 1.0)
    with serving([art]) as url:
        ctx, page, console = open_page(browser, url)
        assert load_via_ui(page, threads="1", url=f"{url}models/instruct/") == "ready", page.text_content("#error")
        assert page.is_visible("#instruct-label") and page.text_content("#voice-h") == "Voice prompt (optional)"
        page.fill("#instruct", instruct)
        speak_via_ui(page, TEXT, 2)
        check_download(page, python_speech(runtime, TEXT, instruct=instruct, sampling=Sampling(), max_frames=2)[1])
        use_library(page, url=f"{url}models/instruct/")
        (got,) = page.evaluate("(turns) => window.lib.prompt(turns)", [[{"text": TEXT, "speaker": None, "instruct": instruct}]])
        assert got["ids"] == runtime.prompts.build([Utterance(TEXT, None, instruct=instruct)])[0][0].tolist()
        page.set_input_files("#voice-file", str(path))
        page.wait_for_function("(m) => document.querySelector('#error').textContent === m", arg=str(e.value))
        assert console.errors == []
        ctx.close()
