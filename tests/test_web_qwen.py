"""The page speaks a Qwen3-TTS artifact (the dual_track prompt format, text fed per frame, the talker's
logits processors, two sampling groups) with the Python runtime's codes: the tiny preset, greedy and
seeded, its prompt ids and voice errors equal to voxport/runtime/prompt.py's; the tiny Base preset
clones a voice from a reference clip (its codes and speaker vector) with the Python runtime's codes."""

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


@pytest.fixture(scope="module")
def base_site(qwen_base_dir):
    with serving([qwen_base_dir]) as url:
        yield url


@pytest.fixture(scope="module")
def base_runtime(qwen_base_dir):
    from voxport.runtime.runtime import Runtime

    return Runtime(qwen_base_dir)


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
    page.evaluate("window.voxport.load({backend: 'wasm', threads: 1})")
    got = page.evaluate("(turns) => window.voxport.prompt(turns)", turns)
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

