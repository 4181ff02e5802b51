"""The WebSocket: text in pieces, each sentence spoken once complete, cancel, the runtime's codes."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager

import numpy as np
import pytest
from websockets.sync.client import connect

from voxport.runtime.audio import pcm16
from voxport.runtime.runtime import Runtime
from voxport.runtime.sampling import Sampling
from voxport.runtime.stream import Speech
from tests.api_helpers import api_server, health, pcm, wait_for

SAMPLING = dict(seed=9, temperature=0.9, top_k=50)


@pytest.fixture(scope="module")
def port(tiny_dir, tmp_path_factory):
    with api_server([tiny_dir], voices_dir=tmp_path_factory.mktemp("voices")) as p:
        yield p


@contextmanager
def session(port, **start):
    with connect(f"ws://127.0.0.1:{port}/v1/audio/stream", open_timeout=10) as ws:
        ws.send(json.dumps({"type": "start", **start}))
        ready = json.loads(ws.recv(timeout=60))
        assert ready == {"type": "ready", "model": "tiny", "dtype": "fp32", "sample_rate": 24000,
                         "format": "pcm_s16le"}
        yield ws


def until(ws, kind: str, timeout: float = 60) -> tuple[bytes, list[dict]]:
    """Audio and events up to and including the first event of `kind`."""
    audio, events = b"", []
    while True:
        m = ws.recv(timeout=timeout)
        if isinstance(m, bytes):
            audio += m
            continue
        events.append(json.loads(m))
        assert events[-1]["type"] != "error", events[-1]
        if events[-1]["type"] == kind:
            return audio, events


def test_sentences_are_spoken_while_the_text_still_arrives(port, tiny_dir):
    pieces = ["The first sent", "ence ends here. The sec", "ond one waits for", " its end."]
    with session(port, max_frames=10, codes=True, **SAMPLING) as ws:
        for p in pieces[:2]:
            ws.send(json.dumps({"type": "text", "text": p}))
        first = ws.recv(timeout=60)  # before the last piece is sent: the first sentence is being spoken
        assert isinstance(first, bytes) and len(first) == 1920 * 2
        ws.send(json.dumps({"type": "text", "text": pieces[2]}))
        ws.send(json.dumps({"type": "text", "text": pieces[3]}))
        audio, events = until(ws, "done")
        assert events[-1]["text"] == "The first sentence ends here."
        ws.send(json.dumps({"type": "flush"}))  # the second has no space after its period yet
        more, events2 = until(ws, "done")
        ws.send(json.dumps({"type": "flush"}))  # nothing left: no third done
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)
    done = [events[-1], events2[-1]]
    assert [d["text"] for d in done] == ["The first sentence ends here.", "The second one waits for its end."]
    assert [d["index"] for d in done] == [0, 1] and [d["frames"] for d in done] == [10, 10]
    # the Python runtime, fed the same sentences: one Speech, each sentence the next one's context
    rt = Runtime(tiny_dir)
    ref = Speech(rt, "", sentences=[d["text"] for d in done], max_frames=10,
                 sampling=Sampling(SAMPLING["temperature"], SAMPLING["top_k"]), seed=SAMPLING["seed"])
    ref_pcm = pcm(b"".join(pcm16(c) for c in ref))
    got = pcm(first + audio + more)
    assert [d["samples"] for d in done] == [10 * 1920, 10 * 1920] and np.array_equal(got, ref_pcm)
    codes = np.array(done[0]["codes"] + done[1]["codes"])
    assert np.array_equal(codes, np.stack(ref.codes))
    # and the first sentence alone is what `voxport speak` makes of it (same seed, no context)
    alone = Speech(rt, done[0]["text"], max_frames=10, sampling=ref.sampling, seed=SAMPLING["seed"])
    assert np.array_equal(pcm(b"".join(pcm16(c) for c in alone)), got[: 10 * 1920])


def test_cancel_stops_within_a_frame_and_the_session_goes_on(port):
    with session(port, max_frames=400, **SAMPLING) as ws:  # ~400 frames if nothing stopped it
        ws.send(json.dumps({"type": "text", "text": "This sentence would go on for a long time. "}))
        for _ in range(3):
            assert isinstance(ws.recv(timeout=60), bytes)
        t = time.perf_counter()
        ws.send(json.dumps({"type": "cancel"}))
        audio, events = until(ws, "cancelled")
        stopped = time.perf_counter() - t
        frames = events[-1]["frames"]
        print(f"cancel: stopped after {frames} frames, {stopped * 1000:.0f} ms after the message")
        assert frames < 100 and stopped < 1.0
        assert 3 * 3840 + len(audio) == frames * 3840  # every frame made was sent, and no more
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)  # nothing after it
        ws.send(json.dumps({"type": "text", "text": "A new start."}))
        ws.send(json.dumps({"type": "flush"}))  # the session goes on: a fresh speech
        assert isinstance(ws.recv(timeout=60), bytes)
        ws.send(json.dumps({"type": "cancel"}))
        audio, events = until(ws, "cancelled")
        assert 3840 + len(audio) == events[-1]["frames"] * 3840


def test_bad_messages_get_error_events(port):
    with session(port) as ws:
        for msg, text in ((b"\xff", "JSON text"), ('{"type": "speak"}', "unknown message type 'speak'"),
                          ('{"type": "text", "text": 5}', "carry a string"),
                          (json.dumps({"type": "text", "text": "x" * 5000}), "over 4096 characters")):
            ws.send(msg)
            err = json.loads(ws.recv(timeout=10))
            assert err["type"] == "error" and text in err["error"]["message"], err
        ws.send(json.dumps({"type": "cancel"}))  # nothing running: answered all the same
        assert json.loads(ws.recv(timeout=10)) == {"type": "cancelled", "frames": 0}
    for start, text in (({"voice": "nobody"}, "neither a speaker (0, 1)"), ({"speed": 2}, "unknown start field 'speed'"),
                        ({"model": "nope"}, "model 'nope' does not exist")):
        with connect(f"ws://127.0.0.1:{port}/v1/audio/stream", open_timeout=10) as bad:
            bad.send(json.dumps({"type": "start", **start}))
            assert text in json.loads(bad.recv(timeout=10))["error"]["message"]
            with pytest.raises(Exception, match="1008"):
                bad.recv(timeout=10)
    assert health(port)["streams"]["active"] == 0  # refused starts took no slot


def test_a_closed_socket_frees_its_slot(port):
    with session(port, max_frames=400) as ws:
        ws.send(json.dumps({"type": "text", "text": "Talking to nobody for a while. "}))
        assert isinstance(ws.recv(timeout=60), bytes)
        assert health(port)["streams"]["active"] == 1
    freed = wait_for(lambda: health(port)["streams"]["active"] == 0, timeout=5)
    print(f"slot freed {freed * 1000:.0f} ms after the socket closed")
    assert freed < 1.0
