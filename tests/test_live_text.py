"""Speech while the text is still being written (the dual-track format feeds one text token per frame):
speaking starts once the text covers the frames it needs, pauses (no stop frame) when the text runs
out, and the codes equal those of the whole text given at once; the WebSocket does the same."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from websockets.sync.client import connect

from voxport.runtime.engine import Engine
from voxport.runtime.live_text import LiveText
from voxport.runtime.runtime import Runtime
from voxport.runtime.sampling import Sampling
from voxport.runtime.stream import Speech
from tests.api_helpers import api_server, wait_for

TEXT = "Hello there, the quick brown fox jumps over the lazy dog."
PIECES = ["Hello th", "ere, the quick br", "own fox jumps", " over the lazy dog."]


@pytest.fixture(scope="module")
def rt(qwen_dir):
    return Runtime(qwen_dir)


def _settled(speech: Speech, quiet: float = 0.4, timeout: float = 60) -> int:
    """Frames made once the speech stopped making more (it waits for text)."""
    n, t = len(speech.codes), time.perf_counter()
    while time.perf_counter() - t < timeout:
        time.sleep(quiet)
        if len(speech.codes) == n:
            return n
        n = len(speech.codes)
    raise AssertionError("the speech never paused")


@pytest.mark.parametrize("sampling,seed", [(Sampling(), 0), (Sampling(0.9, 50), 7)], ids=["greedy", "seeded"])
def test_text_in_pieces_gives_the_codes_of_the_whole_text(rt, sampling, seed):
    whole = Speech(rt, TEXT, max_frames=40, sampling=sampling, seed=seed)
    audio = [c for c in whole]
    live = LiveText()
    speech = Speech(rt, "", sentences=[live], max_frames=40, sampling=sampling, seed=seed)
    out: list = []
    consumer = threading.Thread(target=lambda: out.extend(speech))
    consumer.start()
    paused_at, written = [], ""
    for piece in PIECES[:-1]:
        written += piece
        live.set(written)
        paused_at.append(_settled(speech))
        assert consumer.is_alive()  # paused, not ended, while the text runs out
    live.close(written + PIECES[-1])
    consumer.join(timeout=120)
    print(f"frames made before the text was complete, after each piece: {paused_at} (of {len(whole.codes)})")
    # it spoke before the sentence was complete, more as more text came, and waited for the rest
    assert paused_at == sorted(paused_at) and 1 <= paused_at[-1] < len(whole.codes)
    assert np.array_equal(np.stack(speech.codes), np.stack(whole.codes))
    assert np.array_equal(np.concatenate(out), np.concatenate(audio))
    assert speech.utterances[0]["text"] == TEXT


def test_a_live_text_in_a_batch_pauses_its_row_and_the_others_go_on(rt):
    sampling, other_text = Sampling(0.9, 50), "Another stream speaks beside it, without waiting for anyone."
    whole, other_alone = Speech(rt, TEXT, max_frames=40, sampling=sampling, seed=5), Speech(rt, other_text, seed=9)
    list(whole), list(other_alone)
    engine = Engine(rt, slots=2)
    live = LiveText()
    speech = Speech(rt, "", sentences=[live], max_frames=40, sampling=sampling, seed=5, engine=engine)
    other = Speech(rt, other_text, seed=9, engine=engine)
    consumer = threading.Thread(target=lambda: list(speech))
    consumer.start()
    live.set(PIECES[0] + PIECES[1])
    paused = _settled(speech)
    list(other)  # runs to its end while the live row waits for text
    assert len(speech.codes) == paused and consumer.is_alive() and 1 <= paused < len(whole.codes)
    live.close(TEXT)
    consumer.join(timeout=120)
    engine.stop()
    assert np.array_equal(np.stack(speech.codes), np.stack(whole.codes))
    assert np.array_equal(np.stack(other.codes), np.stack(other_alone.codes))


def test_a_paused_speech_stops_on_cancel(rt):
    live, cancel = LiveText("Hello there, the quick"), threading.Event()
    speech = Speech(rt, "", sentences=[live], max_frames=40, cancel=cancel)
    consumer = threading.Thread(target=lambda: list(speech))
    consumer.start()
    made = _settled(speech)
    cancel.set()
    assert wait_for(lambda: not consumer.is_alive(), timeout=5) < 0.5
    assert len(speech.codes) == made


def test_the_websocket_speaks_before_the_sentence_ends(qwen_dir, rt, tmp_path):
    sampling = Sampling(0.9, 50)
    whole = Speech(rt, TEXT, max_frames=40, sampling=sampling, seed=3)
    list(whole)
    with api_server([qwen_dir], voices_dir=tmp_path) as port:
        with connect(f"ws://127.0.0.1:{port}/v1/audio/stream", open_timeout=10) as ws:
            ws.send(json.dumps({"type": "start", "max_frames": 40, "temperature": 0.9, "top_k": 50, "seed": 3,
                                "codes": True}))
            assert json.loads(ws.recv(timeout=60))["type"] == "ready"
            for piece in PIECES[:2]:
                ws.send(json.dumps({"type": "text", "text": piece}))
            first = ws.recv(timeout=60)  # no sentence end sent yet
            assert isinstance(first, bytes) and len(first) > 0
            for piece in PIECES[2:]:
                ws.send(json.dumps({"type": "text", "text": piece}))
            ws.send(json.dumps({"type": "flush"}))
            audio, done = first, None
            while done is None:
                m = ws.recv(timeout=60)
                if isinstance(m, bytes):
                    audio += m
                else:
                    event = json.loads(m)
                    assert event["type"] == "done", event
                    done = event
    assert done["text"] == TEXT
    assert np.array_equal(np.array(done["codes"]), np.stack(whole.codes))
    assert len(audio) // 2 == done["samples"]
