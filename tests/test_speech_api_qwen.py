"""Saved voices on a Qwen3-TTS Base model: a reference keeps its speaker vector besides its codes, and
the API (HTTP and WebSocket) clones as `voxport speak --ref-audio F --ref-text T` does."""

from __future__ import annotations

import json

import numpy as np
import pytest
from websockets.sync.client import connect

from tests.api_helpers import api_server, error_of, pcm, request, speak_cli, speech, tone, upload
from voxport.runtime.audio import pcm16
from voxport.runtime.runtime import Runtime
from voxport.runtime.sampling import Sampling
from voxport.runtime.stream import Speech

BASE = "qwen3-tts-tiny-base"  # the served name: the export's directory
TEXT = "A saved voice speaks this."
REF_TEXT = "A reference clip."


@pytest.fixture(scope="module")
def served(qwen_base_dir, tiny_dir, tmp_path_factory):
    voices = tmp_path_factory.mktemp("voices")
    with api_server([qwen_base_dir, tiny_dir], voices_dir=voices) as port:
        yield port, voices


def voice_names(port) -> list[str]:
    return [v["name"] for v in json.loads(request(port, "GET", "/v1/voices")[2])["data"]]


def test_saved_voice_keeps_the_speaker_vector_and_clones_like_speak(served, qwen_base_dir, tmp_path):
    port, voices = served
    ref = tone(tmp_path / "me.wav")
    status, _, body = upload(port, "me", ref, REF_TEXT, model=BASE)
    assert status == 201, body
    # on disk: what the runtime makes of the clip, as `voxport speak --ref-audio` makes it (with the
    # server's one onnxruntime thread: the speaker encoder's vector differs in the last bits with more)
    want = Runtime(qwen_base_dir, threads=1).reference(ref, REF_TEXT, None)
    meta = json.loads((voices / "me.json").read_text())
    got = (meta["model"], meta["speaker"], meta["speaker_vector"], meta["frames"])
    assert got == (BASE, None, True, len(want.codes))
    assert np.array_equal(np.load(voices / "me.npy"), want.codes)
    assert np.array_equal(np.load(voices / "me.speaker.npy"), want.vector) and want.vector.dtype == np.float32

    args = ("--seed", 4, "--max-frames", 8)
    status, _, body = speech(port, model=BASE, input=TEXT, voice="me", response_format="pcm", seed=4, max_frames=8)
    cloned = speak_cli(qwen_base_dir, tmp_path, TEXT, *args, "--ref-audio", ref, "--ref-text", REF_TEXT)
    assert status == 200 and len(cloned) > 0 and np.abs(cloned).max() > 0
    assert np.array_equal(pcm(body), cloned)

    # the same codes without the vector (a voice as saved before vectors were kept) speak another voice
    (voices / "codes_only.npy").write_bytes((voices / "me.npy").read_bytes())
    old = {k: meta[k] for k in ("model", "text", "speaker", "seconds", "frames", "created")}
    (voices / "codes_only.json").write_text(json.dumps({"name": "codes_only", **old}))
    status, _, body = speech(port, model=BASE, input=TEXT, voice="codes_only", response_format="pcm", seed=4,
                             max_frames=8)
    assert status == 200 and not np.array_equal(pcm(body), cloned)

    models = {m["id"]: m["voices"] for m in json.loads(request(port, "GET", "/v1/models")[2])["data"]}
    assert "me" in models[BASE] and "me" not in models["tiny"]
    # a voice whose vector is missing is incomplete: neither listed nor spoken
    (voices / "me.speaker.npy").unlink()
    assert "me" not in voice_names(port) and "codes_only" in voice_names(port)
    status, err = error_of(speech(port, model=BASE, input=TEXT, voice="me"))
    assert status == 400 and err["message"] == "voice 'me' is not a saved voice (GET /v1/voices lists them)"
    assert request(port, "DELETE", "/v1/voices/me")[0] == 200 and not list(voices.glob("me.*"))


def test_websocket_speaks_a_saved_voice_like_python(served, qwen_base_dir, tmp_path):
    port, _ = served
    ref = tone(tmp_path / "ws.wav", seconds=2.0)
    assert upload(port, "ws_voice", ref, REF_TEXT, model=BASE)[0] == 201
    sampling = dict(seed=3, temperature=0.9, top_k=50, max_frames=6)
    with connect(f"ws://127.0.0.1:{port}/v1/audio/stream", open_timeout=10) as ws:
        ws.send(json.dumps({"type": "start", "model": BASE, "voice": "ws_voice", "codes": True, **sampling}))
        assert json.loads(ws.recv(timeout=60))["type"] == "ready"
        ws.send(json.dumps({"type": "text", "text": "The first sentence. The second"}))
        ws.send(json.dumps({"type": "flush"}))
        audio, done = b"", []
        while len(done) < 2:
            m = ws.recv(timeout=60)
            if isinstance(m, bytes):
                audio += m
            else:
                event = json.loads(m)
                assert event["type"] == "done", event
                done.append(event)
    assert [d["text"] for d in done] == ["The first sentence.", "The second"]
    # the Python runtime with the reference `voxport speak --ref-audio` builds: every sentence in that voice
    rt = Runtime(qwen_base_dir)
    want = Speech(rt, "", sentences=[d["text"] for d in done], context=[rt.reference(ref, REF_TEXT, None)],
                  max_frames=6, sampling=Sampling(0.9, 50), seed=3)
    want_pcm = pcm(b"".join(pcm16(c) for c in want))
    assert len(want_pcm) > 0 and np.array_equal(pcm(audio), want_pcm)
    assert np.array_equal(np.array(done[0]["codes"] + done[1]["codes"]), np.stack(want.codes))


def test_base_needs_a_saved_voice_of_its_own(served, tiny_dir, tmp_path):
    port, voices = served
    status, err = error_of(speech(port, model=BASE, input=TEXT))
    assert (status, err["param"]) == (400, "voice") and "\n" not in err["message"]
    assert err["message"] == (f"voice is required: model {BASE!r} has no built-in speakers, it speaks a saved voice "
                              "(POST /v1/voices makes one)")
    for voice in ("0", "nobody"):  # CSM's integer speaker is no speaker here
        status, err = error_of(speech(port, model=BASE, input=TEXT, voice=voice))
        assert status == 400 and err["message"] == f"voice {voice!r} is not a saved voice (GET /v1/voices lists them)"
    with connect(f"ws://127.0.0.1:{port}/v1/audio/stream", open_timeout=10) as ws:
        ws.send(json.dumps({"type": "start", "model": BASE}))
        assert "voice is required" in json.loads(ws.recv(timeout=10))["error"]["message"]
        with pytest.raises(Exception, match="1008"):
            ws.recv(timeout=10)

    ref = tone(tmp_path / "both.wav")
    assert upload(port, "base_voice", ref, REF_TEXT, model=BASE)[0] == 201
    assert upload(port, "csm_voice", ref, REF_TEXT, model="tiny")[0] == 201
    meta = json.loads((voices / "csm_voice.json").read_text())
    assert (meta["speaker"], meta["speaker_vector"]) == (0, False) and not (voices / "csm_voice.speaker.npy").exists()
    # a voice saved before speaker vectors were kept (no such key) still loads and clones
    (voices / "csm_voice.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "speaker_vector"}))
    status, _, body = speech(port, model="tiny", input=TEXT, voice="csm_voice", response_format="pcm", seed=2,
                             max_frames=6)
    want = speak_cli(tiny_dir, tmp_path, TEXT, "--seed", 2, "--max-frames", 6, "--ref-audio", ref,
                     "--ref-text", REF_TEXT)
    assert status == 200 and np.array_equal(pcm(body), want)
    # codes of one codec mean nothing to another: each model refuses the other's voice
    for voice, model, made in (("csm_voice", BASE, "tiny"), ("base_voice", "tiny", BASE)):
        status, err = error_of(speech(port, model=model, input=TEXT, voice=voice))
        assert (status, err["param"]) == (400, "voice")
        assert err["message"] == f"voice {voice!r} was made with model {made!r}, not {model!r}"
