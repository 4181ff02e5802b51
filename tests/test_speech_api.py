"""The speech API over real sockets: OpenAI's SDK against `voxport speak`, formats, voices, keys, bad input."""

from __future__ import annotations

import io
import json
import socket
import time

import numpy as np
import pytest
import soundfile as sf

from tests.api_helpers import WAV_HEADER, api_server, error_of, pcm, request, speak_cli, speech, tone, upload
from voxport.cli import main

TEXT = "The server speaks as it generates."
KEY = "test-key-123"


@pytest.fixture(scope="module")
def port(tiny_dir, tmp_path_factory):
    with api_server([tiny_dir], voices_dir=tmp_path_factory.mktemp("voices"), max_upload=1 << 20) as p:
        yield p


def test_openai_sdk_streams_what_speak_writes(port, tiny_dir, tmp_path):
    from openai import OpenAI

    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused-without-a-server-key", max_retries=0)
    got = {}
    for fmt in ("pcm", "wav"):
        with client.audio.speech.with_streaming_response.create(
                model="tiny", voice="1", input=TEXT, response_format=fmt,
                extra_body={"seed": 5, "max_frames": 12, "temperature": 0.8, "top_k": 40, "top_p": 0.9}) as r:
            assert r.headers["content-type"] == {"pcm": "audio/pcm", "wav": "audio/wav"}[fmt]
            got[fmt] = b"".join(r.iter_bytes())
    ref = speak_cli(tiny_dir, tmp_path, TEXT, "--seed", 5, "--max-frames", 12, "--speaker", 1,
                    "--temperature", 0.8, "--top-k", 40, "--top-p", 0.9)
    assert ref.shape == (12 * 1920,) and np.abs(ref).max() > 0
    assert np.array_equal(pcm(got["pcm"]), ref)
    assert got["wav"][:4] == b"RIFF" and np.array_equal(pcm(got["wav"][WAV_HEADER:]), ref)
    assert sf.info(io.BytesIO(got["wav"])).samplerate == 24000  # the streamed header reads as a WAV


def _chunks(port: int, body: dict) -> tuple[list[int], float, float]:
    """The HTTP chunk sizes of a streamed response as they arrive, time to the first and to the end."""
    payload = json.dumps(body).encode()
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload))
        f = s.makefile("rb")
        assert f.readline().split()[1] == b"200"
        while f.readline() not in (b"\r\n", b""):
            pass
        sizes, first = [], None
        while (size := int(f.readline().strip(), 16)) > 0:
            f.read(size + 2)
            first = first or time.perf_counter() - t0
            sizes.append(size)
    return sizes, first, time.perf_counter() - t0


def test_audio_leaves_frame_by_frame(port):
    sizes, first, total = _chunks(port, {"model": "tiny", "input": TEXT, "response_format": "wav", "max_frames": 40})
    print(f"first bytes after {first * 1000:.0f} ms of {total * 1000:.0f} ms, {len(sizes)} chunks")
    # one HTTP chunk per 80 ms frame (1920 samples), the header with the first
    assert sizes == [WAV_HEADER + 3840] + [3840] * 39
    assert first < total / 4


@pytest.mark.parametrize("fmt", ["flac", "mp3", "opus"])
def test_compressed_formats_decode_to_the_speech(port, fmt):
    status, headers, body = speech(port, model="tiny", input=TEXT, response_format=fmt, max_frames=10, seed=2)
    assert status == 200 and headers["Content-Type"] == {"flac": "audio/flac", "mp3": "audio/mpeg",
                                                          "opus": "audio/ogg"}[fmt]
    audio, sr = sf.read(io.BytesIO(body), dtype="int16")
    _, _, raw = speech(port, model="tiny", input=TEXT, response_format="pcm", max_frames=10, seed=2)
    ref = pcm(raw)
    if fmt == "flac":  # lossless
        assert sr == 24000 and np.array_equal(audio, ref)
    else:  # lossy: the same length give or take the codec's padding, and the same sound
        n = min(len(audio), len(ref))
        assert sr == 24000 and abs(len(audio) - len(ref)) < 2400, (len(audio), len(ref))
        spec = lambda x: np.abs(np.fft.rfft(x[:n].astype(float)))  # noqa: E731
        assert np.corrcoef(spec(audio), spec(ref))[0, 1] > 0.5


def test_models_lists_precisions_and_voices(port):
    status, _, body = request(port, "GET", "/v1/models")
    (m,) = json.loads(body)["data"]
    assert status == 200 and m["id"] == "tiny" and m["family"] == "csm" and m["sample_rate"] == 24000
    assert m["dtypes"] == ["fp32", "fp16", "q8", "q4", "q4f16"] and m["voices"][:2] == ["0", "1"]
    assert m["voice_prompts"] is True and {"wav", "pcm", "flac", "mp3", "opus"} <= set(m["response_formats"])


def test_saved_voice_clones_like_speak_ref_audio(port, tiny_dir, tmp_path):
    ref = tone(tmp_path / "me.wav")
    status, _, body = upload(port, "me_1", ref)
    assert status == 201, body
    info = json.loads(body)
    assert info["name"] == "me_1" and info["model"] == "tiny" and info["frames"] == 19  # 1.5 s at 12.5 Hz
    assert "me_1" in [v["name"] for v in json.loads(request(port, "GET", "/v1/voices")[2])["data"]]
    assert error_of(upload(port, "me_1", ref))[0] == 409
    status, _, body = speech(port, model="tiny", input=TEXT, voice="me_1", response_format="pcm", seed=4, max_frames=8)
    cloned = speak_cli(tiny_dir, tmp_path, TEXT, "--seed", 4, "--max-frames", 8, "--ref-audio", ref,
                       "--ref-text", "A reference clip.")
    assert status == 200 and np.array_equal(pcm(body), cloned)
    status, _, plain = speech(port, model="tiny", input=TEXT, voice="0", response_format="pcm", seed=4, max_frames=8)
    assert not np.array_equal(pcm(plain), cloned)  # the voice prompt changed the audio
    assert request(port, "DELETE", "/v1/voices/me_1")[0] == 200
    status, err = error_of(speech(port, model="tiny", input=TEXT, voice="me_1"))
    assert status == 400 and "neither a speaker (0, 1)" in err["message"]
    assert error_of(request(port, "DELETE", "/v1/voices/me_1"))[0] == 404


@pytest.mark.parametrize("kind,status,message", [
    ("not audio", 400, "notes.txt: cannot read audio"), ("silent", 400, "reference audio is silent"),
    ("dotdot", 400, "voice name '../evil' is not allowed"), ("oversized", 413, "over the limit of 1048576 bytes"),
    ("no text", 400, "text is required")])
def test_bad_voice_uploads(port, tmp_path, kind, status, message):
    path = tone(tmp_path / "ok.wav")
    if kind == "not audio":
        path = tmp_path / "notes.txt"
        path.write_text("these are notes, not sound\n" * 50)
    elif kind == "silent":
        path = tmp_path / "silent.wav"
        sf.write(path, np.zeros(32000), 16000)
    args = {"dotdot": ("../evil", path), "oversized": ("big", path, "x", b"\0" * (1 << 20)),
            "no text": ("t", path, " ")}.get(kind, ("v", path))
    got_status, err = error_of(upload(port, *args))
    assert (got_status, message in err["message"]) == (status, True), err
    assert "../evil" not in [v["name"] for v in json.loads(request(port, "GET", "/v1/voices")[2])["data"]]


@pytest.mark.parametrize("body,status,message,param", [
    ({"input": ""}, 400, "input is empty", "input"),
    ({"input": "  \n"}, 400, "input is empty", "input"),
    ({"input": "word " * 900}, 400, "input is 4500 characters; the limit is 4096", "input"),
    ({"model": "tts-1"}, 404, "model 'tts-1' does not exist here; served: tiny", "model"),
    ({"model": "tiny:int3"}, 400, "has no 'int3' precision", "model"),
    ({"voice": "alloy"}, 400, "voice 'alloy' is neither a speaker (0, 1)", "voice"),
    ({"voice": "../../etc/passwd"}, 400, "neither a speaker (0, 1)", "voice"),
    ({"response_format": "aac"}, 400, "'aac' is not available; this server makes mp3, opus, flac, wav, pcm",
     "response_format"),
    ({"speed": 1.5}, 400, "speed: only 1.0 is supported", "speed"),
    ({"top_k": 0}, 400, "top_k must be between 1", "top_k"),
    ({"top_p": 0}, 400, "top_p must be in (0, 1] (1 = none), got 0", "top_p"),
    ({"top_p": 1.5}, 400, "top_p must be between 0 and 1, got 1.5", "top_p"),
    ({"seed": "x"}, 400, "seed must be an integer", "seed"),
    ({"volume": 3}, 400, "unknown field 'volume'", "volume"),
])
def test_bad_speech_requests(port, body, status, message, param):
    got_status, err = error_of(speech(port, **{"model": "tiny", "input": TEXT, **body}))
    assert (got_status, err["param"]) == (status, param) and message in err["message"], err


def test_unknown_api_paths_and_methods_answer_in_the_error_shape(port):
    assert error_of(request(port, "GET", "/v1/audio/speeches"))[0] == 404
    status, err = error_of(request(port, "GET", "/v1/audio/speech"))
    assert status == 405 and "GET /v1/audio/speech" in err["message"]


def test_oversized_and_malformed_bodies(port):
    status, err = error_of(speech(port, model="tiny", input="x" * 70000))
    assert status == 413 and "over the limit of 65536 bytes" in err["message"]
    status, err = error_of(request(port, "POST", "/v1/audio/speech", b"{not json"))
    assert status == 400 and "not valid JSON" in err["message"]


def test_api_key(tiny_dir, tmp_path):
    import websockets.sync.client as wsc

    with api_server([tiny_dir], api_key=KEY, voices_dir=tmp_path) as p:
        for headers, message in (({}, "missing API key"), ({"Authorization": "Bearer nope"}, "wrong API key"),
                                 ({"Authorization": KEY}, "wrong API key")):
            status, err = error_of(request(p, "GET", "/v1/models", headers=headers))
            assert (status, err["code"]) == (401, "invalid_api_key") and message in err["message"]
            assert error_of(speech(p, headers, model="tiny", input=TEXT))[0] == 401
        assert request(p, "GET", "/v1/models", headers={"Authorization": f"Bearer {KEY}"})[0] == 200
        assert request(p, "GET", "/")[0] == 200 and request(p, "GET", "/healthz")[0] == 200  # the page: no key
        for path in ("/api/models", "/models/tiny/manifest.json", "/models/tiny/onnx/embed.onnx"):
            assert request(p, "GET", path)[0] == 401, path  # the model's files and names: the key
            assert request(p, "GET", path, headers={"Authorization": f"Bearer {KEY}"})[0] == 200, path
        with pytest.raises(Exception, match="403"):
            wsc.connect(f"ws://127.0.0.1:{p}/v1/audio/stream", open_timeout=10)
        with wsc.connect(f"ws://127.0.0.1:{p}/v1/audio/stream", additional_headers={"Authorization": f"Bearer {KEY}"},
                         open_timeout=10) as ws:
            ws.send(json.dumps({"type": "start"}))
            assert json.loads(ws.recv(timeout=60))["type"] == "ready"


def test_serve_refuses_an_open_host_without_a_key(tiny_dir, capsys, monkeypatch):
    monkeypatch.delenv("VOXPORT_API_KEY", raising=False)
    t = time.perf_counter()
    assert main(["serve", str(tiny_dir), "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--host 0.0.0.0 is reachable from other machines: give --api-key" in err
    assert time.perf_counter() - t < 1  # refused before loading anything


def test_a_damaged_artifact_is_a_500_that_names_the_file(tiny_dir, tmp_path):
    bad = tmp_path / "damaged"
    (bad / "onnx").mkdir(parents=True)
    for f in tiny_dir.rglob("*"):  # links to the shared export, but a real, damaged copy of one graph
        if f.is_file() and f.name != "frame_q4.onnx":
            (bad / f.relative_to(tiny_dir)).symlink_to(f)
    data = bytearray((tiny_dir / "onnx" / "frame_q4.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / "onnx" / "frame_q4.onnx").write_bytes(bytes(data))
    with api_server([bad], voices_dir=tmp_path / "voices") as p:
        status, err = error_of(speech(p, model="damaged:q4", input=TEXT))
        assert (status, err["type"]) == (500, "server_error")
        assert "could not be loaded" in err["message"] and "onnx/frame_q4.onnx: sha256 differs" in err["message"]
        assert speech(p, model="damaged", input=TEXT, max_frames=2, response_format="pcm")[0] == 200  # fp32 intact
        assert json.loads(request(p, "GET", "/healthz")[2])["streams"]["active"] == 0
