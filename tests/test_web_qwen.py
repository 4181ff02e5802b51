"""The page speaks a Qwen3-TTS artifact (the dual_track prompt format, text fed per frame, the talker's
logits processors, two sampling groups) with the Python runtime's codes: the tiny preset, greedy and
seeded, its prompt ids and voice errors equal to voxport/runtime/prompt.py's."""

from __future__ import annotations

import numpy as np
import pytest

from tests.web_helpers import check_download, open_page, python_speech, serving, wait_state

TEXT = "Hello there, how are you?"
FRAMES = 12


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
    r = page.evaluate("({codes: window.voxport.last.codes, stats: window.voxport.last.stats})")
    codes, pcm, _ = python_speech(runtime, TEXT, speaker="ryan", language="english", sampling=Sampling(),
                                  max_frames=FRAMES)
    assert np.array_equal(np.array(r["codes"]), codes), "page codes differ from `voxport speak --greedy`"
    s = r["stats"]
    assert s["graph_ms"]["frame"]["calls"] == len(codes) and s["runtime_calls_per_frame"] == 1, s
    assert s["embed_calls"] == 2, s  # the prompt and its trailing text, as Runtime.embed
    check_download(page, pcm)

    r = page.evaluate("(o) => window.voxport.speak(o)", {
        "text": TEXT, "speaker": "dylan", "language": "auto", "maxFrames": FRAMES, "seed": 7,
        "sampling": {"temperature": 0.9, "topK": 50}})
    sampled, _, _ = python_speech(runtime, TEXT, speaker="dylan", sampling=Sampling(0.9, 50), seed=7,
                                  max_frames=FRAMES)
    assert np.array_equal(np.array(r["codes"]), sampled)
    assert not np.array_equal(sampled, python_speech(runtime, TEXT, speaker="dylan", sampling=Sampling(),
                                                     max_frames=FRAMES)[0])  # the noise mattered
    # a strong repetition penalty changes the greedy codes (the default, 1.05, seldom does in 12 frames)
    r = page.evaluate("(o) => window.voxport.speak(o)", {
        "text": TEXT, "speaker": "ryan", "language": "english", "maxFrames": FRAMES,
        "sampling": {"temperature": 0, "repetitionPenalty": 3.0}})
    penalised, _, _ = python_speech(runtime, TEXT, speaker="ryan", language="english",
                                    sampling=Sampling(repetition_penalty=3.0), max_frames=FRAMES)
    assert np.array_equal(np.array(r["codes"]), penalised) and not np.array_equal(penalised, codes)
    assert console.errors == []
    ctx.close()


def test_prompt_ids_and_voice_errors_equal_python(browser, site, runtime):
    from voxport.errors import InputError
    from voxport.runtime.prompt import Utterance

    ctx, page, console = open_page(browser, site)
    page.evaluate("window.voxport.load({backend: 'wasm', threads: 1})")
    # a dialect speaker with auto / chinese / another language, a plain one, no language
    cases = [("dylan", None), ("dylan", "chinese"), ("eric", "english"), ("ryan", "german"), ("vivian", "auto"),
             ("aiden", None)]
    texts = ["Hi.", "Numbers: 3.14 and 42!", "你好，世界。 Привет"]
    turns = [[{"text": t, "speaker": s, "language": lang}] for t in texts for s, lang in cases]
    got = page.evaluate("(turns) => window.voxport.prompt(turns)", turns)
    for (turn,), g in zip(turns, got):
        u = Utterance(turn["text"], turn["speaker"], language=turn["language"])
        text, codec = runtime.prompts.build([u])
        assert g["ids"] == text[0].tolist() and g["codes"] == codec[0].tolist(), turn
        assert g["trailing"] == runtime.prompts.trailing([u]).tolist(), turn
    for bad in ({"speaker": "nobody"}, {"language": "klingon"}, {"instruct": "whisper"}):
        with pytest.raises(InputError) as e:
            runtime.check_voice(bad.get("speaker"), bad.get("language"), bad.get("instruct"))
        message = page.evaluate("(o) => window.voxport.speak(o).then(() => null, (e) => e.message)",
                                {"text": TEXT, "maxFrames": 1, **bad})
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
        const { LogitsState } = await import('./src/logits.js');
        const ort = { Tensor: class { constructor(type, data, dims) { this.data = data; this.dims = dims; } } };
        const s = LogitsState.of(ort, rt.generation, {});
        const nest = (t) => (t.dims.length ? [Array.from(t.data, (x) => (x === -Infinity ? '-inf' : x))] : t.data[0]);
        const out = [];
        for (const f of frames) {
          out.push(Object.fromEntries(Object.entries(s.feeds()).map(([k, t]) => [k, nest(t)])));
          s.update(f);
        }
        return out;
    }""", {"rt": runtime.rt, "frames": frames})
    def as_json(v):  # -inf as the page spells it; a scalar as a number
        v = np.asarray(v)
        return [["-inf" if x == -np.inf else float(x) for x in row] for row in v] if v.ndim else float(v)

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
        page.evaluate("(url) => window.voxport.load({url, backend: 'wasm', threads: 1})", f"{url}models/instruct/")
        (got,) = page.evaluate("(turns) => window.voxport.prompt(turns)", [[turn]])
        assert got["ids"] == text[0].tolist() and got["codes"] == codec[0].tolist()
        assert console.errors == []
        ctx.close()
