"""The server batches its streams (voxport/runtime/engine.py): requests of different lengths and
settings, sent at once, share frame calls and each gets the audio it has alone; a client that leaves
the queue before its turn gives its place up (HTTP and WebSocket)."""

from __future__ import annotations

import json
import socket
import threading
import time

import numpy as np
import pytest

from voxport.runtime.audio import pcm16
from voxport.runtime.runtime import Runtime
from voxport.runtime.sampling import Sampling
from voxport.runtime.stream import Speech
from websockets.sync.client import connect

from tests.api_helpers import api_server, health, speech, together, wait_for
from tests.test_speech_load import _slow_stream

# different lengths (frame limits, two sentences), voices, seeds and sampling settings
REQUESTS = [
    {"input": "Batched but alone.", "voice": "0", "seed": 1, "max_frames": 48, "temperature": 0.9, "top_k": 50},
    {"input": "A second voice, sampled hotter and cut at the top.", "voice": "1", "seed": 7, "max_frames": 30,
     "temperature": 1.2, "top_k": 20, "top_p": 0.8},
    {"input": "Greedy speech.", "voice": "0", "seed": 3, "max_frames": 62, "temperature": 0, "top_k": 1},
    # too long for one utterance of the tiny model's context: spoken as several, each joining the batch
    {"input": " ".join(f"Sentence number {i} is here." for i in range(32)), "voice": "1", "seed": 12,
     "max_frames": 10, "temperature": 0.7, "top_k": 5},
]


def _alone(rt: Runtime, r: dict) -> tuple[bytes, int]:
    """The request's PCM from `Speech` alone (one batch-1 frame loop, no engine), and its utterances."""
    s = Speech(rt, r["input"], speaker=int(r["voice"]), max_frames=r["max_frames"], seed=r["seed"],
               sampling=Sampling(r["temperature"], r["top_k"], top_p=r.get("top_p")))
    return pcm16(np.concatenate(list(s))), len(s.utterances)


def test_concurrent_requests_share_frame_calls_and_each_gets_its_solo_audio(tiny_dir, tmp_path):
    rt = Runtime(tiny_dir)
    alone, utterances = zip(*[_alone(rt, r) for r in REQUESTS])
    assert utterances[3] >= 2 and set(utterances[:3]) == {1}
    assert len(set(alone)) == 4  # four different answers
    with api_server([tiny_dir], max_streams=4, voices_dir=tmp_path) as port:
        out = together(4, lambda i: speech(port, model="tiny", response_format="pcm", **REQUESTS[i]))
        batches = health(port)["batches"]["tiny:fp32"]
    assert [o[0] for o in out] == [200] * 4
    for i, (o, a) in enumerate(zip(out, alone)):
        assert o[2] == a, (i, len(o[2]), len(a))
    # they did run together: some steps had several rows (one call for all of them)
    assert batches["max_rows"] >= 3 and batches["mean_rows"] > 1.0, batches
    assert batches["codec_calls"] < batches["codec_rows"], batches  # and codec calls (engine.py Codecs)
    assert batches["active"] == 0 and batches["joins"] == 3 + utterances[3]  # each utterance joined once


def test_the_batch_1_path_gives_the_same_audio(tiny_dir, tmp_path):
    r = REQUESTS[1]
    with api_server([tiny_dir], max_streams=2, batching=False, voices_dir=tmp_path) as port:
        status, _, audio = speech(port, model="tiny", response_format="pcm", **r)
        assert health(port)["batches"] == {}
    assert status == 200 and audio == _alone(Runtime(tiny_dir), r)[0]


def test_a_waiter_whose_client_leaves_gives_up_its_place(tiny_dir, tmp_path):
    body = json.dumps({"model": "tiny", "input": "Waiting in line.", "max_frames": 4, "response_format": "pcm"})
    with api_server([tiny_dir], max_streams=1, max_queue=1, queue_timeout=60, voices_dir=tmp_path) as port:
        holder = _slow_stream(port)  # takes the one slot and keeps it (never read)
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body.encode()))
        wait_for(lambda: health(port)["streams"]["waiting"] == 1, timeout=30)
        s.close()  # gone while queued: its place goes at once, not at its turn or its timeout
        left = wait_for(lambda: health(port)["streams"]["waiting"] == 0, timeout=5)
        # the queue (1) has room again: the next request waits instead of a 503
        got = {}
        t = threading.Thread(target=lambda: got.update(r=speech(port, model="tiny", input="Next.", max_frames=4,
                                                                response_format="pcm")))
        t.start()
        wait_for(lambda: health(port)["streams"]["waiting"] == 1, timeout=30)
        time.sleep(0.2)
        holder.close()
        t.join(timeout=60)
        stats = health(port)["streams"]
    print(f"a queued client's place freed {left * 1000:.0f} ms after it left")
    assert left < 1.0 and got["r"][0] == 200
    assert (stats["refused"], stats["timed_out"], stats["active"]) == (0, 0, 0), stats


def test_serve_bench_compares_the_batched_and_batch_1_servers_level_by_level(tiny_dir):
    from voxport.bench.serve_bench import _modes, markdown, run

    rows = run([tiny_dir], dtype="fp32", streams=(1, 2), requests=1, frames=3,
               modes=("batched", "solo:1@q8", "frames~1,2"))
    assert [(r["streams"], r["mode"], r["dtype"]) for r in rows] == [
        (1, "batched", "fp32"), (1, "solo", "q8"), (1, "frames", "fp32"),
        (2, "solo", "q8"), (2, "frames", "fp32"), (2, "batched", "fp32")]
    for r in rows:
        assert r["requests"] == r["streams"] and r["x_realtime"] > 0 and r["load_avg"] >= 0
        assert (r["mean_rows"] is None) == (r["mode"] == "solo")  # only the engine makes batched calls
        # only the batched server's codec thread counts codec calls
        assert (r["codec_rows"] is None) == (r["mode"] != "batched")
        assert r["chunk_frames"] == ([1, 2] if r["mode"] == "frames" else None)
    table = markdown(rows)
    assert "| batched (1) | 2 |" in table and "| tiny | q8 | solo (1) |" in table and "| frames (1, chunks 1,2) |" in table
    with pytest.raises(ValueError, match=r"mode 'batched@q3': batched, frames or solo, optionally :THREADS\[/CODEC_THREADS\], "
                       r"@DTYPE \(.*\) and ~CHUNK_FRAMES"):
        _modes(("batched@q3",), 1, "q4")
    with pytest.raises(ValueError, match="~CHUNK_FRAMES"):
        _modes(("batched~1,0",), 1, "q4")
    assert _modes(("batched:2/1@q8", "solo~1,4"), 1, "q4") == [("batched", 2, 1, "q8", None),
                                                             ("solo", 1, None, "q4", (1, 4))]


def test_a_queued_websocket_that_closes_leaves_and_one_that_writes_keeps_its_text(tiny_dir, tmp_path):
    with api_server([tiny_dir], max_streams=1, max_queue=1, queue_timeout=60, voices_dir=tmp_path) as port:
        holder = _slow_stream(port)
        with connect(f"ws://127.0.0.1:{port}/v1/audio/stream", open_timeout=10) as ws:
            ws.send(json.dumps({"type": "start"}))
            wait_for(lambda: health(port)["streams"]["waiting"] == 1, timeout=30)
        left = wait_for(lambda: health(port)["streams"]["waiting"] == 0, timeout=5)
        with connect(f"ws://127.0.0.1:{port}/v1/audio/stream", open_timeout=10) as ws:
            ws.send(json.dumps({"type": "start", "max_frames": 3, "codes": True}))
            ws.send(json.dumps({"type": "text", "text": "Said while waiting. "}))  # before its slot came
            wait_for(lambda: health(port)["streams"]["waiting"] == 1, timeout=30)
            holder.close()
            events = []
            while not events or events[-1].get("type") != "done":
                m = ws.recv(timeout=60)
                events.append({"type": "audio"} if isinstance(m, bytes) else json.loads(m))
        stats = health(port)["streams"]
    print(f"a queued WebSocket's place freed {left * 1000:.0f} ms after it closed")
    assert left < 1.0 and (stats["refused"], stats["timed_out"]) == (0, 0)
    assert events[0]["type"] == "ready" and {"type": "audio"} in events
    assert events[-1]["text"] == "Said while waiting." and len(events[-1]["codes"]) == 3


def test_dual_track_requests_in_a_batch_each_get_their_solo_audio(qwen_dir, tmp_path):
    """Qwen3-TTS feeds one text token per frame and decodes in a growing chunk schedule (1, 2, 4, 8):
    both stay per stream in a batch."""
    rt = Runtime(qwen_dir)
    reqs = [{"input": "Hello there, this is the first voice.", "voice": "vivian", "seed": 2, "max_frames": 40,
             "temperature": 0.9, "top_k": 50},
            {"input": "A second request, sampled differently.", "voice": "ryan", "seed": 5, "max_frames": 24,
             "temperature": 1.1, "top_k": 20, "top_p": 0.8},
            {"input": "And a third.", "voice": "eric", "seed": 8, "max_frames": 33, "temperature": 0.7, "top_k": 10}]
    alone = []
    for r in reqs:
        s = Speech(rt, r["input"], speaker=r["voice"], max_frames=r["max_frames"], seed=r["seed"],
                   sampling=Sampling(r["temperature"], r["top_k"], top_p=r.get("top_p")))
        alone.append(pcm16(np.concatenate(list(s))))
    with api_server([qwen_dir], max_streams=3, voices_dir=tmp_path) as port:
        out = together(3, lambda i: speech(port, model=qwen_dir.name, response_format="pcm", **reqs[i]))
        batches = health(port)["batches"][f"{qwen_dir.name}:fp32"]
    assert len(set(alone)) == 3
    assert [o[0] for o in out] == [200] * 3 and [o[2] for o in out] == alone
    assert batches["max_rows"] >= 2, batches
