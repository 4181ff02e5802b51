"""The JS runtime's pure pieces (web/src/runtime/) against the Python runtime's on the same inputs, run
with node: sentence chunking (Latin, CJK, quotes, Python's whitespace), planning utterances under a
length limit (and the refusal of a word that does not fit), 16-bit PCM rounding, and the port of
numpy's default_rng that draws the sampling noise."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from voxport.errors import InputError
from voxport.runtime.audio import pcm16
from voxport.runtime.chunking import complete_sentences, plan_utterances, split_sentences

DRIVER = Path(__file__).resolve().parent / "web_units.mjs"
TEXTS = ["Hello there. How are you?", "Pi is 3.14 today! Yes.", "你好。世界！好的", "日本語です。次の文？はい！",
         "Wait...  \"Done.\" Next", "He said “stop.” Then left.", "(Really?) Yes.", "end.\n", "x.\ny. ", "",
         "   ", "no end mark", "Mr. Smith went… away!? Ok", "a.\u3000b。c", "x.\x1cy. z.\ufeffw. v.\x85u."]
WORDS = ["alpha", "be", "3.14", "Hi.", "why?", "no!", "“quoted.”", "你好。", "世界！", "x", "(a)", "…", "end."]
SPACES = [" ", "  ", "\n", "\t", "\u3000", "\xa0", "\x1c", "\ufeff", "\x85", ""]


def random_texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(str(rng.choice(WORDS)) + str(rng.choice(SPACES)) for _ in range(rng.integers(1, 14)))
            for _ in range(n)]


def run_js(request: dict) -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node missing")
    out = subprocess.run([node, str(DRIVER)], input=json.dumps(request), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def python_plan(text: str, limit: int):
    try:
        return plan_utterances(text, lambda t: len(t) <= limit)
    except InputError as e:
        return {"error": str(e), "kind": "InputError"}


def test_chunking_pcm16_and_rng_equal_python():
    texts = TEXTS + random_texts(300)
    plans = [{"text": t, "limit": limit} for t in TEXTS + random_texts(100, seed=1) for limit in (4, 12, 30)]
    rng = np.random.default_rng(5)
    # the rounding cases: halves of a 32-bit step (numpy's rint rounds them to even), the ends, past
    # them, and uniform samples
    pcm = np.concatenate([np.array([0, -0.0, 1, -1, 1.5, -1.5, 0.5, -0.5, 2 ** -32, 3 * 2 ** -32, -(2 ** -32),
                                    -3 * 2 ** -32, 2 ** -17, 32767 / 32768, -32769 / 32768], np.float32),
                          rng.uniform(-1.2, 1.2, 5000).astype(np.float32)])
    seeds = [{"seed": s, "n": 3000} for s in (0, 1, 1234, 2 ** 32 + 7, 2 ** 53 - 1)]
    got = run_js({"split": texts, "complete": texts, "plan": plans, "pcm16": pcm.tolist(), "rng": seeds})

    for t, g in zip(texts, got["split"]):
        assert g == split_sentences(t), repr(t)
    for t, g in zip(texts, got["complete"]):
        assert g == list(complete_sentences(t)), repr(t)
    for p, g in zip(plans, got["plan"]):
        assert g == python_plan(p["text"], p["limit"]), p
    assert sum(isinstance(g, dict) for g in got["plan"]) > 10  # the refusal was exercised
    assert sum(isinstance(g, list) and len(g) > 1 for g in got["plan"]) > 100  # and real plans
    assert got["pcm16"] == np.frombuffer(pcm16(pcm), "<i2").tolist()
    for s, g in zip(seeds, got["rng"]):
        expected = np.random.default_rng(s["seed"]).random(s["n"], dtype=np.float32)
        assert np.array_equal(np.array(g, np.float32), expected), s["seed"]


def test_steps_penalty_rows_token_ids_and_codec_noise_equal_python(tmp_path):
    """The JS contract's frame steps, a penalty row per codebook of a range, the token_ids prompt (its
    refusals with Python's messages) and the codec noise drawn from the seed, as the Python runtime's."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from voxport.runtime.codec_stream import codec_noise, codec_rng
    from voxport.runtime.contract import FrameContract, LogitsState
    from voxport.runtime.prompt import TokenIdsPrompt, Utterance

    node = shutil.which("node")
    if node is None:
        pytest.skip("node missing")
    cache = {"layers": 1, "kv_heads": 1, "head_dim": 8, "kv": ["key", "value"], "input": "past.{layer}.{kv}",
             "output": "present.{layer}.{kv}", "layout": "static", "capacity": 64, "slots_axis": 0,
             "positions_axis": 2, "lengths": "cache_lengths", "shared": True}

    def generation(**frame):
        return {"generation": {"frame": {"graph": "frame", "codes": "codes", "noise": "noise",
                                         "embeds": {"input": "e", "output": "n"}, "cache": cache, **frame},
                               "codebooks": 3, "noise_vocab": 5, "stop": {"codebooks": [0, 1], "token": 4},
                               "sampling": []}}

    advance = [{"rt": generation(), "seq": 4}, {"rt": generation(steps=7), "seq": 4}, {"rt": generation(steps=7), "seq": 1}]
    frames = [[1, 4, 0], [2, 4, 3], [0, 0, 0]]
    logits = [{"spec": {"codebooks": [0, 3], "repetition_penalty": "rp", "seen": "seen"}, "vocab": 5, "penalty": 1.3,
               "frames": frames},
              {"spec": {"codebooks": [1, 3], "repetition_penalty": "rp", "seen": "seen"}, "vocab": 5, "penalty": 1.1,
               "frames": frames[:1]},
              {"spec": {"codebook": 0, "repetition_penalty": "rp", "seen": "seen", "bias": "b", "suppress": [3, 5],
                        "allow": [4], "min_frames": 2, "min_frames_token": 4}, "vocab": 5, "penalty": 1.2,
               "frames": frames[:1]}]
    noise = [{"seed": s, "frames": f, "per": p} for s, f, p in ((0, 3, 100), (7, 1, 3360), (2 ** 31 + 5, 2, 50), (2 ** 32 + 7, 1, 200))]
    vocab = {w: i for i, w in enumerate(["<unk>", "amy:", "hi", "there", "<laugh>", "$&"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(tmp_path / "tok.json"))
    prt = {"tokenizer_file": "tok.json", "generation": {
        "speakers": {"kind": "name", "names": ["amy"]},
        "prompt": {"format": "token_ids", "graph": "embed", "ids": "input_ids", "template": "{speaker}: {text}",
                   "prefix": [90], "suffix": [91, 92], "add_special_tokens": False}}}
    turns = [[Utterance("hi <laugh> there $&", "amy")], [Utterance("hi", None)], [Utterance("hi", "bob")],
             [Utterance("hi", "amy", language="german")], [Utterance("hi", "amy", instruct="shout")],
             [Utterance("ref", "amy"), Utterance("hi", "amy")]]
    request = {"advance": advance, "logits": logits, "noise": noise,
               "prompt": {"tokenizer": json.loads((tmp_path / "tok.json").read_text()), "rt": prt,
                          "turns": [[{"text": u.text, "speaker": u.speaker, "language": u.language,
                                      "instruct": u.instruct} for u in t] for t in turns]}}
    out = subprocess.run([node, str(DRIVER.with_name("web_contract_units.mjs"))], input=json.dumps(request),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)

    assert got["advance"] == [FrameContract(a["rt"]).advance(a["seq"]) for a in advance] == [4, 10, 7]
    for case, g in zip(logits, got["logits"]):
        state = LogitsState(case["spec"], case["vocab"], case["penalty"])
        for f in case["frames"]:
            state.update(np.array(f))
        want = state.feeds()
        assert set(g) == set(want), case["spec"]
        for name, arr in want.items():
            assert g[name]["dims"] == list(arr.shape) and np.array_equal([float(x) for x in g[name]["data"]],
                                                                         arr.ravel()), (case["spec"], name)
    spec = {"input": "z", "per_frame": 0, "distribution": "normal"}
    for case, g, split in zip(noise, got["noise"], got["noiseSplit"]):
        want = codec_noise({**spec, "per_frame": case["per"]}, codec_rng(case["seed"]), case["frames"])["z"].ravel()
        # Math.log1p / Math.cos against numpy's in float64, then both rounded to float32: equal to an ulp
        assert np.allclose(np.array(g, np.float32), want, rtol=1e-6, atol=1e-6), case
        assert g == split and float(np.abs(want).max()) > 2  # the tail is drawn too
    py = TokenIdsPrompt(tmp_path, prt)
    for t, g in zip(turns, got["prompt"]):
        try:
            assert g == py.build(t)[0][0].tolist(), t
        except InputError as e:
            assert g == {"error": str(e), "kind": "InputError"}, t
    assert got["prompt"][0] == [90, 1, 2, 4, 3, 5, 91, 92]  # the tag and a "$&" are text
