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
